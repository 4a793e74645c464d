//! The per-member plan of `convert`: for each tensor of an output's inputs, in order, whether it
//! is left out (not selected: silently; a dtype with no NumPy form, which the first pass let
//! through under `--skip-unsupported`: with a note), the name of its member (prefixed by its
//! input's stem where several inputs share the output), and whether a worker writes it or the
//! executor does in turn. Pure: the tensors' metadata come from the `Source`s it is given, and
//! what placing a member needs that takes I/O (its `prepare`d length and copy range, whether its
//! input can be opened again) is passed in. Members are planned one at a time, never listed: an
//! input may hold a million tensors. Called by `cmd/execute.rs`.

use crate::dtype::DtypePolicy;
use crate::pipeline::npy_type;
use crate::select::Selector;
use crate::sink::names::shown;
use crate::tensor::{Source, TensorMeta};

/// What the plan of an output's members is made from.
pub(super) struct Rules<'a> {
    /// Members are named `STEM/NAME` (several inputs share the output).
    pub(super) prefixed: bool,
    /// The stem of each input, by input number.
    pub(super) stems: &'a [String],
    pub(super) selector: &'a Selector,
    pub(super) policy: &'a DtypePolicy,
}

/// What becomes of one tensor.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Left out, with the note that says so.
    Skip(String),
    /// Written, as member `order` (from 1) of the output; [`place`] says by whom.
    Write { order: usize },
}

/// One tensor of an output's inputs.
pub(super) struct Member {
    /// Its input's position among the output's inputs.
    pub(super) at: usize,
    /// Its input's number.
    pub(super) input: usize,
    pub(super) index: usize,
    pub(super) meta: TensorMeta,
    /// Its member name in the output.
    pub(super) name: String,
    pub(super) step: Step,
}

/// The members of one output, planned one at a time. A cursor rather than an `Iterator`: the
/// executor writes each member with its (mutable) source between two steps, so the plan borrows
/// the sources only while it reads one tensor's metadata.
pub(super) struct Members<'a> {
    rules: Rules<'a>,
    at: usize,
    index: usize,
    order: usize,
}

impl<'a> Members<'a> {
    pub(super) fn new(rules: Rules<'a>) -> Self {
        Members {
            rules,
            at: 0,
            index: 0,
            order: 0,
        }
    }

    /// The next member of `inputs` (input number, source) that is written or skipped with a
    /// note; `None` after the last. Tensors not selected are passed over.
    pub(super) fn next<S: AsRef<dyn Source>>(
        &mut self,
        inputs: &[(usize, S)],
    ) -> Option<anyhow::Result<Member>> {
        loop {
            let (s, src) = inputs.get(self.at)?;
            let src = src.as_ref();
            if self.index >= src.len() {
                (self.at, self.index) = (self.at + 1, 0);
                continue;
            }
            let i = self.index;
            self.index += 1;
            let meta = match src.meta(i) {
                Ok(m) => m,
                Err(e) => return Some(Err(e)),
            };
            if !self.rules.selector.keep(&meta.name) {
                continue;
            }
            let name = match self.rules.prefixed {
                true => format!("{}/{}", self.rules.stems[*s], meta.name),
                false => meta.name.clone(),
            };
            let step = match npy_type(&meta, self.rules.policy) {
                None => {
                    let dtype = meta.dtype_shown();
                    Step::Skip(format!(
                        "{}: skipped '{}': dtype {dtype} has no NumPy form",
                        src.display_path(),
                        shown(&meta.name)
                    ))
                }
                Some(_) => {
                    self.order += 1;
                    Step::Write { order: self.order }
                }
            };
            return Some(Ok(Member {
                at: self.at,
                input: *s,
                index: i,
                meta,
                name,
                step,
            }));
        }
    }
}

/// Who writes a member when a worker pool runs.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Place {
    /// The executor, in turn.
    Inline,
    /// A worker, into the room reserved for it.
    Worker,
}

/// What [`place`] weighs, found by `prepare` and the executor.
#[derive(Debug, Clone, Copy)]
pub(super) struct Facts {
    /// The member's data bytes.
    pub(super) data_len: u64,
    /// Its data is copied unconverted from an input range (no reader needed).
    pub(super) copyable: bool,
    /// A worker can open its input a second time ([`reopens`]).
    pub(super) reopens: bool,
    /// Its reader must read it in order (`facts.serial`).
    pub(super) serial: bool,
}

/// Whether a worker can open an input of `tensors` tensors again: not one of a `--concat`
/// dataset, nor one of so many tensors that a second copy of its metadata would cost too much
/// (`max`), and only a file, folder or URL (`reopenable`, asked of the file system).
pub(super) fn reopens(concat: bool, tensors: usize, max: usize, reopenable: bool) -> bool {
    !concat && tensors <= max && reopenable
}

/// Large members (`min` bytes or more) go to a worker when it can read them: copied from their
/// range, or through a second copy of their input unless their reader must read in order.
pub(super) fn place(f: Facts, min: u64) -> Place {
    match f.data_len >= min && (f.copyable || (f.reopens && !f.serial)) {
        true => Place::Worker,
        false => Place::Inline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::mock::mock;

    fn input(s: usize, path: &'static str, names: &[&'static str]) -> (usize, Box<dyn Source>) {
        (s, mock(path, names))
    }

    /// Every member planned for `inputs`: (input, index, name, step).
    fn plan(
        inputs: &[(usize, Box<dyn Source>)],
        prefixed: bool,
        select: &[&str],
    ) -> Vec<(usize, usize, String, Step)> {
        let select: Vec<String> = select.iter().map(|s| s.to_string()).collect();
        let selector = Selector::new(&select, &[]).unwrap();
        let policy = DtypePolicy::default();
        let stems = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let mut members = Members::new(Rules {
            prefixed,
            stems: &stems,
            selector: &selector,
            policy: &policy,
        });
        std::iter::from_fn(|| members.next(inputs))
            .map(|m| {
                let m = m.unwrap();
                assert_eq!(inputs[m.at].0, m.input);
                assert_eq!(m.meta.name, inputs[m.at].1.meta(m.index).unwrap().name);
                (m.input, m.index, m.name, m.step)
            })
            .collect()
    }

    #[test]
    fn only_selected_tensors_are_planned_in_order() {
        let inputs = vec![input(0, "a.safetensors", &["w", "v", "bias"])];
        let all = plan(&inputs, false, &[]);
        let write = |order| Step::Write { order };
        assert_eq!(
            all,
            vec![
                (0, 0, "w".into(), write(1)),
                (0, 1, "v".into(), write(2)),
                (0, 2, "bias".into(), write(3)),
            ]
        );
        // A tensor not selected is passed over, and the members after it are numbered on.
        assert_eq!(
            plan(&inputs, false, &["w", "bias"]),
            vec![
                (0, 0, "w".into(), write(1)),
                (0, 2, "bias".into(), write(2))
            ]
        );
        assert!(plan(&inputs, false, &["nothing"]).is_empty());
    }

    #[test]
    fn a_dtype_without_numpy_form_is_skipped_with_its_note_and_not_numbered() {
        let inputs = vec![input(0, "x/a.pb", &["w", "res", "v"])];
        let planned = plan(&inputs, false, &[]);
        assert_eq!(
            planned[1],
            (
                0,
                1,
                "res".into(),
                Step::Skip("x/a.pb: skipped 'res': dtype resource has no NumPy form".into())
            )
        );
        assert_eq!(planned[2].3, Step::Write { order: 2 });
    }

    #[test]
    fn several_inputs_into_one_output_are_named_by_their_stems() {
        // Input numbers as in the command line: the output's inputs 0 and 2.
        let inputs = vec![
            input(0, "x/a.safetensors", &["w"]),
            input(2, "y/c.safetensors", &["w", "v"]),
        ];
        let names: Vec<String> = plan(&inputs, true, &[]).into_iter().map(|m| m.2).collect();
        assert_eq!(names, vec!["a/w", "c/w", "c/v"]);
        let orders: Vec<Step> = plan(&inputs, true, &[]).into_iter().map(|m| m.3).collect();
        assert_eq!(
            orders,
            (1..=3)
                .map(|order| Step::Write { order })
                .collect::<Vec<_>>()
        );
        // Unprefixed (one input each): the tensor's own name.
        let alone = vec![input(1, "y/b.safetensors", &["w"])];
        assert_eq!(plan(&alone, false, &[])[0].2, "w");
        // An input with no tensors is passed over.
        let empty = vec![input(0, "e.safetensors", &[]), input(1, "b.pt", &["w"])];
        assert_eq!(
            plan(&empty, true, &[]),
            vec![(1, 0, "b/w".into(), Step::Write { order: 1 })]
        );
    }

    fn facts(data_len: u64) -> Facts {
        Facts {
            data_len,
            copyable: false,
            reopens: true,
            serial: false,
        }
    }

    #[test]
    fn members_from_the_threshold_up_go_to_a_worker() {
        assert_eq!(place(facts(1 << 20), 1 << 20), Place::Worker);
        assert_eq!(place(facts((1 << 20) - 1), 1 << 20), Place::Inline);
        let copied = Facts {
            copyable: true,
            ..facts((1 << 20) - 1)
        };
        assert_eq!(place(copied, 1 << 20), Place::Inline);
        // T2N_JOBS_MIN_BYTES=0: every member, even an empty one.
        assert_eq!(place(facts(0), 0), Place::Worker);
    }

    #[test]
    fn serial_tensors_go_to_a_worker_only_when_copied() {
        let serial = Facts {
            serial: true,
            ..facts(4 << 20)
        };
        assert_eq!(place(serial, 1 << 20), Place::Inline);
        let copied = Facts {
            copyable: true,
            ..serial
        };
        assert_eq!(place(copied, 1 << 20), Place::Worker);
    }

    #[test]
    fn an_input_not_opened_again_sends_only_copied_members_to_a_worker() {
        let once = Facts {
            reopens: false,
            ..facts(4 << 20)
        };
        assert_eq!(place(once, 1 << 20), Place::Inline);
        let copied = Facts {
            copyable: true,
            ..once
        };
        assert_eq!(place(copied, 1 << 20), Place::Worker);
        // Not opened again: standard input or a pipe, a --concat part, an input of too many
        // tensors.
        assert!(reopens(false, 10, 100, true));
        assert!(!reopens(false, 10, 100, false));
        assert!(!reopens(true, 10, 100, true));
        assert!(!reopens(false, 101, 100, true));
        assert!(reopens(false, 100, 100, true));
    }
}

//! TorchScript archives (`torch.jit.save` of scripted and traced modules): a torch zip whose
//! `data.pkl` holds the module object graph (`__torch__.<class>` records, read by the
//! unpickler as data) and whose `code/` holds each class's TorchScript source. The source is
//! never interpreted: it is only searched, as text, for the two declarations that say which
//! attributes are parameters and buffers (`__parameters__ = ["weight", "bias", ]`,
//! `__buffers__ = [...]`), which `data.pkl` does not record. `names.rs` then names a module's
//! tensors as `torch.jit.load(f).state_dict()` does. `constants.pkl` (the tensors the code uses
//! as constants, a frozen module's weights) is not part of the state dict and is left out; a
//! module with no tensor but constants gets a note saying so.

use anyhow::{bail, Context, Result};

use super::container::TorchArchive;
use super::names::ScriptClasses;

/// The most bytes one source file, and all of them, may hold.
const MAX_SOURCE: u64 = 4 << 20;
const MAX_SOURCES: u64 = 64 << 20;

/// Reads the parameter and buffer declarations of every class under `code/`.
pub(super) fn classes(arch: &mut TorchArchive) -> Result<ScriptClasses> {
    let mut out = ScriptClasses::new();
    let mut total = 0u64;
    let mut sources: Vec<String> = arch
        .members
        .keys()
        .filter(|k| k.starts_with("code/") && k.ends_with(".py"))
        .cloned()
        .collect();
    sources.sort();
    for name in sources {
        let Some(m) = arch.member(&name)? else {
            continue;
        };
        total += m.size;
        if total > MAX_SOURCES {
            bail!("the TorchScript sources under code/ hold more than {MAX_SOURCES} bytes");
        }
        let text = m.read_vec(MAX_SOURCE)?;
        let text = String::from_utf8_lossy(&text);
        // code/__torch__/torch/nn/modules/conv.py declares __torch__.torch.nn.modules.conv.*
        let module = name["code/".len()..name.len() - 3].replace('/', ".");
        declarations(&module, &text, &mut out)
            .with_context(|| format!("the TorchScript source {name}"))?;
    }
    Ok(out)
}

/// A note for a TorchScript archive that names no tensor but keeps tensors as constants
/// (`constants/<n>`, listed by `constants.pkl`): a `torch.jit.freeze`d module, whose weights
/// were folded into its code, so `torch.jit.load(f).state_dict()` is empty too.
pub(super) fn constants(arch: &TorchArchive) -> Option<String> {
    let n = arch
        .members
        .keys()
        .filter(|k| k.strip_prefix("constants/").is_some_and(|r| !r.is_empty()))
        .count();
    (n > 0).then(|| {
        format!("the module has no parameters or buffers (torch.jit.freeze folds them into its code, and torch.jit.load(f).state_dict() is empty too): its {n} tensor constant(s) (constants.pkl) are not in it, so no tensor is written")
    })
}

/// The classes of one source file: `class Name(Module):` at the start of a line, then its
/// `__parameters__` and `__buffers__` lines.
fn declarations(module: &str, text: &str, out: &mut ScriptClasses) -> Result<()> {
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("class ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
                .collect();
            let q = format!("{module}.{name}");
            out.entry(q.clone()).or_default();
            current = Some(q);
            continue;
        }
        if !line.starts_with(' ') {
            current = None;
            continue;
        }
        let Some(class) = &current else { continue };
        // Class-level lines are indented by two spaces; deeper ones are method bodies.
        let t = match line.strip_prefix("  ") {
            Some(t) if !t.starts_with(' ') => t,
            _ => continue,
        };
        let entry = out.get_mut(class).expect("entered");
        let (list, r) = if let Some(r) = t.strip_prefix("__parameters__ = ") {
            (&mut entry.0, r)
        } else if let Some(r) = t.strip_prefix("__buffers__ = ") {
            (&mut entry.1, r)
        } else {
            continue;
        };
        *list = quoted(r)?;
    }
    Ok(())
}

/// The double-quoted names of a `["a", "b", ]` list.
fn quoted(s: &str) -> Result<Vec<String>> {
    let s = s.trim();
    let Some(inner) = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
        bail!("a declaration is not a one-line list: {s}");
    };
    Ok(inner
        .split(',')
        .map(|p| p.trim().trim_matches('"').to_string())
        .filter(|p| !p.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_parameter_and_buffer_declarations_only() {
        let src = "class Conv2d(Module):\n  __parameters__ = [\"weight\", \"bias\", ]\n  __buffers__ = []\n  weight : Tensor\n  def forward(self: __torch__.X,\n    x: Tensor) -> Tensor:\n    __parameters__ = [\"not\"]\nclass BatchNorm2d(Module):\n  __parameters__ = []\n  __buffers__ = [\"running_mean\", \"num_batches_tracked\", ]\ndef f(x):\n  __buffers__ = [\"no\"]\n";
        let mut out = ScriptClasses::new();
        declarations("__torch__.m", src, &mut out).unwrap();
        assert_eq!(
            out["__torch__.m.Conv2d"],
            (vec!["weight".into(), "bias".into()], vec![])
        );
        assert_eq!(
            out["__torch__.m.BatchNorm2d"],
            (
                vec![],
                vec!["running_mean".into(), "num_batches_tracked".into()]
            )
        );
        assert_eq!(out.len(), 2);
    }
}

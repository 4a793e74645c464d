//! What training leaves behind (fixtures/train/, written by `gen_train.py` with transformers'
//! `Trainer`, accelerate, PEFT, Lightning, timm and every `torch.optim` optimizer and LR
//! scheduler): every good case of its manifest converted and compared bit for bit with what the
//! library's reader returns (its broken cases run with the other manifests' in
//! `fixtures.rs`), and a checkpoint folder giving the model while naming the training files it
//! leaves out.

use crate::common;

use std::process::Command;

use common::*;

#[test]
fn training_checkpoints_match_what_their_libraries_load() {
    let cases: Vec<Case> = manifest()
        .into_iter()
        .filter(|c| c.oracle.is_some() && c.input.to_string_lossy().contains("fixtures/train/"))
        .collect();
    assert!(cases.len() >= 20, "{} cases", cases.len());
    for case in cases {
        let what = format!("{} {:?}", case.input.display(), case.args);
        let want = read_npz(case.oracle.as_ref().unwrap());
        for chunk in ["1048576", "64"] {
            let dir = tempdir();
            let out = dir.path().join("out.npz");
            let o = Command::new(bin())
                .arg("convert")
                .arg(&case.input)
                .arg("-o")
                .arg(&out)
                .args(&case.args)
                .args(["--chunk-size", chunk])
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{what}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert_same_arrays(&read_npz(&out), &want, &format!("{what} chunk {chunk}"));
        }
    }
}

#[test]
fn a_trainer_checkpoint_folder_gives_the_model_and_names_the_training_files_left_out() {
    let ck = root().join("fixtures/train/hf_trainer/checkpoint-2");
    let dir = tempdir();
    let o = convert(&ck, dir.path().join("m.npz"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    for f in [
        "optimizer.pt",
        "rng_state.pth",
        "scheduler.pt",
        "training_args.bin",
    ] {
        assert!(err.contains(f), "the note names {f}: {err}");
    }
    let got = read_npz(&dir.path().join("m.npz"));
    assert!(
        got.contains_key("transformer.wte.weight"),
        "{:?}",
        got.keys()
    );
    assert!(
        !got.keys().any(|k| k.contains("exp_avg")),
        "{:?}",
        got.keys()
    );
}

#[test]
fn a_pickled_training_arguments_object_is_read_without_running_it_and_holds_no_tensors() {
    let f = root().join("fixtures/train/hf_trainer/checkpoint-2/training_args.bin");
    let dir = tempdir();
    let o = convert(&f, dir.path().join("a.npz"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("transformers.training_args.TrainingArguments")
            && err.contains("never imported or called"),
        "{err}"
    );
    assert!(read_npz(&dir.path().join("a.npz")).is_empty());
}

/// `torch.load(rng_state.pth, weights_only=True)` refuses the NumPy RNG state inside
/// (`numpy._core.multiarray._reconstruct` is off its allow-list), so `--weights-only` does too;
/// a plain pickle of NumPy arrays still reads with it, since it needs those globals.
#[test]
fn weights_only_refuses_numpy_values_in_a_torch_file_but_not_in_a_numpy_pickle() {
    let dir = tempdir();
    let weights_only = |input: &std::path::Path, out: &str| {
        Command::new(bin())
            .arg("convert")
            .arg(input)
            .arg("-o")
            .arg(dir.path().join(out))
            .arg("--weights-only")
            .output()
            .unwrap()
    };
    let f = root().join("fixtures/train/hf_trainer/checkpoint-2/rng_state.pth");
    let o = weights_only(&f, "r.npz");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("rng_state.pth")
            && err.contains("numpy")
            && err.contains("weights_only=True) does not allow"),
        "{err}"
    );
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    let o = weights_only(&root().join("fixtures/pickle/arrays_p4.pkl"), "p.npz");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!read_npz(&dir.path().join("p.npz")).is_empty());
}

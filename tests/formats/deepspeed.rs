//! DeepSpeed ZeRO inputs: every case of fixtures/deepspeed/manifest.json (ZeRO 1, 2 and 3
//! checkpoints written by DeepSpeed on two CPU ranks, fp16 and bf16) converted by the binary
//! and compared bit for bit with `get_fp32_state_dict_from_zero_checkpoint` (written by
//! fixtures/gen_deepspeed.py), with the default chunk size and with 64-byte chunks (so that
//! parameters spanning two ranks' partitions are read piece by piece); each rank file on its own
//! against torch.load; every broken case exits 1 naming the file, leaving nothing behind.

use crate::common;

use std::process::Command;

use common::*;

fn run(
    input: &std::path::Path,
    out: &std::path::Path,
    args: &[String],
    extra: &[&str],
) -> std::process::Output {
    Command::new(bin())
        .arg("convert")
        .arg(input)
        .arg("-o")
        .arg(out)
        .args(args)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn zero_checkpoints_match_zero_to_fp32_and_bad_ones_fail_cleanly() {
    let extras: &[&[&str]] = &[&["--chunk-size", "64"]];
    let ran = cases::run_manifest("deepspeed", extras, &cases::nothing_else);
    assert!(ran.good >= 14 && ran.bad >= 6, "{ran:?}");
}

#[test]
fn the_order_of_the_names_is_zero_to_fp32s() {
    // buffers, frozen parameters, trainable parameters (param group order), shared aliases
    let o = Command::new(bin())
        .args(["list", "--json"])
        .arg(root().join("fixtures/deepspeed/zero2_bf16"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let text = v.to_string();
    let names: Vec<&str> = [
        "scale",
        "seen",
        "frozen.weight",
        "frozen.bias",
        "body.weight",
        "proj.weight",
        "embed.weight",
        "body.bias",
        "norm.weight",
        "norm.bias",
        "head.bias",
        "head.weight",
    ]
    .to_vec();
    let at: Vec<usize> = names
        .iter()
        .map(|n| {
            text.find(&format!("\"{n}\""))
                .unwrap_or_else(|| panic!("{n} not in {text}"))
        })
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "{names:?} out of order in {text}"
    );
    let want = read_npz(&root().join("fixtures/deepspeed/zero2_bf16.expected.npz"));
    assert_eq!(want.len(), names.len());
}

#[test]
fn list_names_the_stage_the_ranks_and_the_tag() {
    let o = Command::new(bin())
        .arg("list")
        .arg(root().join("fixtures/deepspeed/zero2_bf16"))
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{all}");
    assert!(
        all.contains("ZeRO-2") && all.contains("2 ranks") && all.contains("global_step4"),
        "{all}"
    );
}

#[test]
fn step_needs_the_checkpoint_folder_not_a_tag_folder() {
    let tmp = tempdir();
    let o = run(
        &root().join("fixtures/deepspeed/zero2_bf16/global_step4"),
        &tmp.path().join("o.npz"),
        &["--step".into(), "2".into()],
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("tag folder"), "{err}");
    assert!(files_in(tmp.path()).is_empty());
}

#[test]
fn a_rank_file_is_read_with_deepspeeds_classes_as_records() {
    let f = root().join(
        "fixtures/deepspeed/zero2_fp16/global_step3/zero_pp_rank_0_mp_rank_00_optim_states.pt",
    );
    let o = Command::new(bin()).arg("list").arg(&f).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler"),
        "{err}"
    );
    // --weights-only refuses them, as torch.load(weights_only=True) does
    let o = Command::new(bin())
        .args(["list", "--weights-only"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[cfg(feature = "remote")]
#[test]
fn a_checkpoint_folder_in_a_bucket_converts_like_the_local_one() {
    let mut uploads = Vec::new();
    for case in ["zero3_bf16", "zero2_bf16"] {
        let local = root().join("fixtures/deepspeed").join(case);
        s3::uploads(&local, case, &mut uploads);
    }
    let Some(server) = s3::S3::start(&uploads) else {
        return;
    };
    let cases = [
        ("s3://t2n/zero3_bf16", vec![], "zero3_bf16.expected.npz"),
        (
            "s3://t2n/zero2_bf16",
            vec!["--step", "2"],
            "zero2_bf16/global_step2.expected.npz",
        ),
        (
            "s3://t2n/zero2_bf16/global_step4",
            vec![],
            "zero2_bf16/global_step4.expected.npz",
        ),
    ];
    for (url, args, oracle) in cases {
        let want = root().join("fixtures/deepspeed").join(oracle);
        server.assert_converts(url, &args, &want);
    }
}

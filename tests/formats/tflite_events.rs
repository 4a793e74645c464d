//! TFLite models and TensorBoard event files: every fixture of fixtures/tflite/ and
//! fixtures/tensorboard/ converted by the binary and compared bit for bit with the oracles of
//! fixtures/gen_tflite.py (`tf.lite.Interpreter.get_tensor`, its quantization parameters) and
//! fixtures/gen_tensorboard.py (`summary_iterator` + `tf.make_ndarray`); `list --json` showing
//! quantization; event files winning the sniff over TFRecords whatever their name; and damage
//! (every flipped byte of an event file, every truncation of a model) refused without a panic;
//! a log directory (fixtures/tensorboard_logdir/) read as its event files under their folders.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use tensor2npy::input::FileRange;
use tensor2npy::source::tfevents::TfEventsSource;
use tensor2npy::source::tflite::{QuantOutput, TfliteSource};
use tensor2npy::tensor::Source;

fn convert_ok(input: &Path, args: &[String], out: &Path, extra: &[&str]) {
    let o = Command::new(bin())
        .arg("convert")
        .arg(input)
        .arg("-o")
        .arg(out)
        .args(args)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{} {args:?}: {}",
        input.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn check_good(filter: &str) {
    let cases: Vec<Case> = manifest()
        .into_iter()
        .filter(|c| c.oracle.is_some() && c.input.to_string_lossy().contains(filter))
        .collect();
    assert!(cases.len() >= 3, "fixtures for {filter}");
    for case in cases {
        let what = format!("{} {:?}", case.input.display(), case.args);
        let want = read_npz(case.oracle.as_ref().unwrap());
        let dir = tempdir();
        let out = dir.path().join("out.npz");
        convert_ok(&case.input, &case.args, &out, &[]);
        assert_same_arrays(&read_npz(&out), &want, &what);
        let small = dir.path().join("small.npz");
        convert_ok(&case.input, &case.args, &small, &["--chunk-size", "8"]);
        assert_same_arrays(&read_npz(&small), &want, &format!("{what} small chunks"));
        let tree = dir.path().join("tree");
        convert_ok(&case.input, &case.args, &tree, &["--to", "npy"]);
        assert_same_arrays(
            &read_npy_dir(&tree),
            &want,
            &format!("{what} as .npy files"),
        );
    }
}

#[test]
fn tflite_models_match_the_interpreter() {
    check_good("fixtures/tflite/");
}

#[test]
fn event_files_match_summary_iterator() {
    check_good("fixtures/tensorboard/");
}

fn fixture(rel: &str) -> PathBuf {
    root().join(rel)
}

fn event_file(dir: &str) -> PathBuf {
    let d = fixture(&format!("fixtures/tensorboard/{dir}"));
    fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("events.out.tfevents."))
        .unwrap()
}

#[test]
fn list_json_shows_the_interpreters_quantization_parameters() {
    let model = fixture("fixtures/tflite/int8.tflite");
    let o = Command::new(bin())
        .args(["list", "--json"])
        .arg(&model)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let params = read_npz(&fixture("fixtures/tflite/int8.params.npz"));
    let mut quantized = 0;
    for row in rows.as_array().unwrap() {
        let name = row["name"].as_str().unwrap();
        let scale = params.get(&format!("{name}/scale"));
        let Some(scale) = scale else {
            assert!(row.get("quantization").is_none(), "{row}");
            continue;
        };
        quantized += 1;
        let q = &row["quantization"];
        let listed: Vec<f32> = q["scale"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let want: Vec<f32> = scale
            .data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(listed, want, "{name}");
        let zp = &params[&format!("{name}/zero_point")];
        let want_zp: Vec<i64> = zp
            .data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
            .collect();
        let listed_zp: Vec<i64> = q["zero_point"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(listed_zp, want_zp, "{name}");
        assert_eq!(q["quantized_dimension"], 0, "{name}");
    }
    assert_eq!(quantized, 3);
}

#[test]
fn event_files_win_the_sniff_whatever_their_name() {
    let want = read_npz(&fixture("fixtures/tensorboard/tf2.expected.npz"));
    let dir = tempdir();
    // Named like a TFRecord, and with no name that says what it is: the first record (the
    // file-version Event) decides.
    for name in ["run.tfrecord", "log.bin"] {
        let copy = dir.path().join(name);
        fs::copy(event_file("tf2"), &copy).unwrap();
        let out = dir.path().join(format!("{name}.npz"));
        convert_ok(&copy, &[], &out, &[]);
        assert_same_arrays(&read_npz(&out), &want, name);
    }
}

#[test]
fn every_flipped_byte_of_an_event_file_is_caught() {
    let good = fs::read(event_file("tf1")).unwrap();
    assert!(TfEventsSource::open(
        "e",
        vec![],
        FileRange::from_vec(good.clone()),
        false,
        1 << 20
    )
    .is_ok());
    for at in 0..good.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = good.clone();
            bad[at] ^= bit;
            let r = TfEventsSource::open("e", vec![], FileRange::from_vec(bad), false, 1 << 20);
            let e = r
                .err()
                .unwrap_or_else(|| panic!("flip of byte {at} not caught"));
            let msg = format!("{e:#}");
            assert!(
                msg.contains("checksum") || msg.contains("truncated"),
                "byte {at}: {msg}"
            );
        }
    }
}

#[test]
fn every_truncation_of_a_model_is_refused_without_a_panic() {
    let whole = fs::read(fixture("fixtures/tflite/int8.tflite")).unwrap();
    for mode in [
        QuantOutput::Stored,
        QuantOutput::Params,
        QuantOutput::Dequant,
    ] {
        let src = TfliteSource::open("m", vec![], FileRange::from_vec(whole.clone()), mode);
        assert!(src.unwrap().len() >= 6);
    }
    for n in 0..whole.len() {
        let r = TfliteSource::open(
            "m.tflite",
            vec![],
            FileRange::from_vec(whole[..n].to_vec()),
            QuantOutput::Dequant,
        );
        let e = r.err().unwrap_or_else(|| panic!("{n} bytes accepted"));
        let msg = format!("{e:#}");
        assert!(msg.contains("TFLite"), "{n} bytes: {msg}");
    }
}

#[test]
fn quant_params_is_refused_for_gguf() {
    let gguf = fs::read_dir(root().join("fixtures/gguf"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "gguf"))
        .unwrap();
    let dir = tempdir();
    let o = Command::new(bin())
        .arg("convert")
        .arg(&gguf)
        .arg("-o")
        .arg(dir.path().join("o.npz"))
        .args(["--quant", "params"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--quant params is for TFLite"));
}

/// Reads every tensor of `src` to the end, as convert would.
fn drain(src: &mut dyn Source) -> anyhow::Result<()> {
    for i in 0..src.len() {
        let meta = src.meta(i)?;
        let mut sink = |_: &[u8]| Ok(());
        if meta.dtype.item_size().is_some() {
            src.read_dense(i, 64, &mut sink)?;
        } else {
            src.read_strings(i, &mut sink)?;
        }
    }
    Ok(())
}

#[test]
fn every_damaged_byte_of_a_quantized_model_is_read_or_refused_without_a_panic() {
    let whole = fs::read(fixture("fixtures/tflite/int8.tflite")).unwrap();
    let (mut read, mut refused) = (0, 0);
    for at in 0..whole.len() {
        let mut bad = whole.clone();
        bad[at] ^= 0xff;
        for mode in [
            QuantOutput::Stored,
            QuantOutput::Params,
            QuantOutput::Dequant,
        ] {
            let r = TfliteSource::open("m", vec![], FileRange::from_vec(bad.clone()), mode)
                .and_then(|mut s| drain(&mut s));
            match r {
                Ok(()) => read += 1,
                Err(_) => refused += 1,
            }
        }
    }
    // Flipped tensor values read fine; flipped offsets, lengths and identifiers are refused.
    assert!(read > 0 && refused > 0, "{read} read, {refused} refused");
}

#[test]
fn damaged_events_with_valid_checksums_are_read_or_refused_without_a_panic() {
    use tensor2npy::checksum::mask_crc;
    let good = fs::read(event_file("tf1")).unwrap();
    // Each record's payload span, so that a flipped payload byte gets a matching CRC.
    let mut spans = Vec::new();
    let mut pos = 0;
    while pos < good.len() {
        let len = u64::from_le_bytes(good[pos..pos + 8].try_into().unwrap()) as usize;
        spans.push((pos + 12, len));
        pos += 12 + len + 4;
    }
    let (mut read, mut refused) = (0, 0);
    for &(start, len) in &spans {
        for at in start..start + len {
            let mut bad = good.clone();
            bad[at] ^= 0xff;
            let crc = mask_crc(crc32c::crc32c(&bad[start..start + len]));
            bad[start + len..start + len + 4].copy_from_slice(&crc.to_le_bytes());
            for stack in [false, true] {
                let r = TfEventsSource::open(
                    "e",
                    vec![],
                    FileRange::from_vec(bad.clone()),
                    stack,
                    1 << 20,
                )
                .and_then(|mut s| drain(&mut s));
                match r {
                    Ok(()) => read += 1,
                    Err(_) => refused += 1,
                }
            }
        }
    }
    assert!(read > 0 && refused > 0, "{read} read, {refused} refused");
}

#[test]
fn a_tensorboard_log_directory_reads_its_runs_under_their_folders() {
    // exp1/ holds train/ and validation/ event files with the same tags: each value is named
    // under its folder (the oracle: summary_iterator over each file); a folder whose two event
    // files log one tag at one step is refused, naming both files
    let ran = cases::run_manifest(
        "tensorboard_logdir",
        &[&["--chunk-size", "8"]],
        &cases::nothing_else,
    );
    assert!(ran.good >= 1 && ran.bad >= 1, "{ran:?}");
}

#[test]
fn event_files_users_log_match_summary_iterator() {
    // a file still being written (its last record cut: the records before it, as TensorBoard
    // reads them, with a note), image/audio/hparams summaries, runs of several event files
    let ran = cases::run_manifest(
        "tensorboard_more",
        &[&["--chunk-size", "8"]],
        &cases::nothing_else,
    );
    assert!(ran.good >= 3, "{ran:?}");
    let dir = root().join("fixtures/tensorboard_more/writing");
    let work = tempdir();
    let o = Command::new(bin())
        .arg("convert")
        .arg(event_file_in(&dir))
        .arg("-o")
        .arg(work.path().join("o.npz"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("the file ends inside record"), "{err}");
}

fn event_file_in(dir: &Path) -> PathBuf {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("tfevents"))
        .unwrap()
}

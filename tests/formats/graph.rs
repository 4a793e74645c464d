//! Model graphs through the binary: what `list` says an input was read as, ONNX models on
//! standard input and copied away from their external data, and `--from` forcing a reader.
//! Values are checked against the onnx / TensorFlow oracles of fixtures/gen_graph.py.

use crate::common;

use std::fs;
use std::process::{Command, Stdio};

use common::*;

#[test]
fn list_says_what_each_input_was_read_as() {
    let o = Command::new(bin())
        .args(["list", "--json"])
        .arg(root().join("fixtures/graph/tf1_frozen.pb"))
        .arg(root().join("fixtures/graph/raw.onnx"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let format_of = |name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} listed"))["format"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(format_of("dense/kernel"), "graphdef");
    assert!(format_of("c128").starts_with("onnx (ir_version "));

    let o = Command::new(bin())
        .arg("list")
        .arg(root().join("fixtures/graph/saved_model/saved_model.pb"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("read as saved_model.pb"));
}

#[test]
fn an_onnx_model_on_standard_input_converts_unless_it_needs_external_data() {
    let dir = tempdir();
    let out = dir.path().join("out.npz");
    let o = Command::new(bin())
        .args(["convert", "-", "-o"])
        .arg(&out)
        .stdin(fs::File::open(root().join("fixtures/graph/typed.onnx")).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same_arrays(
        &read_npz(&out),
        &read_npz(&root().join("fixtures/graph/typed.expected.npz")),
        "typed.onnx from stdin",
    );

    let o = Command::new(bin())
        .args(["convert", "-", "-o"])
        .arg(dir.path().join("ext.npz"))
        .stdin(fs::File::open(root().join("fixtures/graph/ext_one/model.onnx")).unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("tensor embed.weight") && stderr.contains("weights.data"),
        "{stderr}"
    );
    assert!(!dir.path().join("ext.npz").exists());
}

#[test]
fn external_data_is_found_beside_the_model_wherever_the_model_is() {
    // The model and its side file copied elsewhere, converted from another working directory.
    let dir = tempdir();
    let m = dir.path().join("m");
    fs::create_dir(&m).unwrap();
    for f in ["model.onnx", "weights.data"] {
        fs::copy(root().join("fixtures/graph/ext_one").join(f), m.join(f)).unwrap();
    }
    let o = Command::new(bin())
        .current_dir(dir.path())
        .args(["convert", "m/model.onnx", "-o", "w.npz"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same_arrays(
        &read_npz(&dir.path().join("w.npz")),
        &read_npz(&root().join("fixtures/graph/ext_one/model.expected.npz")),
        "ext_one copied",
    );
    // Writing over the side file is refused: it is an input.
    let o = Command::new(bin())
        .current_dir(dir.path())
        .args([
            "convert",
            "m/model.onnx",
            "-o",
            "m/weights.data",
            "--to",
            "npz",
        ])
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(
        fs::read(m.join("weights.data")).unwrap(),
        fs::read(root().join("fixtures/graph/ext_one/weights.data")).unwrap()
    );
}

#[test]
fn from_forces_a_reader_and_its_error_names_the_input() {
    let input = root().join("fixtures/graph/raw.onnx");
    let dir = tempdir();
    let o = Command::new(bin())
        .args(["convert", "--from", "graphdef"])
        .arg(&input)
        .arg("-o")
        .arg(dir.path().join("x.npz"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("raw.onnx") && stderr.contains("GraphDef"),
        "{stderr}"
    );
}

#[test]
fn onnx_user_models_match_onnx_to_array() {
    // onnxruntime's quantizers (int8, uint8 and int4 initializers with their scales and zero
    // points), onnxconverter-common's float16 conversion and external data with attributes,
    // from fixtures/gen_onnx_user.py; plain and in 64-byte chunks
    let ran = common::cases::run_manifest(
        "onnx_user",
        &[&["--chunk-size", "64"]],
        &common::cases::nothing_else,
    );
    assert_eq!(ran.good, 7, "the onnx_user fixtures");
}

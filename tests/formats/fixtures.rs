//! Every fixture in fixtures/manifest.json, converted by the binary and compared bit for bit
//! with what TensorFlow / safetensors returned for it (the `.expected.npz` oracles written by
//! fixtures/generate.py); every broken fixture must fail with exit 1 and leave nothing behind.

use crate::common;

use std::process::Command;

use common::*;

fn run_case(
    case: &Case,
    out_name: &str,
    extra: &[&str],
) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempdir();
    let out = dir.path().join(out_name);
    let mut cmd = Command::new(bin());
    cmd.arg("convert")
        .arg(&case.input)
        .arg("-o")
        .arg(&out)
        .args(&case.args)
        .args(extra);
    (cmd.output().unwrap(), dir)
}

fn check_good(filter: &str) {
    let cases: Vec<Case> = manifest()
        .into_iter()
        .filter(|c| c.oracle.is_some() && c.input.to_string_lossy().contains(filter))
        .collect();
    assert!(!cases.is_empty(), "no fixtures match {filter}");
    for case in cases {
        let what = format!("{} {:?}", case.input.display(), case.args);
        let want = read_npz(case.oracle.as_ref().unwrap());
        // as an .npz
        let (o, dir) = run_case(&case, "out.npz", &[]);
        assert!(
            o.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_same_arrays(&read_npz(&dir.path().join("out.npz")), &want, &what);
        // and with a tiny chunk size, so that every tensor crosses many chunk boundaries
        let (o, dir) = run_case(&case, "small.npz", &["--chunk-size", "64"]);
        assert!(
            o.status.success(),
            "{what} (small chunks): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_same_arrays(
            &read_npz(&dir.path().join("small.npz")),
            &want,
            &format!("{what} small chunks"),
        );
    }
}

#[test]
fn safetensors_fixtures_match_safetensors_numpy() {
    check_good("fixtures/safetensors/");
}

#[test]
fn tensorproto_fixtures_match_tf_parse_tensor() {
    check_good("fixtures/tensorproto/");
}

#[test]
fn tfrecord_fixtures_match_tf_data() {
    check_good("fixtures/tfrecord/");
}

#[test]
fn checkpoint_fixtures_match_tf_train_load_checkpoint() {
    check_good("fixtures/ckpt/");
}

#[test]
fn pytorch_and_hugging_face_fixtures_match_torch_load() {
    check_good("fixtures/torch/");
}

#[test]
fn broken_fixtures_fail_with_exit_1_a_message_and_no_output() {
    let cases: Vec<Case> = manifest()
        .into_iter()
        .filter(|c| c.error.is_some())
        .collect();
    assert!(cases.len() >= 15);
    for case in cases {
        let what = case.input.display().to_string();
        let (o, dir) = run_case(&case, "out.npz", &[]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{what}: {stderr}");
        assert!(
            stderr.starts_with("tensor2npy: error: "),
            "{what}: {stderr}"
        );
        assert!(
            stderr.contains(case.input.file_name().unwrap().to_str().unwrap()),
            "{what}: names the input: {stderr}"
        );
        let expected = case.error.as_deref().unwrap();
        assert!(
            stderr.to_lowercase().contains(&expected.to_lowercase()),
            "{what}: wanted '{expected}' in: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        assert_eq!(
            files_in(dir.path()),
            Vec::<std::path::PathBuf>::new(),
            "{what}: left files behind"
        );
    }
}

#[test]
fn example_fixtures_match_tf_parse_example() {
    check_good("fixtures/example/");
}

#[test]
fn sparse_and_ragged_fixtures_match_tensorflow() {
    check_good("fixtures/sparse_ragged/");
}

#[test]
fn gguf_fixtures_match_gguf_py_dequantize() {
    check_good("fixtures/gguf/");
}

#[test]
fn graph_fixtures_match_tf_make_ndarray_and_onnx_to_array() {
    check_good("fixtures/graph/");
}

#[test]
fn hdf5_and_keras_fixtures_match_h5py() {
    check_good("fixtures/hdf5/");
}

#[test]
fn numpy_fixtures_match_np_load() {
    check_good("fixtures/numpy/");
}

#[test]
fn flax_fixtures_match_msgpack_restore() {
    check_good("fixtures/flax/");
}

#[test]
fn keras_sharded_and_unzipped_fixtures_match_h5py() {
    check_good("fixtures/keras/");
}

#[test]
fn diffusers_and_sentence_transformers_folders_match_safetensors_numpy() {
    check_good("fixtures/folders/");
}

#[test]
fn pickle_fixtures_match_torch_jit_export_pickle_and_paddle_load() {
    check_good("fixtures/pickle/");
}

#[test]
fn torch_tensors_in_plain_pickles_match_pickle_load() {
    check_good("fixtures/pickle_torch/");
}

#[test]
fn torchscript_export_and_whole_module_fixtures_match_torch_jit_export_and_torch_load() {
    check_good("fixtures/torch_script/");
}

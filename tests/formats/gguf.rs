//! GGUF beyond the fixture comparisons of `fixtures`: what `list` shows (the GGML type, the
//! metadata as gguf-py's `GGUFReader` reads it), where `--stats` says dequantization ran,
//! standard input, and what `--quant raw` lists.

use crate::common;

use std::process::{Command, Output};

use common::*;

fn run(args: &[&str]) -> Output {
    let out = Command::new(bin())
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_slice(&run(args).stdout).unwrap()
}

fn tensor<'a>(list: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

#[test]
fn list_shows_the_ggml_type_and_the_numpy_shape() {
    let list = json(&["list", "--json", "fixtures/gguf/quant.gguf"]);
    let t = tensor(&list, "experts.q4_k");
    assert_eq!(t["dtype"], "q4_K");
    assert_eq!(t["npy_dtype"], "<f4");
    // GGUF stores [512, 2, 2] innermost first; GGUFReader reports (2, 2, 512).
    assert_eq!(t["shape"], serde_json::json!([2, 2, 512]));
    assert_eq!(t["bytes"], 2 * 2 * 2 * 144);
    let t = tensor(&list, "iq1_m.weight");
    assert_eq!(t["dtype"], "iq1_m");

    let table = run(&["list", "fixtures/gguf/quant.gguf"]).stdout;
    let table = String::from_utf8(table).unwrap();
    let row = table
        .lines()
        .find(|l| l.starts_with("q6_k.weight"))
        .unwrap();
    assert!(row.contains("q6_K") && row.contains("[3, 256]"), "{row}");

    let plain = json(&["list", "--json", "fixtures/gguf/plain.gguf"]);
    assert_eq!(tensor(&plain, "bf16")["dtype"], "bfloat16");
    assert_eq!(tensor(&plain, "f16")["shape"], serde_json::json!([2, 3, 4]));
}

#[test]
fn raw_blocks_list_as_bytes_of_ggufreaders_byte_shape() {
    let list = json(&[
        "list",
        "--json",
        "--quant",
        "raw",
        "fixtures/gguf/quant.gguf",
    ]);
    let t = tensor(&list, "q6_k.weight");
    assert_eq!(t["npy_dtype"], "|u1");
    assert_eq!(t["shape"], serde_json::json!([3, 210]));
}

#[test]
fn list_metadata_matches_what_ggufreader_reads() {
    let doc = json(&["list", "--json", "--metadata", "fixtures/gguf/plain.gguf"]);
    let want: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root().join("fixtures/gguf/plain.metadata.json")).unwrap(),
    )
    .unwrap();
    let got = &doc["metadata"]["fixtures/gguf/plain.gguf"];
    assert_eq!(got["version"], 3);
    assert_eq!(got["byte_order"], "little");
    assert_eq!(got["alignment"], 32);
    assert_eq!(got["metadata"], want);
    assert_eq!(doc["tensors"].as_array().unwrap().len(), 9);

    let v2 = json(&["list", "--json", "--metadata", "fixtures/gguf/v2.gguf"]);
    assert_eq!(v2["metadata"]["fixtures/gguf/v2.gguf"]["version"], 2);
    let be = json(&[
        "list",
        "--json",
        "--metadata",
        "fixtures/gguf/big_endian.gguf",
    ]);
    let be = &be["metadata"]["fixtures/gguf/big_endian.gguf"];
    assert_eq!(be["byte_order"], "big");
    assert_eq!(be["metadata"]["t.u32"], 4000000000u64);
    assert_eq!(
        be["metadata"]["t.arr_str"],
        serde_json::json!(["a", "bc", ""])
    );
}

#[test]
fn stats_say_dequantization_runs_on_the_host() {
    let dir = tempdir();
    let out = dir.path().join("o.npz");
    let o = run(&[
        "convert",
        "fixtures/gguf/align64.gguf",
        "-o",
        out.to_str().unwrap(),
        "--stats=json",
    ]);
    let stats: serde_json::Value = serde_json::from_slice(&o.stderr).unwrap();
    let t = stats["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "q5_k.weight")
        .unwrap();
    let path = t["path"].as_str().unwrap();
    assert!(
        path.starts_with("cpu: GGUF q5_K is dequantized on the host"),
        "{path}"
    );
}

#[test]
fn standard_input_and_directories_work_like_files() {
    let dir = tempdir();
    let out = dir.path().join("w");
    let o = Command::new(bin())
        .args(["convert", "-", "-o"])
        .arg(&out)
        .stdin(std::fs::File::open(root().join("fixtures/gguf/v2.gguf")).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = read_npy_dir(&out);
    let want = read_npz(&root().join("fixtures/gguf/v2.expected.npz"));
    assert_same_arrays(&got, &want, "v2 from stdin into a directory");
}

/// With a GPU, dequantized tensors still come out bit for bit as gguf-py's, take the CPU path
/// and say why in `--stats`, while bfloat16 widening runs on the device. Skipped without an
/// adapter, unless T2N_REQUIRE_GPU is set (as in tests/outputs/gpu.rs).
#[cfg(feature = "gpu")]
#[test]
fn under_device_gpu_dequantization_stays_on_the_host_and_says_so() {
    use tensor2npy::device::{DeviceChoice, DeviceStage};
    if let Err(e) = DeviceStage::open(DeviceChoice::Gpu, None) {
        assert!(
            std::env::var_os("T2N_REQUIRE_GPU").is_none(),
            "T2N_REQUIRE_GPU is set but no GPU adapter opened: {e:#}"
        );
        eprintln!("skipped: no GPU adapter ({e:#})");
        return;
    }
    let dir = tempdir();
    for name in ["quant", "plain"] {
        let out = dir.path().join(format!("{name}.npz"));
        let input = format!("fixtures/gguf/{name}.gguf");
        let args = ["convert", &input, "--device", "gpu", "--stats=json", "-o"];
        let o = Command::new(bin())
            .args(args)
            .arg(&out)
            .current_dir(root())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{name}: {stderr}");
        let want = read_npz(&root().join(format!("fixtures/gguf/{name}.expected.npz")));
        assert_same_arrays(&read_npz(&out), &want, name);
        let stats: serde_json::Value = serde_json::from_str(stderr.trim()).unwrap();
        for t in stats["tensors"].as_array().unwrap() {
            let path = t["path"].as_str().unwrap();
            match t["name"].as_str().unwrap() {
                "q4_0.weight" | "iq2_s.weight" => {
                    assert!(path.contains("dequantized on the host"), "{t}")
                }
                "bf16" => assert_eq!(path, "gpu", "{t}"),
                _ => {}
            }
        }
    }
}

//! The reader registry: sniffing picks the right reader, `--from` takes every registered name,
//! and inputs no reader claims get a plain-words error naming the input (exit 1, no output).
//! Folders and composites: what a Hugging Face folder leaves out, names in two parts, a folder
//! of 1,500 shards under a low descriptor limit, and the one rule for symbolic links.

use crate::common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use common::*;

fn convert(input: &std::path::Path, extra: &[&str]) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempdir();
    let o = Command::new(bin())
        .arg("convert")
        .arg(input)
        .arg("-o")
        .arg(dir.path().join("out.npz"))
        .args(extra)
        .output()
        .unwrap();
    (o, dir)
}

fn assert_refused(input: &std::path::Path, wanted: &str) {
    let (o, dir) = convert(input, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&input.display().to_string()),
        "names the input: {stderr}"
    );
    assert!(stderr.contains(wanted), "wanted '{wanted}' in: {stderr}");
    assert!(!stderr.contains("TensorProto"), "{stderr}");
    assert!(!stderr.contains("wire type"), "{stderr}");
    assert!(files_in(dir.path()).is_empty());
}

#[test]
fn a_zip_that_is_no_known_format_a_text_file_and_an_empty_file_are_named_as_such() {
    let dir = tempdir();
    // A real ZIP archive (an .npz) holding something no reader knows.
    let zip = dir.path().join("notes.zip");
    let mut z = zip::ZipWriter::new(fs::File::create(&zip).unwrap());
    z.start_file("readme.txt", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut z, b"hello").unwrap();
    z.finish().unwrap();
    assert_refused(&zip, "a ZIP archive that is no known format");

    let text = dir.path().join("notes.txt");
    fs::write(&text, "Hello, these are my notes.\nNot a tensor.\n").unwrap();
    assert_refused(&text, "a text file");

    let empty = dir.path().join("empty.bin");
    fs::write(&empty, b"").unwrap();
    assert_refused(&empty, "empty");
}

#[test]
fn a_directory_that_is_no_model_says_what_was_looked_for() {
    let dir = tempdir();
    let sub = dir.path().join("just_a_dir");
    fs::create_dir(&sub).unwrap();
    fs::write(sub.join("x.txt"), "x").unwrap();
    let (o, out) = convert(&sub, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    for what in [
        "SavedModel",
        "`checkpoint` file",
        ".index",
        "pass the files",
    ] {
        assert!(stderr.contains(what), "wanted '{what}' in: {stderr}");
    }
    assert!(files_in(out.path()).is_empty());
}

#[test]
fn from_accepts_every_registered_format_and_rejects_others_as_usage_errors() {
    let input = root().join("fixtures/safetensors/numeric.safetensors");
    let (o, _d) = convert(&input, &["--from", "safetensors"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (o, _d) = convert(&input, &["--from", "nonsense"]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    for name in [
        "safetensors",
        "checkpoint",
        "savedmodel",
        "tfrecord",
        "tensorproto",
    ] {
        assert!(stderr.contains(name), "{name} listed in: {stderr}");
    }
    // Forcing a format that does not fit is that reader's error, exit 1.
    let (o, _d) = convert(&input, &["--from", "tfrecord"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn a_pipe_is_read_like_standard_input() {
    let input = root().join("fixtures/safetensors/numeric.safetensors");
    let dir = tempdir();
    let out = dir.path().join("out.npz");
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{} convert <(cat {}) -o {}",
            bin().display(),
            input.display(),
            out.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let want = read_npz(&root().join("fixtures/safetensors/numeric.expected.npz"));
    assert_same_arrays(&read_npz(&out), &want, "from a pipe");
}

/// A one-element float32 safetensors file holding `name` = `value`.
fn one_tensor(path: &Path, name: &str, value: f32) {
    let bytes = value.to_le_bytes().to_vec();
    fs::write(path, safetensors_bytes(&[(name, "F32", vec![1], bytes)])).unwrap();
}

/// A Hugging Face folder of `n` one-tensor shards (`w<i>` = i) and its index.
fn hf_folder(dir: &Path, n: usize) {
    fs::create_dir_all(dir).unwrap();
    let mut map = serde_json::Map::new();
    for i in 0..n {
        let shard = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
        one_tensor(&dir.join(&shard), &format!("w{i}"), i as f32);
        map.insert(format!("w{i}"), shard.into());
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": map });
    fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

fn f32_values(arrays: &std::collections::BTreeMap<String, Array>) -> Vec<(String, f32)> {
    arrays
        .iter()
        .map(|(k, a)| {
            assert_eq!((a.descr.as_str(), a.shape.as_slice()), ("<f4", &[1u64][..]));
            (
                k.clone(),
                f32::from_le_bytes(a.data[..4].try_into().unwrap()),
            )
        })
        .collect()
}

#[test]
fn a_folder_with_model_safetensors_beside_other_weights_files_names_what_it_leaves_out() {
    let dir = tempdir();
    let m = dir.path().join("m");
    fs::create_dir(&m).unwrap();
    one_tensor(&m.join("model.safetensors"), "w", 1.5);
    one_tensor(&m.join("a.safetensors"), "a", 2.0);
    one_tensor(&m.join("b.safetensors"), "b", 3.0);
    fs::write(m.join("config.json"), b"{}").unwrap();
    let (o, out) = convert(&m, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    // model.safetensors alone, as from_pretrained reads it; the others named in a note.
    let got = read_npz(&out.path().join("out.npz"));
    assert_eq!(f32_values(&got), [("w".to_string(), 1.5)]);
    assert!(
        stderr.contains("left out 2 other weights files")
            && stderr.contains("a.safetensors, b.safetensors")
            && stderr.contains("pass them as inputs"),
        "{stderr}"
    );
    // The note survives the sparse/ragged view that wraps an input with a `*/indices` tensor.
    let bytes = |v: f32| v.to_le_bytes().to_vec();
    fs::write(
        m.join("model.safetensors"),
        safetensors_bytes(&[
            ("w", "F32", vec![1], bytes(1.5)),
            ("s/indices", "I64", vec![1, 1], 0i64.to_le_bytes().to_vec()),
        ]),
    )
    .unwrap();
    let (o, _out2) = convert(&m, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("a.safetensors, b.safetensors"), "{stderr}");
    // Passed as inputs, they convert (each under its stem).
    let o = Command::new(bin())
        .arg("convert")
        .args([m.join("a.safetensors"), m.join("b.safetensors")])
        .arg("-o")
        .arg(out.path().join("ab.npz"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = read_npz(&out.path().join("ab.npz"));
    assert_eq!(
        f32_values(&got),
        [("a/a".to_string(), 2.0), ("b/b".to_string(), 3.0)]
    );
}

#[test]
fn a_tensor_name_in_two_shards_is_an_error_naming_both() {
    let dir = tempdir();
    let m = dir.path().join("m");
    hf_folder(&m, 2);
    // The second shard also holds w0.
    let bytes = |v: f32| v.to_le_bytes().to_vec();
    fs::write(
        m.join("model-00002-of-00002.safetensors"),
        safetensors_bytes(&[
            ("w0", "F32", vec![1], bytes(9.0)),
            ("w1", "F32", vec![1], bytes(1.0)),
        ]),
    )
    .unwrap();
    let (o, out) = convert(&m, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("'w0'")
            && stderr.contains("model-00001-of-00002.safetensors")
            && stderr.contains("model-00002-of-00002.safetensors"),
        "{stderr}"
    );
    assert!(files_in(out.path()).is_empty());
}

#[test]
fn a_folder_of_1500_shards_converts_under_a_limit_of_512_descriptors() {
    let dir = tempdir();
    let m = dir.path().join("m");
    hf_folder(&m, 1500);
    let out = dir.path().join("out.npz");
    let o = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 512 && exec "$0" convert "$1" -o "$2" --quiet"#)
        .arg(bin())
        .arg(&m)
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = f32_values(&read_npz(&out));
    assert_eq!(got.len(), 1500);
    for (name, v) in got {
        assert_eq!(name, format!("w{}", v as usize));
    }
}

#[test]
fn links_are_followed_inside_the_folder_and_the_hugging_face_cache_and_refused_out_of_them() {
    // The cache's layout: snapshots/<rev>/x -> ../../blobs/<hash>.
    let dir = tempdir();
    let repo = dir.path().join("hub/models--org--tiny");
    let built = dir.path().join("built");
    hf_folder(&built, 2);
    let snap = repo.join("snapshots/0123abcd");
    fs::create_dir_all(&snap).unwrap();
    fs::create_dir_all(repo.join("blobs")).unwrap();
    for (k, entry) in fs::read_dir(&built).unwrap().enumerate() {
        let p = entry.unwrap().path();
        let blob = format!("blob{k}");
        fs::rename(&p, repo.join("blobs").join(&blob)).unwrap();
        symlink(
            format!("../../blobs/{blob}"),
            snap.join(p.file_name().unwrap()),
        )
        .unwrap();
    }
    for input in [snap.clone(), snap.join("model.safetensors.index.json")] {
        let (o, out) = convert(&input, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let got = f32_values(&read_npz(&out.path().join("out.npz")));
        assert_eq!(got, [("w0".to_string(), 0.0), ("w1".to_string(), 1.0)]);
    }

    // A shard that links out of the cache's repository folder is refused, naming it.
    let outside = dir.path().join("elsewhere.safetensors");
    one_tensor(&outside, "w1", 7.0);
    let shard = snap.join("model-00002-of-00002.safetensors");
    fs::remove_file(&shard).unwrap();
    symlink(&outside, &shard).unwrap();
    let (o, out) = convert(&snap, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("model-00002-of-00002.safetensors")
            && stderr.contains("symbolic link")
            && stderr.contains("refused"),
        "{stderr}"
    );
    assert!(files_in(out.path()).is_empty());

    // Outside a cache the folder itself is the limit: a link to a sibling folder is refused,
    // one to a file inside the folder is followed.
    let plain = dir.path().join("plain");
    hf_folder(&plain, 1);
    let single = dir.path().join("single");
    fs::create_dir(&single).unwrap();
    symlink(&outside, single.join("model.safetensors")).unwrap();
    assert_refused(&single, "symbolic link");
    let shard = plain.join("model-00001-of-00001.safetensors");
    fs::rename(&shard, plain.join("real.bin.data")).unwrap();
    symlink("real.bin.data", &shard).unwrap();
    let (o, out) = convert(&plain, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = f32_values(&read_npz(&out.path().join("out.npz")));
    assert_eq!(got, [("w0".to_string(), 0.0)]);
}

#[test]
fn concat_merges_other_inputs_under_their_own_names_and_refuses_a_name_in_two() {
    let dir = tempdir();
    let (a, b, c) = (
        dir.path().join("a.safetensors"),
        dir.path().join("b.safetensors"),
        dir.path().join("c.safetensors"),
    );
    one_tensor(&a, "x", 1.0);
    one_tensor(&b, "y", 2.0);
    one_tensor(&c, "x", 3.0);
    let run = |inputs: &[&Path], out: &Path| {
        Command::new(bin())
            .arg("convert")
            .args(inputs)
            .args(["--concat", "-o"])
            .arg(out)
            .output()
            .unwrap()
    };
    let out = dir.path().join("ab.npz");
    let o = run(&[&a, &b], &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        f32_values(&read_npz(&out)),
        [("x".to_string(), 1.0), ("y".to_string(), 2.0)]
    );
    let out = dir.path().join("ac.npz");
    let o = run(&[&a, &c], &out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("'x'")
            && stderr.contains("a.safetensors")
            && stderr.contains("c.safetensors"),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn keras_sharded_weights_with_a_missing_shard_or_a_wrong_index_are_refused_naming_the_file() {
    let dir = tempdir();
    let copy = |name: &str| {
        let to = dir.path().join(name);
        fs::create_dir(&to).unwrap();
        for e in fs::read_dir(root().join("fixtures/keras/sharded")).unwrap() {
            let p = e.unwrap().path();
            fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
        to
    };
    // An interrupted copy: a shard the index names is missing.
    let missing = copy("missing");
    fs::remove_file(missing.join("model_00001.weights.h5")).unwrap();
    assert_refused(&missing, "model_00001.weights.h5");
    assert_refused(
        &missing.join("model.weights.json"),
        "model_00001.weights.h5",
    );
    // An index that gives a layer's variables to another shard than the one holding them.
    let wrong = copy("wrong");
    let index = wrong.join("model.weights.json");
    let text = fs::read_to_string(&index).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["weight_map"]["/layers/dense/vars"] = serde_json::json!(["model_00001.weights.h5"]);
    fs::write(&index, serde_json::to_vec(&json).unwrap()).unwrap();
    assert_refused(&wrong, "layers/dense/vars/0");
    // A shard name that leaves the folder.
    json["weight_map"]["/layers/dense/vars"] = serde_json::json!(["../x.weights.h5"]);
    fs::write(&index, serde_json::to_vec(&json).unwrap()).unwrap();
    assert_refused(&wrong, "not a file name inside the folder");
}

#[test]
fn pipeline_and_sentence_transformers_parts_are_prefixed_and_a_part_outside_is_refused() {
    // a pipeline whose unet is sharded (an index in its subfolder), a component without
    // weights and one saved as null: the weights under `<component>/`, nothing else
    let t = tempdir();
    let pipe = t.path().join("pipe");
    hf_folder(&pipe.join("unet"), 2);
    fs::create_dir_all(pipe.join("scheduler")).unwrap();
    fs::write(pipe.join("scheduler/scheduler_config.json"), "{}").unwrap();
    fs::create_dir_all(pipe.join("vae")).unwrap();
    one_tensor(
        &pipe.join("vae/diffusion_pytorch_model.safetensors"),
        "w0",
        7.0,
    );
    let index = r#"{"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
        "scheduler": ["diffusers", "DDPMScheduler"], "tokenizer": [null, null],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}"#;
    fs::write(pipe.join("model_index.json"), index).unwrap();
    let (o, dir) = convert(&pipe, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = f32_values(&read_npz(&dir.path().join("out.npz")));
    let want = [("unet/w0", 0.0), ("unet/w1", 1.0), ("vae/w0", 7.0)];
    let want: Vec<(String, f32)> = want.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    assert_eq!(got, want);

    // the same pipeline in the Hugging Face cache: each part's files link to ../../../blobs/
    let repo = t.path().join("hub/models--org--pipe");
    let snap = repo.join("snapshots/0123abcd");
    fs::create_dir_all(repo.join("blobs")).unwrap();
    let mut k = 0;
    for part in ["", "unet", "vae", "scheduler"] {
        fs::create_dir_all(snap.join(part)).unwrap();
        for entry in fs::read_dir(pipe.join(part)).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                continue;
            }
            k += 1;
            fs::copy(&p, repo.join(format!("blobs/blob{k}"))).unwrap();
            let up = if part.is_empty() { "../.." } else { "../../.." };
            symlink(
                format!("{up}/blobs/blob{k}"),
                snap.join(part).join(p.file_name().unwrap()),
            )
            .unwrap();
        }
    }
    let (o, dir) = convert(&snap, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(f32_values(&read_npz(&dir.path().join("out.npz"))), want);

    // a part holding weights in a format the folder reader does not choose is named in a note;
    // one holding two candidates and no base file is an error, not a part passed over
    let onnx = t.path().join("onnx_pipe");
    hf_folder(&onnx.join("unet"), 1);
    fs::create_dir_all(onnx.join("vae")).unwrap();
    fs::create_dir_all(onnx.join("scheduler")).unwrap();
    fs::write(onnx.join("vae/model.onnx"), b"\x08\x07").unwrap();
    fs::write(onnx.join("model_index.json"), index).unwrap();
    let (o, _dir) = convert(&onnx, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("not read") && stderr.contains("model.onnx"),
        "{stderr}"
    );
    fs::remove_file(onnx.join("vae/model.onnx")).unwrap();
    for v in ["fp16", "bf16"] {
        one_tensor(
            &onnx.join(format!("vae/diffusion_pytorch_model.{v}.safetensors")),
            "w0",
            1.0,
        );
    }
    assert_refused(&onnx, "diffusion_pytorch_model.bf16.safetensors");

    // modules.json naming a folder outside the model is refused, naming the file
    let st = t.path().join("st");
    fs::create_dir_all(&st).unwrap();
    one_tensor(&st.join("model.safetensors"), "w", 1.0);
    let modules = r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "../pipe/vae", "type": "sentence_transformers.models.Dense"}]"#;
    fs::write(st.join("modules.json"), modules).unwrap();
    assert_refused(&st, "'../pipe/vae' is not a folder inside");

    // a component that model_index.json names but whose folder is gone (an interrupted copy)
    fs::remove_dir_all(pipe.join("vae")).unwrap();
    assert_refused(&pipe, "a part folder of the model is missing");
}

//! zarr and Orbax inputs: every case of fixtures/zarr/manifest.json and
//! fixtures/orbax/manifest.json converted by the binary and compared bit for bit with what
//! zarr-python / Orbax returned (written by fixtures/gen_orbax.py), with the default chunk size
//! and with 64-byte chunks; every broken case exits 1 naming the file, leaving nothing behind.

use crate::common;

use std::process::Command;

use common::*;

/// Every case of `fixtures/<dir>/manifest.json`, plain and with 64-byte chunks.
fn check(dir: &str) {
    let ran = cases::run_manifest(dir, &[&["--chunk-size", "64"]], &cases::nothing_else);
    assert!(
        ran.good + ran.bad >= 3 && ran.good > 0 && ran.bad > 0,
        "{dir}: {ran:?}"
    );
}

#[test]
fn zarr_fixtures_match_zarr_python() {
    check("zarr");
}

#[test]
fn zarr_user_fixtures_match_zarr_python() {
    // whole-shard zstd after sharding_indexed; lz4 and unicode refused with a message; a
    // string array in a group skipped with --skip-unsupported, refused without
    check("zarr_user");
}

#[test]
fn skip_unsupported_leaves_a_string_array_out_of_a_zarr_group_with_a_note() {
    // the arrays themselves are checked against zarr-python by the manifest; here the note
    for v in ["v2", "v3"] {
        let work = tempdir();
        let out = work.path().join("o.npz");
        let o = Command::new(bin())
            .args(["convert", "--skip-unsupported", "-o"])
            .arg(&out)
            .arg(root().join(format!("fixtures/zarr_user/strings_{v}.zarr")))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{v}: {err}");
        assert!(err.contains("skipped 'labels'"), "{v}: {err}");
        assert_eq!(read_npz(&out).keys().collect::<Vec<_>>(), ["x"], "{v}");
    }
}

#[test]
fn verify_counts_the_crc32c_of_shard_indices_and_ocdbt_nodes() {
    // a sharded zarr v3 array's shard indices and an OCDBT checkpoint's manifests and nodes
    // carry crc32c checksums: `verify` says it checked them, not that there are none
    for input in [
        "fixtures/zarr_user/shard_zstd_end.zarr",
        "fixtures/orbax/standard",
    ] {
        let o = Command::new(bin())
            .arg("verify")
            .arg(root().join(input))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            out.contains("checksums verified") && !out.contains("no checksums"),
            "{input}: {out}"
        );
    }
}

#[test]
fn zarr_list_reads_metadata_only() {
    // A group whose chunks are all gone still lists: `list` touches only metadata.
    let work = tempdir();
    let src = root().join("fixtures/zarr/group_v2.zarr");
    let dst = work.path().join("g.zarr");
    copy_tree(&src, &dst, &|name| name.starts_with('.'));
    let o = Command::new(bin())
        .args(["list", "--json"])
        .arg(&dst)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    for name in ["sub/w", "dtypes/complex128", "scalar", "empty"] {
        assert!(
            text.contains(&format!("\"{name}\"")),
            "{name} not in {text}"
        );
    }
    // converting it reads the (now absent) chunks as the fill value, as zarr does
    let out = work.path().join("o.npz");
    let o = convert(&dst, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = read_npz(&out);
    assert!(got["sub/w"].data.iter().all(|b| *b == 0));
}

/// Copies a folder tree, keeping only the files `keep` accepts.
fn copy_tree(src: &std::path::Path, dst: &std::path::Path, keep: &dyn Fn(&str) -> bool) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() {
            copy_tree(&e.path(), &dst.join(&name), keep);
        } else if keep(&name) {
            std::fs::copy(e.path(), dst.join(&name)).unwrap();
        }
    }
}

#[test]
fn orbax_fixtures_match_orbax_restore() {
    check("orbax");
}

#[test]
fn orbax_user_fixtures_match_orbax_restore() {
    // step_prefix / step_format_fixed_length step folders, float8 leaves
    check("orbax_user");
}

#[test]
fn orbax_jax2_fixtures_match_orbax_and_flax_restore() {
    // 2x2-mesh sharding, a Composite with a JSON item, SaveArgs(dtype), optax and Flax NNX
    // states, save_interval_steps/keep_period, a legacy flax save_checkpoint msgpack folder
    check("orbax_jax2");
}

#[test]
fn zarr_jax2_fixtures_match_zarr_python() {
    // big-endian inner bytes in a shard, shards= partly written, fill values, consolidated
    // groups; a Delta filter and datetime64 refused with a message
    check("zarr_jax2");
}

#[test]
fn a_flax_save_checkpoint_folder_lists_its_steps() {
    let dir = root().join("fixtures/orbax_jax2/flax_msgpack");
    let o = Command::new(bin()).arg("list").arg(&dir).output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{all}");
    assert!(all.contains("step 8 (steps: 3, 8)"), "{all}");
}

#[test]
fn orbax_manager_root_lists_its_steps_and_step_picks_one() {
    let root = root().join("fixtures/orbax/manager");
    let o = Command::new(bin()).arg("list").arg(&root).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("step 3 (steps: 1, 2, 3)"), "{err}");
    let o = Command::new(bin())
        .args(["list", "--step", "9"])
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no step 9 (steps: 1, 2, 3)"));
}

/// A varint (LEB128).
fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// An OCDBT object: magic, length, version 0, no compression, body, crc32c.
fn envelope(magic: u32, body: &[u8]) -> Vec<u8> {
    let len = 4 + 8 + 2 + body.len() + 4;
    let mut v = magic.to_be_bytes().to_vec();
    v.extend_from_slice(&(len as u64).to_le_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(body);
    let crc = crc32c::crc32c(&v);
    v.extend_from_slice(&crc.to_le_bytes());
    v
}

/// A one-file data table naming `d/x`.
fn table(out: &mut Vec<u8>) {
    varint(out, 1); // one file
    varint(out, 3); // suffix length
    varint(out, 0); // base path length
    out.extend_from_slice(b"d/x");
}

/// An interior node (height 1) whose only child is itself: at offset 0 of `d/x`, `len` bytes.
fn self_node(len: u64) -> Vec<u8> {
    let mut b = vec![1u8];
    table(&mut b);
    varint(&mut b, 1); // one entry
    varint(&mut b, 1); // key suffix length
    varint(&mut b, 0); // subtree common prefix
    b.push(b'a');
    for v in [0, 0, len, 1, len, 0] {
        varint(&mut b, v); // file, offset, length, keys, tree bytes, indirect bytes
    }
    envelope(0x0CDB_20DE, &b)
}

#[test]
fn an_ocdbt_node_that_points_at_itself_is_an_error() {
    let work = tempdir();
    let dir = work.path().join("item");
    std::fs::create_dir_all(dir.join("d")).unwrap();
    let len = self_node(0).len() as u64;
    let node = self_node(len);
    assert_eq!(node.len() as u64, len);
    std::fs::write(dir.join("d/x"), &node).unwrap();
    let mut m = vec![7u8; 16]; // uuid
    for v in [0, 1024, 100_000_000] {
        varint(&mut m, v);
    }
    m.push(4); // version tree arity
    varint(&mut m, 0); // no compression
    table(&mut m);
    varint(&mut m, 1); // one version
    varint(&mut m, 1); // generation
    m.push(1); // root height
    for v in [0, 0, len, 1, len, 0] {
        varint(&mut m, v);
    }
    m.extend_from_slice(&0u64.to_le_bytes()); // commit time
    varint(&mut m, 0); // no version nodes
    std::fs::write(dir.join("manifest.ocdbt"), envelope(0x0CDB_3A2A, &m)).unwrap();
    std::fs::write(dir.join("_METADATA"), br#"{"tree_metadata": {}}"#).unwrap();
    let out = work.path().join("o.npz");
    let o = convert(&dir, &out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("points at itself") && err.contains("d/x"),
        "{err}"
    );
    assert!(!out.exists());
}

/// A zarr group and an Orbax CheckpointManager root read from an S3 bucket (moto's server on
/// loopback, as tests/outputs/remote.rs runs it; skipped without moto unless T2N_REQUIRE_REMOTE=1).
#[cfg(feature = "remote")]
#[test]
fn zarr_and_orbax_from_a_bucket_convert_like_local_copies() {
    let f = |p: &str| root().join("fixtures").join(p);
    let mut args = Vec::new();
    s3::uploads(&f("zarr/group_v3.zarr"), "z", &mut args);
    s3::uploads(&f("orbax/manager"), "m", &mut args);
    let Some(server) = s3::S3::start(&args) else {
        return;
    };
    let cases = [
        ("s3://t2n/z", "zarr/group_v3.zarr.expected.npz", vec![]),
        ("s3://t2n/m", "orbax/manager.expected.npz", vec![]),
        (
            "s3://t2n/m",
            "orbax/manager/1.expected.npz",
            vec!["--step", "1"],
        ),
    ];
    for (url, oracle, extra) in cases {
        server.assert_converts(url, &extra, &f(oracle));
    }
}

#[test]
fn an_orbax_key_that_leaves_the_checkpoint_folder_is_refused() {
    let work = tempdir();
    let item = work.path().join("ckpt/item");
    std::fs::create_dir_all(&item).unwrap();
    // an array the key would reach, one level above the checkpoint
    let outside = work.path().join("ckpt/secret");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(
        outside.join(".zarray"),
        br#"{"chunks":[1],"compressor":null,"dtype":"<i4","fill_value":0,"filters":null,"order":"C","shape":[1],"zarr_format":2}"#,
    )
    .unwrap();
    std::fs::write(
        item.join("_METADATA"),
        br#"{"tree_metadata": {"x": {"key_metadata": [{"key": "../secret", "key_type": 2}], "value_metadata": {"value_type": "jax.Array", "skip_deserialize": false}}}}"#,
    )
    .unwrap();
    let out = work.path().join("o.npz");
    let o = convert(&item, &out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("leaves the folder"), "{err}");
    assert!(!out.exists());
}

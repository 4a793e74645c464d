//! Inputs whose size or shape used to decide how much memory, disk or time a run took: tiny
//! hostile serialized sparse and ragged tensors, compression bombs, trailing junk, a full
//! temporary directory, and an unsorted sparse group. Each must end at once with exit 1 and a
//! clear message, also under a 1 GiB address-space limit.

use crate::common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

/// A length-delimited protobuf field.
fn field(no: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = varint(no << 3 | 2);
    out.extend(varint(payload.len() as u64));
    out.extend_from_slice(payload);
    out
}

/// A TensorProto: dtype, shape, then `rest` (its value fields).
fn tensor(dtype: u64, dims: &[u64], rest: &[u8]) -> Vec<u8> {
    let mut shape = Vec::new();
    for &d in dims {
        let mut dim = vec![0x08];
        dim.extend(varint(d));
        shape.extend(field(2, &dim));
    }
    let mut out = vec![0x08];
    out.extend(varint(dtype));
    out.extend(field(2, &shape));
    out.extend_from_slice(rest);
    out
}

/// Runs the binary with at most 1 GiB of address space, where `prlimit` exists.
fn limited(args: &[&std::ffi::OsStr]) -> Output {
    let has_prlimit = Command::new("prlimit").arg("--version").output().is_ok();
    let mut cmd = if has_prlimit {
        let mut c = Command::new("prlimit");
        c.arg("--as=1073741824").arg(bin());
        c
    } else {
        Command::new(bin())
    };
    cmd.args(args).output().unwrap()
}

fn assert_fails(o: &Output, what: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for w in what {
        assert!(err.contains(w), "wanted {w:?} in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

fn run_both(input: &Path, out: &Path, what: &[&str]) {
    let o = limited(&[
        "convert".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert_fails(&o, what);
    assert!(!out.exists());
    let o = limited(&["list".as_ref(), input.as_os_str()]);
    assert_fails(&o, what);
}

#[test]
fn a_tiny_serialized_sparse_tensor_claiming_gigabytes_of_values_is_refused_from_its_shapes() {
    let work = tempdir();
    // tf.io.serialize_sparse output whose values are [2^28] floats from one float_val (1 GiB
    // by TensorFlow's fill rule) while the indices hold one entry: 58 bytes.
    let indices = tensor(9, &[1, 1], &field(10, &[0]));
    let values = tensor(1, &[1 << 28], &field(5, &1f32.to_le_bytes()));
    let dense_shape = tensor(9, &[1], &field(10, &[1]));
    let mut strings = Vec::new();
    for t in [&indices, &values, &dense_shape] {
        strings.extend(field(8, t));
    }
    let sparse = tensor(7, &[3], &strings);
    assert_eq!(sparse.len(), 58);
    let input = work.path().join("sparse.pb");
    fs::write(&input, &sparse).unwrap();
    run_both(
        &input,
        &work.path().join("o.npz"),
        &[
            "sparse.pb",
            "values have shape [268435456], but there are 1 indices",
        ],
    );

    // The same with [2^33] values: over --max-fill-bytes before anything is read.
    let values = tensor(1, &[1 << 33], &field(5, &1f32.to_le_bytes()));
    let mut strings = Vec::new();
    for t in [&indices, &values, &dense_shape] {
        strings.extend(field(8, t));
    }
    fs::write(&input, tensor(7, &[3], &strings)).unwrap();
    run_both(&input, &work.path().join("o.npz"), &["--max-fill-bytes"]);
}

#[test]
fn repeated_indices_from_a_fill_rule_are_refused_before_anything_is_spooled() {
    let work = tempdir();
    // indices [2^26, 1] from one int64_val (every index 0, 512 MiB by the fill rule): the
    // second entry repeats the first, which is found before any component is decoded.
    let n = 1u64 << 26;
    let indices = tensor(9, &[n, 1], &field(10, &[0]));
    let values = tensor(1, &[n], &field(5, &1f32.to_le_bytes()));
    let dense_shape = tensor(9, &[1], &field(10, &varint(n)));
    let mut strings = Vec::new();
    for t in [&indices, &values, &dense_shape] {
        strings.extend(field(8, t));
    }
    let input = work.path().join("dups.pb");
    fs::write(&input, tensor(7, &[3], &strings)).unwrap();
    let out = work.path().join("o.npz");
    let o = limited(&[
        "convert".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert_fails(&o, &["dups.pb", "duplicate index [0] (entries 0 and 1)"]);
    assert!(!out.exists());
}

/// A RaggedTensorVariant row: row_splits, then values, each a serialized TensorProto.
fn ragged_row(tensors: &[Vec<u8>]) -> Vec<u8> {
    let mut v = field(1, b"RaggedTensorVariant");
    for t in tensors {
        v.extend(field(3, t));
    }
    v
}

#[test]
fn a_batched_ragged_variant_whose_splits_overflow_when_combined_is_refused() {
    let work = tempdir();
    // Two rows, each with row_splits [0, 2^62] over values of shape [2^62, 0] (no elements):
    // each row is valid, but batching them adds 2^62 + 2^62, past int64.
    let big = 1u64 << 62;
    let mut splits = Vec::new();
    for v in [0u64, big] {
        splits.extend(varint(v));
    }
    let row = ragged_row(&[
        tensor(9, &[2], &field(10, &splits)),
        tensor(1, &[big, 0], &[]),
    ]);
    let mut variants = Vec::new();
    for _ in 0..2 {
        variants.extend(field(15, &row));
    }
    let input = work.path().join("ragged.pb");
    fs::write(&input, tensor(21, &[2], &variants)).unwrap();
    run_both(
        &input,
        &work.path().join("o.npz"),
        &[
            "ragged.pb",
            "row 1: row_splits_1 overflows when the rows are batched",
        ],
    );
}

fn gzip(bytes_of: impl Fn(&mut dyn Write), path: &Path) {
    let mut gz =
        flate2::write::GzEncoder::new(fs::File::create(path).unwrap(), flate2::Compression::fast());
    bytes_of(&mut gz);
    gz.finish().unwrap();
}

#[test]
fn a_gzip_bomb_is_refused_at_its_first_record_header() {
    let work = tempdir();
    let bomb = work.path().join("zeros.tfrecord.gz");
    let zeros = vec![0u8; 1 << 20];
    gzip(
        |w| {
            for _ in 0..256 {
                w.write_all(&zeros).unwrap();
            }
        },
        &bomb,
    );
    let out = work.path().join("o.npz");
    let o = limited(&[
        "convert".as_ref(),
        bomb.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    // Found while inflating (the message names the decompressed stream), not after spooling.
    assert_fails(
        &o,
        &[
            "zeros.tfrecord.gz",
            "record 0 at byte offset 0 of the decompressed stream",
        ],
    );
    assert!(!out.exists());
}

fn tfrecord_bytes() -> Vec<u8> {
    fs::read(root().join("fixtures/tfrecord/mixed.tfrecord")).unwrap()
}

#[test]
fn zlib_streams_with_trailing_junk_are_refused() {
    let work = tempdir();
    let input = work.path().join("junk.tfrecord.zz");
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&tfrecord_bytes()).unwrap();
    let mut bytes = z.finish().unwrap();
    let clean = work.path().join("clean.tfrecord.zz");
    fs::write(&clean, &bytes).unwrap();
    let o = convert(&clean, work.path().join("clean.npz"));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    bytes.extend_from_slice(b"junk after the stream");
    fs::write(&input, &bytes).unwrap();
    let out = work.path().join("o.npz");
    let o = convert(&input, &out);
    assert_fails(&o, &["junk.tfrecord.zz", "trailing bytes"]);
    assert!(!out.exists());
}

#[test]
fn a_full_temporary_directory_is_reported_as_such() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("skipped: no prlimit");
        return;
    }
    let work = tempdir();
    let input = work.path().join("many.tfrecord.gz");
    let records = tfrecord_bytes();
    gzip(
        |w| {
            for _ in 0..(1 << 20) / records.len() + 1 {
                w.write_all(&records).unwrap();
            }
        },
        &input,
    );
    let out = work.path().join("o.npz");
    // File size limited to 64 KiB (SIGXFSZ ignored, so the write fails with EFBIG instead).
    let script = "trap '' XFSZ; exec prlimit --fsize=65536 \"$0\" convert \"$1\" -o \"$2\"";
    let o = Command::new("sh")
        .args(["-c", script])
        .arg(bin())
        .arg(&input)
        .arg(&out)
        .output()
        .unwrap();
    assert_fails(&o, &["many.tfrecord.gz", "temporary file", "TMPDIR"]);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("corrupt"));
}

#[test]
fn unsorted_sparse_groups_densify_like_sorted_ones() {
    let work = tempdir();
    // A 3 x 4 sparse tensor whose entries are stored out of row-major order.
    let entries: [([i64; 2], f32); 4] =
        [([2, 1], 4.0), ([0, 3], 1.0), ([1, 0], 2.0), ([1, 2], 3.0)];
    let indices: Vec<u8> = entries
        .iter()
        .flat_map(|(i, _)| i.iter().flat_map(|v| v.to_le_bytes()))
        .collect();
    let values: Vec<u8> = entries.iter().flat_map(|(_, v)| v.to_le_bytes()).collect();
    let shape: Vec<u8> = [3i64, 4].iter().flat_map(|v| v.to_le_bytes()).collect();
    let header = serde_json::json!({
        "X/dense_shape": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]},
        "X/indices": {"dtype": "I64", "shape": [4, 2], "data_offsets": [16, 80]},
        "X/values": {"dtype": "F32", "shape": [4], "data_offsets": [80, 96]},
    })
    .to_string();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    file.extend(shape);
    file.extend(indices);
    file.extend(values);
    let input = work.path().join("unsorted.safetensors");
    fs::write(&input, file).unwrap();
    let out = work.path().join("o.npz");
    let o = Command::new(bin())
        .args(["convert", "--sparse", "dense"])
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let got = read_npz(&out);
    let x = &got["X"];
    assert_eq!(x.shape, [3, 4]);
    let mut want = [0f32; 12];
    for ([r, c], v) in entries {
        want[(r * 4 + c) as usize] = v;
    }
    let want: Vec<u8> = want.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(x.data, want);
}

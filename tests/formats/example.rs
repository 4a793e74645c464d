//! TFRecord datasets of tf.train.Example beyond the single-input fixtures: sharded datasets
//! (`--concat`, compared with TensorFlow's parse of all records in order), output order and
//! byte-identical outputs whatever order the feature map is serialized in, option errors,
//! bounded memory on a million records, and `list`'s BYTES against the encoded size of each
//! feature in the fixtures' records, walked here from the file's own bytes.

use crate::common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;

fn tensor2npy(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn shards() -> Vec<std::path::PathBuf> {
    (0..3)
        .map(|s| root().join(format!("fixtures/example/train-0000{s}-of-00003.tfrecord")))
        .collect()
}

#[test]
fn concat_reads_shards_as_one_dataset_in_input_order() {
    let want = read_npz(&root().join("fixtures/example/train_concat.expected.npz"));
    for extra in [&[][..], &["--chunk-size", "64"][..]] {
        let dir = tempdir();
        let out = dir.path().join("train.npz");
        let mut args: Vec<&std::ffi::OsStr> = vec![std::ffi::OsStr::new("convert")];
        let shards = shards();
        args.extend(shards.iter().map(|p| p.as_os_str()));
        args.extend([
            std::ffi::OsStr::new("--concat"),
            std::ffi::OsStr::new("-o"),
            out.as_os_str(),
        ]);
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        let o = tensor2npy(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_same_arrays(&read_npz(&out), &want, "train-*.tfrecord --concat");
    }
}

#[test]
fn without_concat_each_shard_is_its_own_prefixed_dataset() {
    let dir = tempdir();
    let out = dir.path().join("all.npz");
    let mut args: Vec<&std::ffi::OsStr> = vec![std::ffi::OsStr::new("convert")];
    let shards = shards();
    args.extend(shards.iter().map(|p| p.as_os_str()));
    args.extend([std::ffi::OsStr::new("-o"), out.as_os_str()]);
    let o = tensor2npy(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = read_npz(&out);
    let first =
        read_npz(&root().join("fixtures/example/train-00000-of-00003_tfrecord.expected.npz"));
    assert_eq!(got["train-00000-of-00003/x"], first["x"]);
    assert_eq!(got.len(), 12);
}

// ---------------------------------------------------------------------------------------------
// Hand-built records, for what TensorFlow does not let a test choose (the map order).

fn field(number: u64, body: &[u8]) -> Vec<u8> {
    let mut v = varint(number << 3 | 2);
    v.extend(varint(body.len() as u64));
    v.extend_from_slice(body);
    v
}

fn varint(mut x: u64) -> Vec<u8> {
    let mut v = Vec::new();
    while x >= 0x80 {
        v.push((x as u8) | 0x80);
        x >>= 7;
    }
    v.push(x as u8);
    v
}

/// An Example whose map entries are written in the order given.
fn example(features: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let map: Vec<u8> = features
        .iter()
        .flat_map(|(k, f)| field(1, &[field(1, k.as_bytes()), field(2, f)].concat()))
        .collect();
    field(1, &map)
}

fn floats(v: &[f32]) -> Vec<u8> {
    let packed: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    field(2, &field(1, &packed))
}

fn ints(v: &[i64]) -> Vec<u8> {
    let packed: Vec<u8> = v.iter().flat_map(|&x| varint(x as u64)).collect();
    field(3, &field(1, &packed))
}

fn mask(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn write_tfrecord(path: &Path, records: impl Iterator<Item = Vec<u8>>) {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(fs::File::create(path).unwrap());
    for r in records {
        let len = (r.len() as u64).to_le_bytes();
        w.write_all(&len).unwrap();
        w.write_all(&mask(crc32c::crc32c(&len)).to_le_bytes())
            .unwrap();
        w.write_all(&r).unwrap();
        w.write_all(&mask(crc32c::crc32c(&r)).to_le_bytes())
            .unwrap();
    }
}

#[test]
fn outputs_are_sorted_by_key_and_identical_whatever_the_map_order() {
    let dir = tempdir();
    let record = |i: i64, reversed: bool| {
        let mut f = vec![
            ("b", ints(&[i])),
            ("a", floats(&[i as f32, 0.5])),
            ("c", ints(&(0..i % 3).collect::<Vec<_>>())),
        ];
        if reversed {
            f.reverse();
        }
        example(&f)
    };
    let (p1, p2) = (
        dir.path().join("one.tfrecord"),
        dir.path().join("two.tfrecord"),
    );
    write_tfrecord(&p1, (0..5).map(|i| record(i, false)));
    write_tfrecord(&p2, (0..5).map(|i| record(i, true)));
    let (o1, o2) = (dir.path().join("one.npz"), dir.path().join("two.npz"));
    assert!(convert(&p1, &o1).status.success());
    assert!(convert(&p2, &o2).status.success());
    assert_eq!(fs::read(&o1).unwrap(), fs::read(&o2).unwrap());
    let mut zip = zip::ZipArchive::new(fs::File::open(&o1).unwrap()).unwrap();
    let names: Vec<String> = (0..zip.len())
        .map(|i| zip.by_index(i).unwrap().name().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        ["a.npy", "b.npy", "c/flat_values.npy", "c/row_splits_0.npy"]
    );
    let got = read_npz(&o1);
    assert_eq!(got["a"].shape, [5, 2]);
    assert_eq!(got["b"].descr, "<i8");
    assert_eq!(got["b"].shape, [5]);
    assert_eq!(got["c/row_splits_0"].data.len(), 6 * 8);
    // the values, as tf.io.parse_example gives them for these records: `c` holds 0..i % 3
    let i64s = |v: &[i64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    assert_eq!(
        got["a"].data,
        f32s(&[0.0, 0.5, 1.0, 0.5, 2.0, 0.5, 3.0, 0.5, 4.0, 0.5])
    );
    assert_eq!(got["b"].data, i64s(&[0, 1, 2, 3, 4]));
    assert_eq!(got["c/flat_values"].data, i64s(&[0, 0, 1, 0]));
    assert_eq!(got["c/row_splits_0"].data, i64s(&[0, 0, 1, 3, 3, 4]));
}

#[test]
fn a_repeated_key_keeps_its_last_value_as_protobuf_maps_do() {
    let dir = tempdir();
    let p = dir.path().join("dup.tfrecord");
    write_tfrecord(
        &p,
        (0..2).map(|i| example(&[("x", ints(&[100])), ("x", ints(&[i]))])),
    );
    let out = dir.path().join("dup.npz");
    let o = convert(&p, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let x = &read_npz(&out)["x"];
    assert_eq!(x.data, [0i64.to_le_bytes(), 1i64.to_le_bytes()].concat());
}

#[test]
fn feature_options_name_what_is_wrong() {
    let input = root().join("fixtures/example/basic.tfrecord");
    let dir = tempdir();
    let out = dir.path().join("o.npz");
    for (args, wanted, code) in [
        (&["--features", "nope"][..], "'nope'", 1),
        (
            &["--dense-features", "tokens"][..],
            "record 1 holds 1 values",
            1,
        ),
        (
            &["--dense-features", "weight"][..],
            "record 1 does not hold it",
            1,
        ),
        (&["--ragged-features", "zzz"][..], "'zzz'", 1),
    ] {
        let o = Command::new(bin())
            .arg("convert")
            .arg(&input)
            .arg("-o")
            .arg(&out)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(
            stderr.contains(wanted),
            "{args:?}: wanted {wanted} in {stderr}"
        );
        assert!(stderr.contains("basic.tfrecord"), "{stderr}");
        assert!(!out.exists());
    }
    // --stack is for TFRecords of tensors: a usage error here
    let o = Command::new(bin())
        .arg("convert")
        .arg(&input)
        .args(["--stack", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("--stack"));
    // --dense-features keeps a one-value feature as [N, 1], like FixedLenFeature([1])
    let o = Command::new(bin())
        .arg("convert")
        .arg(&input)
        .args(["--features", "label", "--dense-features", "label", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = read_npz(&root().join("fixtures/example/basic_tfrecord.expected.npz"));
    let got = &read_npz(&out)["label"];
    assert_eq!(got.shape, [7, 1]);
    assert_eq!(got.data, want["label"].data);
}

#[test]
fn a_million_records_convert_in_bounded_memory() {
    let dir = tempdir();
    let records = |p: &Path, n: i64| {
        write_tfrecord(
            p,
            (0..n).map(|i| {
                example(&[
                    ("id", ints(&[i])),
                    ("v", floats(&[i as f32, 1.0, 2.0, 3.0])),
                    ("r", ints(&(0..i % 4).collect::<Vec<_>>())),
                ])
            }),
        )
    };
    // Peak RSS of one conversion, in kB.
    let peak = |input: &Path, out: &Path| -> u64 {
        let o = Command::new("/usr/bin/time")
            .args(["-f", "maxrss_kb=%M"])
            .arg(bin())
            .arg("convert")
            .arg(input)
            .arg("-o")
            .arg(out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{stderr}");
        stderr
            .rsplit("maxrss_kb=")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let n = 1_000_000i64;
    let p = dir.path().join("big.tfrecord");
    records(&p, n);
    let small = dir.path().join("small.tfrecord");
    records(&small, 1_000);
    let out = dir.path().join("big.npz");
    let rss_kb = peak(&p, &out);
    // The same run over a thousand records: what the (debug) binary, its threads and the
    // chunk buffers take whatever the input, so that the binary's own size cancels out.
    let base_kb = peak(&small, &dir.path().join("small.npz"));
    let got = read_npz(&out);
    assert_eq!(got["id"].shape, [n as u64]);
    assert_eq!(got["v"].shape, [n as u64, 4]);
    assert_eq!(&got["id"].data[8 * 999_999..], &999_999i64.to_le_bytes());
    assert_eq!(got["r/flat_values"].shape, [1_500_000]);
    assert_eq!(
        &got["r/row_splits_0"].data[8 * n as usize..],
        &1_500_000i64.to_le_bytes()
    );
    // The outputs hold 44 MB; the records 60 MB. A thousand times the records may add no more
    // than 12 MB.
    assert!(
        rss_kb < base_kb + 12_000,
        "peak RSS {rss_kb} kB, {base_kb} kB for a thousand records"
    );
}

#[test]
fn list_shows_each_ragged_feature_once() {
    let input = root().join("fixtures/example/seq.tfrecord");
    let o = Command::new(bin())
        .arg("list")
        .arg("--json")
        .arg(&input)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = |name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {rows}"))
            .clone()
    };
    // shapes as tf.io.parse_sequence_example gives them: [N, None] and [N, None, None]
    for (name, dims) in [("frames", 3), ("ids", 3), ("words", 3), ("lang", 2)] {
        let r = row(name);
        assert_eq!(r["kind"], "ragged", "{r}");
        let mut want = vec![serde_json::json!(5)];
        want.resize(dims, serde_json::Value::Null);
        assert_eq!(r["shape"], serde_json::Value::Array(want), "{r}");
    }
    assert_eq!(row("length")["kind"], "dense");
    assert_eq!(row("length")["shape"], serde_json::json!([5]));
    assert_eq!(row("name")["npy_dtype"], "|S4");
    assert_eq!(rows.as_array().unwrap().len(), 6);
}

/// A cheap deterministic cousin of the fuzz target: every fixture record with bytes flipped,
/// re-framed with valid CRCs, in every output mode. Nothing may panic, and whatever the first
/// pass accepts, the second pass streams in full.
#[test]
fn mutated_records_fail_cleanly_in_every_mode() {
    use tensor2npy::input::FileRange;
    use tensor2npy::source::example::{ExampleOptions, ExampleSource, Part, RaggedChoice};
    use tensor2npy::structure::RaggedMode;
    use tensor2npy::tensor::Source;

    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let dir = tempdir();
    let mut accepted = 0;
    for name in ["basic.tfrecord", "seq.tfrecord"] {
        let raw = fs::read(root().join("fixtures/example").join(name)).unwrap();
        let mut records = Vec::new();
        let mut pos = 0;
        while pos < raw.len() {
            let len = u64::from_le_bytes(raw[pos..pos + 8].try_into().unwrap()) as usize;
            records.push(raw[pos + 12..pos + 12 + len].to_vec());
            pos += 16 + len;
        }
        for round in 0..300 {
            let mut recs = records.clone();
            for _ in 0..1 + round % 4 {
                let r = (rand() as usize) % recs.len();
                if recs[r].is_empty() {
                    continue;
                }
                let at = (rand() as usize) % recs[r].len();
                recs[r][at] ^= 1 << (rand() % 8);
            }
            let p = dir.path().join("m.tfrecord");
            write_tfrecord(&p, recs.into_iter());
            for mode in [RaggedMode::Components, RaggedMode::Flat, RaggedMode::Pad] {
                let opts = ExampleOptions {
                    ragged: RaggedChoice {
                        mode,
                        fill: None,
                        max_dense_bytes: Some(1 << 24),
                        list: false,
                    },
                    ..ExampleOptions::default()
                };
                let parts = vec![Part {
                    display: "m".into(),
                    data: FileRange::from_vec(fs::read(&p).unwrap()),
                }];
                let Ok(mut src) = ExampleSource::open("m", vec![], parts, &opts) else {
                    continue;
                };
                accepted += 1;
                for i in 0..src.len() {
                    let meta = src.meta(i).unwrap();
                    let mut sink = |_: &[u8]| Ok(());
                    let r = if meta.dtype.item_size().is_some() {
                        src.read_dense(i, 64, &mut sink)
                    } else {
                        src.read_strings(i, &mut sink)
                    };
                    r.unwrap_or_else(|e| panic!("{name} round {round}: {}: {e:#}", meta.name));
                }
            }
        }
    }
    // Many flips land in values, which stay valid Examples.
    assert!(accepted > 100, "{accepted}");
}

// ---------------------------------------------------------------------------------------------
// `list`'s BYTES: what each feature occupies in the records, computed here from the file.

/// One varint at the start of `m`, which moves past it.
fn read_varint(m: &mut &[u8]) -> u64 {
    let mut x = 0u64;
    for shift in (0..64).step_by(7) {
        let b = m[0];
        *m = &m[1..];
        x |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return x;
        }
    }
    panic!("a varint longer than 10 bytes");
}

/// The length-delimited fields of a protobuf message as (field number, body), in order; fields
/// of the other wire types are skipped.
fn delimited_fields(mut msg: &[u8]) -> Vec<(u64, &[u8])> {
    let mut out = Vec::new();
    while !msg.is_empty() {
        let tag = read_varint(&mut msg);
        match tag & 7 {
            0 => {
                read_varint(&mut msg);
            }
            1 => msg = &msg[8..],
            5 => msg = &msg[4..],
            2 => {
                let len = read_varint(&mut msg) as usize;
                out.push((tag >> 3, &msg[..len]));
                msg = &msg[len..];
            }
            w => panic!("wire type {w}"),
        }
    }
    out
}

/// By feature key, the bytes its `Feature` (context) or `FeatureList` (feature list) messages
/// take over all records of the plain TFRecord files `paths`: each record framed as an 8-byte
/// length, a 4-byte CRC, the payload and a 4-byte CRC; the payload an Example (field 1:
/// Features) or SequenceExample (1: context Features, 2: FeatureLists), each a map whose entries
/// (field 1) hold the key (1) and the message (2); the last entry of a repeated key counts.
fn encoded_feature_bytes(paths: &[std::path::PathBuf]) -> std::collections::BTreeMap<String, u64> {
    let mut total = std::collections::BTreeMap::new();
    for path in paths {
        let raw = fs::read(path).unwrap();
        let mut pos = 0;
        while pos < raw.len() {
            let len = u64::from_le_bytes(raw[pos..pos + 8].try_into().unwrap()) as usize;
            let rec = &raw[pos + 12..pos + 12 + len];
            pos += 16 + len;
            let mut record = std::collections::BTreeMap::new();
            for (section, map) in delimited_fields(rec) {
                if section != 1 && section != 2 {
                    continue;
                }
                for (_, entry) in delimited_fields(map).into_iter().filter(|f| f.0 == 1) {
                    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
                    for (number, body) in delimited_fields(entry) {
                        match number {
                            1 => key = body,
                            2 => value = body,
                            _ => {}
                        }
                    }
                    let key = String::from_utf8(key.to_vec()).unwrap();
                    record.insert((section, key), value.len() as u64);
                }
            }
            for ((_, key), bytes) in record {
                *total.entry(key).or_insert(0) += bytes;
            }
        }
        assert_eq!(pos, raw.len(), "{}", path.display());
    }
    total
}

#[test]
fn list_bytes_are_what_each_feature_occupies_in_the_records() {
    let ex = |name: &str| root().join("fixtures/example").join(name);
    let cases: Vec<(Vec<std::path::PathBuf>, &[&str])> = vec![
        (vec![ex("basic.tfrecord")], &[]),
        (vec![ex("seq.tfrecord")], &[]),
        (vec![ex("edge.tfrecord")], &[]),
        (shards(), &["--concat"]),
    ];
    for (inputs, extra) in cases {
        let want = encoded_feature_bytes(&inputs);
        let o = Command::new(bin())
            // the records walked in three groups, whose statistics are merged
            .env("T2N_JOBS_MIN_BYTES", "0")
            .env("RAYON_NUM_THREADS", "3")
            .arg("list")
            .arg("--json")
            .args(&inputs)
            .args(extra)
            .output()
            .unwrap();
        let what = format!("{inputs:?}");
        assert!(
            o.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let got: std::collections::BTreeMap<String, u64> = (rows.as_array().unwrap().iter())
            .map(|r| {
                let name = r["name"].as_str().unwrap().to_string();
                (name, r["bytes"].as_u64().unwrap())
            })
            .collect();
        assert_eq!(got, want, "{what}");
        assert!(want.values().all(|&b| b > 0), "{what}: {want:?}");
    }
}

/// Converting ragged features as components: the values piece holds what the feature occupies
/// in the records; its row splits are derived from the records' structure and occupy nothing.
#[test]
fn ragged_components_carry_the_feature_bytes_on_their_values_only() {
    use tensor2npy::input::FileRange;
    use tensor2npy::source::example::{ExampleOptions, ExampleSource, Part};
    use tensor2npy::tensor::Source;

    for name in ["basic.tfrecord", "seq.tfrecord"] {
        let path = root().join("fixtures/example").join(name);
        let want = encoded_feature_bytes(std::slice::from_ref(&path));
        let parts = vec![Part {
            display: name.into(),
            data: FileRange::from_vec(fs::read(&path).unwrap()),
        }];
        let src = ExampleSource::open(name, vec![], parts, &ExampleOptions::default()).unwrap();
        let (mut splits, mut values) = (0, 0);
        for i in 0..src.len() {
            let m = src.meta(i).unwrap();
            if m.name.contains("/row_splits_") {
                splits += 1;
                assert_eq!(m.stored_bytes, 0, "{name}: {}", m.name);
            } else {
                let key = m.name.strip_suffix("/flat_values");
                values += key.is_some() as usize;
                let key = key.unwrap_or(&m.name);
                assert_eq!(m.stored_bytes, want[key], "{name}: {}", m.name);
            }
        }
        assert!(
            splits > 0 && values > 0,
            "{name}: {splits} splits, {values} values"
        );
    }
}

#[test]
fn a_dataset_save_folder_is_refused_and_its_snapshot_file_reads_as_records() {
    // tf.data.Dataset.save: the folder is refused saying what its files are; its .snapshot file
    // gives each element's components as records (the oracle: tf.data.Dataset.load)
    let ran = cases::run_manifest("tfrecord_dataset_save", &[], &cases::nothing_else);
    assert!(ran.good == 1 && ran.bad == 1, "{ran:?}");
}

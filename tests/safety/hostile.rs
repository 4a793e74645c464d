//! Hostile inputs II (issue 30): paths from an input that are named pipes, memory that a small
//! file could make grow with what it declares, `--max-output`, and batches under `--jobs` whose
//! one input fails.

use crate::common;

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Runs the binary with a deadline, so a hang fails the test instead of stalling it.
pub(crate) fn run_with_deadline(args: &[&OsStr], deadline: Duration) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("tensor2npy {args:?} ran past {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit 1 with a message naming `what`, and nothing written into `dir` but the inputs.
fn assert_refused(o: &Output, what: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for w in what {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn an_onnx_external_data_file_that_is_a_fifo_is_refused_at_once() {
    let dir = tempdir();
    let m = dir.path().join("m");
    fs::create_dir(&m).unwrap();
    fs::copy(
        root().join("fixtures/graph/ext_one/model.onnx"),
        m.join("model.onnx"),
    )
    .unwrap();
    mkfifo(&m.join("weights.data"));
    let model = m.join("model.onnx");
    let out = dir.path().join("w.npz");
    let o = run_with_deadline(
        &[
            OsStr::new("convert"),
            model.as_os_str(),
            OsStr::new("-o"),
            out.as_os_str(),
        ],
        Duration::from_secs(20),
    );
    assert_refused(&o, &["weights.data", "named pipe"]);
    assert!(!out.exists());
    let o = run_with_deadline(
        &[OsStr::new("list"), model.as_os_str()],
        Duration::from_secs(20),
    );
    assert_refused(&o, &["weights.data", "named pipe"]);
    let o = run_with_deadline(
        &[OsStr::new("verify"), model.as_os_str()],
        Duration::from_secs(20),
    );
    assert_refused(&o, &["weights.data", "named pipe"]);
}

#[test]
fn a_checkpoint_shard_that_is_a_fifo_is_refused_at_once() {
    let dir = tempdir();
    fs::copy(
        root().join("fixtures/ckpt/many/ckpt.index"),
        dir.path().join("ckpt.index"),
    )
    .unwrap();
    mkfifo(&dir.path().join("ckpt.data-00000-of-00001"));
    let prefix = dir.path().join("ckpt");
    let out = dir.path().join("w.npz");
    let o = run_with_deadline(
        &[
            OsStr::new("convert"),
            prefix.as_os_str(),
            OsStr::new("-o"),
            out.as_os_str(),
        ],
        Duration::from_secs(20),
    );
    assert_refused(&o, &["ckpt.data-00000-of-00001", "named pipe"]);
    assert!(!out.exists());
}

#[test]
fn a_pipe_named_on_the_command_line_is_still_read() {
    // The user's own `<(cat model)` is read once and spooled, as before.
    let src = root().join("fixtures/graph/typed.onnx");
    let o = Command::new("bash")
        .arg("-c")
        .arg("exec \"$0\" list <(cat \"$1\")")
        .arg(bin())
        .arg(&src)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// A length-delimited protobuf field.
fn field(no: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = varint(no << 3 | 2);
    out.extend(varint(payload.len() as u64));
    out.extend_from_slice(payload);
    out
}

/// A frozen GraphDef of `n` float `Const` nodes of `elems` elements each, every one a single
/// `float_val` that TensorFlow's fill rule repeats (`tf.make_ndarray` does the same).
fn fill_graphdef(n: usize, elems: u64) -> Vec<u8> {
    let mut graph = Vec::new();
    for i in 0..n {
        let mut tensor = vec![0x08, 0x01]; // dtype: DT_FLOAT
        tensor.extend(field(2, &field(2, &[&[0x08][..], &varint(elems)].concat())));
        tensor.extend(field(5, &1.5f32.to_le_bytes()));
        let attr = [field(1, b"value"), field(2, &field(8, &tensor))].concat();
        let node = [
            field(1, format!("c{i:02}").as_bytes()),
            field(2, b"Const"),
            field(5, &attr),
        ]
        .concat();
        graph.extend(field(1, &node));
    }
    graph
}

#[test]
fn max_output_refuses_a_run_whose_outputs_together_pass_the_budget() {
    let dir = tempdir();
    let pb = dir.path().join("consts.pb");
    // 16 constants of 1 MiB each, every one within --max-fill-bytes 1M.
    fs::write(&pb, fill_graphdef(16, 1 << 18)).unwrap();
    let out = dir.path().join("made/here/consts.npz");
    let o = Command::new(bin())
        .args([
            "convert",
            "--max-fill-bytes",
            "1M",
            "--max-output",
            "8M",
            "-o",
        ])
        .arg(&out)
        .arg(&pb)
        .output()
        .unwrap();
    assert_refused(&o, &["consts.pb", "--max-output", "c07"]);
    assert!(
        !dir.path().join("made").exists(),
        "{:?}",
        files_in(dir.path())
    );
    // The same budget for a directory output, and for two tensors it admits.
    let outdir = dir.path().join("npys");
    let o = Command::new(bin())
        .args([
            "convert",
            "--max-fill-bytes",
            "1M",
            "--max-output",
            "8M",
            "-o",
        ])
        .arg(&outdir)
        .arg(&pb)
        .output()
        .unwrap();
    assert_refused(&o, &["--max-output"]);
    assert!(!outdir.exists());
    let o = Command::new(bin())
        .args(["convert", "--max-fill-bytes", "1M", "--max-output", "3M"])
        .args(["--select", "c00", "--select", "c15", "-o"])
        .arg(&out)
        .arg(&pb)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let got = read_npz(&out);
    assert_eq!(got.len(), 2);
    for a in got.values() {
        assert_eq!(a.shape, vec![1 << 18]);
        assert!(a.data.chunks(4).all(|c| c == 1.5f32.to_le_bytes()));
    }
}

#[test]
fn max_output_refuses_a_tiny_pt_whose_stride_0_view_is_4_gib() {
    let case: serde_json::Value =
        serde_json::from_slice(&fs::read(root().join("fixtures/hostile/sizes.json")).unwrap())
            .unwrap();
    let case = &case[0];
    let input = root().join(case["input"].as_str().unwrap());
    // What torch says the view holds, against what the file weighs.
    let bytes = case["elements"].as_u64().unwrap() * case["itemsize"].as_u64().unwrap();
    assert_eq!(bytes, 4 << 30);
    assert!(fs::metadata(&input).unwrap().len() < 1024);
    let dir = tempdir();
    for out in ["w.npz", "w.npy", "wdir"] {
        let out = dir.path().join(out);
        let o = Command::new(bin())
            .args(["convert", "--max-output", "1G", "-o"])
            .arg(&out)
            .arg(&input)
            .output()
            .unwrap();
        assert_refused(
            &o,
            &["stride0_4gib.pt", "'w'", "--max-output", "4294967296"],
        );
        assert!(
            files_in(dir.path()).is_empty(),
            "{:?}",
            files_in(dir.path())
        );
    }
}

#[test]
fn max_output_counts_every_output_of_a_batch_and_admits_exactly_its_size() {
    let dir = tempdir();
    let inputs = [
        root().join("fixtures/torch/views.pt"),
        root().join("fixtures/torch/state_dict.pt"),
    ];
    let out = dir.path().join("all");
    let o = Command::new(bin())
        .args(["convert", "--to", "npy", "-o"])
        .arg(&out)
        .args(&inputs)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // Every byte the run wrote: the .npy files of both inputs.
    let written: u64 = files_in(&out)
        .iter()
        .filter(|p| p.is_file())
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    fs::remove_dir_all(&out).unwrap();
    for (budget, ok) in [(written, true), (written - 1, false)] {
        let o = Command::new(bin())
            .args(["convert", "--to", "npy", "-j2", "--max-output"])
            .arg(budget.to_string())
            .arg("-o")
            .arg(&out)
            .args(&inputs)
            .output()
            .unwrap();
        if ok {
            assert!(o.status.success(), "{}", stderr(&o));
            fs::remove_dir_all(&out).unwrap();
        } else {
            assert_refused(&o, &["--max-output"]);
            assert!(!out.exists());
        }
    }
}

/// `state_dict.pt` with one byte of a stored tensor flipped: it opens, and fails its CRC-32
/// while that tensor is written.
fn crc_broken_pt(dir: &Path) -> std::path::PathBuf {
    let src = root().join("fixtures/torch/state_dict.pt");
    let mut bytes = fs::read(&src).unwrap();
    let at = {
        let mut z = zip::ZipArchive::new(fs::File::open(&src).unwrap()).unwrap();
        let m = z.by_name("state_dict/data/0").unwrap();
        m.data_start().unwrap() as usize
    };
    bytes[at + 1] ^= 0x40;
    let input = dir.join("bad.pt");
    fs::write(&input, &bytes).unwrap();
    input
}

#[test]
fn a_failing_input_of_a_parallel_batch_lets_the_outputs_in_progress_complete() {
    let dir = tempdir();
    // 8M bfloat16 values (16 MiB), widened to float32 chunk by chunk: still being written
    // when the second worker meets the broken input.
    let n: usize = 8 << 20;
    let bits = |i: usize| (i % 0x7f00) as u16;
    let data: Vec<u8> = (0..n).flat_map(|i| bits(i).to_le_bytes()).collect();
    let big = dir.path().join("big.safetensors");
    fs::write(
        &big,
        safetensors_bytes(&[("w", "BF16", vec![n as u64], data)]),
    )
    .unwrap();
    let bad = crc_broken_pt(dir.path());
    let small = root().join("fixtures/torch/views.pt");
    let out = dir.path().join("out");
    let o = Command::new(bin())
        .args(["convert", "-j2", "--to", "npz", "-o"])
        .arg(&out)
        .args([&big, &bad, &small])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.pt: tensor '") && err.contains("CRC"),
        "{err}"
    );
    // The output in progress is complete and right; the failed one and the one not started
    // are absent.
    let got = read_npz(&out.join("big.npz"));
    let w = &got["w"];
    assert_eq!((w.descr.as_str(), w.shape.clone()), ("<f4", vec![n as u64]));
    for (i, c) in w.data.chunks_exact(4).enumerate() {
        let v = u32::from_le_bytes(c.try_into().unwrap());
        assert_eq!(v, u32::from(bits(i)) << 16, "element {i}");
    }
    assert!(!out.join("bad.npz").exists());
    assert!(!out.join("views.npz").exists());
    assert_eq!(files_in(&out).len(), 1, "{:?}", files_in(&out));
}

#[test]
fn hdf5_external_storage_is_read_beside_the_file_and_refused_outside_it_or_from_a_fifo() {
    let dir = tempdir();
    let sub = dir.path().join("sub");
    fs::create_dir(&sub).unwrap();
    let fx = root().join("fixtures/hdf5");
    fs::copy(fx.join("external.bin"), dir.path().join("external.bin")).unwrap();
    // `../external.bin` exists, but outside the HDF5 file's folder.
    fs::copy(fx.join("external_outside.h5"), sub.join("outside.h5")).unwrap();
    // `external.bin` beside the file: a link out of the folder, then a FIFO.
    fs::copy(fx.join("external.h5"), sub.join("beside.h5")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("external.bin"), sub.join("external.bin")).unwrap();
    let out = dir.path().join("o.npz");
    let convert = |input: &Path| {
        run_with_deadline(
            &[
                OsStr::new("convert"),
                input.as_os_str(),
                OsStr::new("-o"),
                out.as_os_str(),
            ],
            Duration::from_secs(20),
        )
    };
    let o = convert(&sub.join("outside.h5"));
    assert_refused(
        &o,
        &["outside.h5", "'e'", "../external.bin", "outside the folder"],
    );
    assert!(!out.exists());
    let o = convert(&sub.join("beside.h5"));
    assert_refused(&o, &["beside.h5", "external.bin", "outside the folder"]);
    fs::remove_file(sub.join("external.bin")).unwrap();
    mkfifo(&sub.join("external.bin"));
    let o = convert(&sub.join("beside.h5"));
    assert_refused(&o, &["beside.h5", "external.bin", "named pipe"]);
    assert!(!out.exists());
    // A regular file beside it is read as h5py reads it (the oracle).
    fs::remove_file(sub.join("external.bin")).unwrap();
    fs::copy(fx.join("external.bin"), sub.join("external.bin")).unwrap();
    let o = convert(&sub.join("beside.h5"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_arrays(
        &read_npz(&out),
        &read_npz(&fx.join("external.h5.expected.npz")),
        "external.h5 copied",
    );
}

#[test]
fn hdf5_soft_links_name_nothing_and_a_virtual_dataset_is_skipped_with_a_note() {
    let fx = root().join("fixtures/hdf5");
    for f in ["links.h5", "links_latest.h5", "links_dense.h5"] {
        let o = Command::new(bin())
            .args(["list", "--json"])
            .arg(fx.join(f))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let text = v.to_string();
        // h5py's visititems gives g/b and w, nothing through a soft or external link.
        for name in ["alias", "a_first", "galias", "broken", "ext", "s00"] {
            assert!(
                !text.contains(&format!("\"{name}")),
                "{f}: {name} in {text}"
            );
        }
        assert!(
            text.contains("\"g/b\"") && text.contains("\"w\""),
            "{f}: {text}"
        );
    }
    let o = Command::new(bin())
        .arg("list")
        .arg(fx.join("virtual.h5"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("skipped 'v': a virtual dataset"),
        "{}",
        stderr(&o)
    );
}

// ---------------------------------------------------------------------------------------------
// Memory that a small file could make grow with what it declares: each case runs under a
// 256 MiB address-space limit (the tool itself starts in under 64 MiB).

/// Runs the binary under the 256 MiB address-space limit, with a deadline.
fn within_256_mib(args: &[&OsStr]) -> Output {
    within_mib(256, args)
}

fn varint_field(no: u64, v: u64) -> Vec<u8> {
    [varint(no << 3), varint(v)].concat()
}

/// An ONNX model (ir_version 8) whose graph holds the given initializers.
fn onnx_model(initializers: &[Vec<u8>]) -> Vec<u8> {
    let mut graph = field(2, b"g");
    for t in initializers {
        graph.extend(field(5, t));
    }
    [varint_field(1, 8), field(7, &graph)].concat()
}

#[test]
fn onnx_unpacked_int32_data_and_empty_string_data_stay_within_256_mib() {
    let dir = tempdir();
    let n: u64 = 2 << 20;
    // 2M int32_data fields of two bytes each (tag, value): int16 elements.
    let mut ints = [varint_field(1, n), varint_field(2, 5), field(8, b"ints")].concat();
    for i in 0..n {
        ints.extend(varint_field(5, i % 100));
    }
    // 2M empty string_data fields.
    let mut strs = [varint_field(1, n), varint_field(2, 8), field(8, b"strs")].concat();
    for _ in 0..n {
        strs.extend(field(6, b""));
    }
    let model = dir.path().join("m.onnx");
    fs::write(&model, onnx_model(&[ints, strs])).unwrap();
    assert!(fs::metadata(&model).unwrap().len() < 9 << 20);
    let out = dir.path().join("m.npz");
    let o = within_256_mib(&[
        OsStr::new("convert"),
        model.as_os_str(),
        OsStr::new("-o"),
        out.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = read_npz(&out);
    let ints = &got["ints"];
    assert_eq!((ints.descr.as_str(), ints.shape.clone()), ("<i2", vec![n]));
    for (i, c) in ints.data.chunks_exact(2).enumerate() {
        assert_eq!(i16::from_le_bytes([c[0], c[1]]), (i % 100) as i16);
    }
    // onnx.numpy_helper.to_array gives an object array of b"": NumPy's |S1 of empty strings.
    let strs = &got["strs"];
    assert_eq!((strs.descr.as_str(), strs.shape.clone()), ("|S1", vec![n]));
    assert!(strs.data.iter().all(|&b| b == 0));
    let o = within_256_mib(&[OsStr::new("list"), model.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn onnx_sparse_linear_indices_unravel_within_256_mib() {
    use std::io::Read;
    let dir = tempdir();
    // 384K linear indices (packed int64_data, about 1.2 MB) into a rank-48 shape of 2s: 18M
    // coordinates (151 MiB as int64), which used to be unravelled in memory, twice.
    let (nnz, rank) = (384u64 << 10, 48usize);
    let mut packed = Vec::new();
    for i in 0..nnz {
        packed.extend(varint(i * 3));
    }
    let indices = [varint_field(1, nnz), varint_field(2, 7), field(7, &packed)].concat();
    let values = [
        varint_field(1, nnz),
        varint_field(2, 1),
        field(8, b"sp"),
        field(9, &vec![0u8; nnz as usize * 4]),
    ]
    .concat();
    let mut sparse = [field(1, &values), field(2, &indices)].concat();
    for _ in 0..rank {
        sparse.extend(varint_field(3, 2));
    }
    let graph = [field(2, b"g"), field(15, &sparse)].concat();
    let model = dir.path().join("sp.onnx");
    fs::write(&model, [varint_field(1, 8), field(7, &graph)].concat()).unwrap();
    let o = within_256_mib(&[OsStr::new("list"), model.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.path().join("sp");
    let o = within_256_mib(&[
        OsStr::new("convert"),
        model.as_os_str(),
        OsStr::new("-o"),
        out.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // np.unravel_index(i * 3, (2,) * 48) for each position: the bits of i * 3, high first.
    let mut f = std::io::BufReader::new(fs::File::open(out.join("sp/indices.npy")).unwrap());
    let mut head = [0u8; 10];
    f.read_exact(&mut head).unwrap();
    let mut header = vec![0u8; u16::from_le_bytes([head[8], head[9]]) as usize];
    f.read_exact(&mut header).unwrap();
    let header = String::from_utf8(header).unwrap();
    assert!(
        header.contains("'<i8'") && header.contains(&format!("({nnz}, {rank})")),
        "{header}"
    );
    let mut row = vec![0u8; 8 * rank];
    for i in 0..nnz {
        f.read_exact(&mut row).unwrap();
        let p = i * 3;
        for (k, c) in row.chunks_exact(8).enumerate() {
            let got = u64::from_le_bytes(c.try_into().unwrap());
            assert_eq!(got, (p >> (rank - 1 - k)) & 1, "row {i} dim {k}");
        }
    }
    assert_eq!(f.read(&mut row).unwrap(), 0, "trailing bytes");
    // A position outside the shape is refused before anything is written.
    let mut sparse = [field(1, &values), field(2, &indices)].concat();
    for _ in 0..rank - 30 {
        sparse.extend(varint_field(3, 2));
    }
    let graph = [field(2, b"g"), field(15, &sparse)].concat();
    fs::write(&model, [varint_field(1, 8), field(7, &graph)].concat()).unwrap();
    let out = dir.path().join("bad.npz");
    let o = within_256_mib(&[
        OsStr::new("convert"),
        model.as_os_str(),
        OsStr::new("-o"),
        out.as_os_str(),
    ]);
    assert_refused(&o, &["sp.onnx", "linear index", "outside the shape"]);
    assert!(!out.exists());
}

#[test]
fn an_hdf5_gzip_chunk_bomb_is_refused_within_256_mib() {
    let input = root().join("fixtures/hdf5/bad_chunk_bomb.h5");
    assert!(fs::metadata(&input).unwrap().len() < 300 << 10);
    let dir = tempdir();
    let out = dir.path().join("b.npz");
    let o = within_256_mib(&[
        OsStr::new("convert"),
        input.as_os_str(),
        OsStr::new("-o"),
        out.as_os_str(),
    ]);
    assert_refused(&o, &["bad_chunk_bomb.h5", "'bomb'", "chunk"]);
    assert!(files_in(dir.path()).is_empty());
}

#[test]
fn gguf_list_metadata_of_long_arrays_streams_within_256_mib() {
    let dir = tempdir();
    // A GGUF v3 file with no tensors and two arrays: 4M uint8 and 1M empty strings (12 MB).
    let mut f = b"GGUF".to_vec();
    f.extend(3u32.to_le_bytes());
    f.extend(0u64.to_le_bytes());
    f.extend(2u64.to_le_bytes());
    let key = |f: &mut Vec<u8>, k: &str| {
        f.extend((k.len() as u64).to_le_bytes());
        f.extend(k.as_bytes());
    };
    let n: u64 = 4 << 20;
    key(&mut f, "bytes");
    f.extend(9u32.to_le_bytes()); // array
    f.extend(0u32.to_le_bytes()); // of uint8
    f.extend(n.to_le_bytes());
    f.extend((0..n).map(|i| (i % 251) as u8));
    key(&mut f, "strings");
    f.extend(9u32.to_le_bytes());
    f.extend(8u32.to_le_bytes()); // of string
    f.extend((n / 4).to_le_bytes());
    for _ in 0..n / 4 {
        f.extend(0u64.to_le_bytes());
    }
    let input = dir.path().join("meta.gguf");
    fs::write(&input, &f).unwrap();
    let o = within_256_mib(&[
        OsStr::new("list"),
        OsStr::new("--json"),
        OsStr::new("--metadata"),
        input.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let m = &doc["metadata"][input.to_str().unwrap()]["metadata"];
    let bytes = m["bytes"].as_array().unwrap();
    assert_eq!(bytes.len() as u64, n);
    assert!(bytes
        .iter()
        .enumerate()
        .all(|(i, v)| v.as_u64() == Some(i as u64 % 251)));
    let strings = m["strings"].as_array().unwrap();
    assert_eq!(strings.len() as u64, n / 4);
    assert!(strings.iter().all(|v| v.as_str() == Some("")));
}

#[test]
fn a_flax_file_of_a_million_scalar_leaves_opens_within_256_mib() {
    let dir = tempdir();
    // {"0": 0, "1": 1, ..., "mkpr": ...}: 2^20 keys (base 36) of positive fixints, 6 MB.
    let input = flax_million_leaves(dir.path());
    let out = dir.path().join("one.npy");
    // The leaf "zz" is number 36 * 35 + 35 = 1295: msgpack_restore gives np.asarray(1295 % 128).
    let o = within_256_mib(&[
        OsStr::new("convert"),
        input.as_os_str(),
        OsStr::new("--select"),
        OsStr::new("zz"),
        OsStr::new("-o"),
        out.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let a = read_npy(&out);
    assert_eq!((a.descr.as_str(), a.shape.clone()), ("<i8", vec![]));
    assert_eq!(
        i64::from_le_bytes(a.data[..8].try_into().unwrap()),
        1295 % 128
    );
}

// ---------------------------------------------------------------------------------------------
// The crafted inputs above, small, through a corruption sweep: every damaged copy converts or
// fails with a message and leaves nothing, within the deadline and the 256 MiB limit.

fn crafted_onnx_typed(n: u64) -> Vec<u8> {
    let mut ints = [varint_field(1, n), varint_field(2, 5), field(8, b"ints")].concat();
    let mut strs = [varint_field(1, n), varint_field(2, 8), field(8, b"strs")].concat();
    for i in 0..n {
        ints.extend(varint_field(5, i % 100));
        strs.extend(field(6, if i % 3 == 0 { b"" } else { b"ab" }));
    }
    onnx_model(&[ints, strs])
}

fn crafted_onnx_sparse(nnz: u64, rank: usize) -> Vec<u8> {
    let mut packed = Vec::new();
    for i in 0..nnz {
        packed.extend(varint(i * 3));
    }
    let indices = [varint_field(1, nnz), varint_field(2, 7), field(7, &packed)].concat();
    let values = [
        varint_field(1, nnz),
        varint_field(2, 1),
        field(8, b"sp"),
        field(9, &vec![0x3fu8; nnz as usize * 4]),
    ]
    .concat();
    let mut sparse = [field(1, &values), field(2, &indices)].concat();
    for _ in 0..rank {
        sparse.extend(varint_field(3, 2));
    }
    let graph = [field(2, b"g"), field(15, &sparse)].concat();
    [varint_field(1, 8), field(7, &graph)].concat()
}

fn crafted_gguf_arrays(n: u64) -> Vec<u8> {
    let mut f = b"GGUF".to_vec();
    f.extend(3u32.to_le_bytes());
    f.extend(0u64.to_le_bytes());
    f.extend(2u64.to_le_bytes());
    for (k, item) in [("bytes", 0u32), ("strings", 8)] {
        f.extend((k.len() as u64).to_le_bytes());
        f.extend(k.as_bytes());
        f.extend(9u32.to_le_bytes());
        f.extend(item.to_le_bytes());
        f.extend(n.to_le_bytes());
        for i in 0..n {
            match item {
                0 => f.push(i as u8),
                _ => {
                    f.extend(1u64.to_le_bytes());
                    f.push(b'a' + (i % 26) as u8);
                }
            }
        }
    }
    f
}

fn crafted_flax_leaves(n: u16) -> Vec<u8> {
    let mut f = vec![0xde];
    f.extend(n.to_be_bytes());
    for i in 0..n {
        let k = format!("k{i}");
        f.push(0xa0 | k.len() as u8);
        f.extend(k.as_bytes());
        f.push((i % 128) as u8);
    }
    f
}

#[test]
fn the_crafted_inputs_survive_a_corruption_sweep() {
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("typed.onnx", crafted_onnx_typed(300), &[]),
        ("sparse.onnx", crafted_onnx_sparse(200, 12), &[]),
        (
            "consts.pb",
            fill_graphdef(4, 1000),
            &["--max-output", "10K"],
        ),
        ("arrays.gguf", crafted_gguf_arrays(300), &[]),
        ("leaves.msgpack", crafted_flax_leaves(300), &[]),
    ];
    let dir = tempdir();
    for (name, clean, extra) in cases {
        let n = clean.len();
        let input = dir.path().join(name);
        let out = dir.path().join("o.npz");
        let mut damaged = Vec::new();
        for k in 0..12 {
            let at = k * n / 12 + 1;
            let mut b = clean.clone();
            b[at.min(n - 1)] ^= 0x5a;
            damaged.push(b);
            damaged.push(clean[..at.min(n)].to_vec());
        }
        damaged.push(clean.clone());
        for bytes in damaged {
            let undamaged = bytes == clean;
            fs::write(&input, &bytes).unwrap();
            for cmd in [&["list", "--json", "--metadata"][..], &["convert"][..]] {
                let mut args: Vec<&OsStr> = cmd.iter().map(OsStr::new).collect();
                args.push(input.as_os_str());
                if cmd[0] == "convert" {
                    args.extend([OsStr::new("-o"), out.as_os_str()]);
                    args.extend(extra.iter().map(OsStr::new));
                }
                let o = within_256_mib(&args);
                let err = stderr(&o);
                // The undamaged input converts (the GraphDef only within --max-output).
                let refused = name == "consts.pb" && cmd[0] == "convert";
                if undamaged {
                    assert_eq!(o.status.code(), Some(refused as i32), "{name}: {err}");
                }
                match o.status.code() {
                    Some(0) => {}
                    Some(1) => {
                        assert!(err.starts_with("tensor2npy: error: "), "{name}: {err}");
                        assert!(err.contains(name), "{name}: {err}");
                        assert!(!out.exists(), "{name}: output left behind");
                    }
                    other => panic!("{name}: exit {other:?}: {err}"),
                }
                let _ = fs::remove_file(&out);
            }
        }
    }
}

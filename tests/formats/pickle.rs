//! Pickles read as data (records, TorchScript, .pt2, NumPy and Paddle pickles) beyond the
//! fixture manifest: a hostile pickle's payload never runs (the file it would create never
//! appears, though Python's own pickle.load does create it), `--weights-only` refuses classes
//! that are otherwise read as records and named in a note, and every bomb (shared subtrees,
//! copies, stack growth, a deflated data.pkl) ends with exit 1 and a clear message within
//! 256 MiB of resident memory.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn fixture(name: &str) -> PathBuf {
    root().join("fixtures/pickle").join(name)
}

#[test]
fn a_hostile_payload_never_runs_here_though_pickle_load_runs_it() {
    for (name, global) in [
        ("evil_system.pkl", "posix.system"),
        ("evil_eval.pkl", "builtins.eval"),
        ("evil_system.pt", "posix.system"),
    ] {
        let dir = tempdir();
        let o = Command::new(bin())
            .current_dir(dir.path())
            .args(["convert"])
            .arg(fixture(name))
            .args(["-o", "out.npz"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains(global) && err.contains("nothing was executed"),
            "{name}: {err}"
        );
        assert!(
            !dir.path().join("t2n_pwned").exists(),
            "{name}: the payload ran"
        );
        assert!(
            files_in(dir.path()).is_empty(),
            "{name}: left {:?}",
            files_in(dir.path())
        );
    }
    // The payload is real: Python's pickle.load runs it (skipped without NumPy).
    if std::env::var_os("T2N_SKIP_NUMPY").is_none() {
        let dir = tempdir();
        let st = Command::new(python())
            .current_dir(dir.path())
            .args([
                "-c",
                "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))",
            ])
            .arg(fixture("evil_system.pkl"))
            .status()
            .unwrap();
        assert!(st.success());
        assert!(
            dir.path().join("t2n_pwned").exists(),
            "the fixture's payload is not live"
        );
    }
}

#[test]
fn classes_are_named_in_a_note_and_refused_with_weights_only() {
    let o = Command::new(bin())
        .arg("list")
        .arg(fixture("lightning.ckpt.pt"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("read as data, never imported or called")
            && err.contains("torch.nn.modules.container.Sequential")
            && err.contains("other classes __main__.HParams"),
        "{err}"
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("hyper_parameters/cfg/class_weights"), "{out}");
    for name in ["lightning.ckpt.pt", "scripted.pt", "whole_custom_legacy.pt"] {
        let o = Command::new(bin())
            .arg("list")
            .arg(fixture(name))
            .arg("--weights-only")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains("weights_only=True) does not allow"),
            "{name}: {err}"
        );
    }
}

/// Converts `input` with one job, returning (exit code, stderr, peak resident KiB).
fn measured(input: &Path, extra: &[&str]) -> (Option<i32>, String, u64) {
    let dir = tempdir();
    let o = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(bin())
        .arg("convert")
        .arg(input)
        .arg("-o")
        .arg(dir.path().join("out.npz"))
        .args(["--jobs", "1"])
        .args(extra)
        .output()
        .expect("/usr/bin/time (.ci/run installs it)");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let kib = err
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(u64::MAX);
    assert!(
        files_in(dir.path()).is_empty(),
        "{}: left output",
        input.display()
    );
    (o.status.code(), err, kib)
}

/// A torch zip holding `pkl` as data.pkl and a 4-byte storage `data/0`.
fn torch_zip(path: &Path, pkl: &[u8]) {
    let mut z = zip::ZipWriter::new(fs::File::create(path).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let root = path.file_stem().unwrap().to_string_lossy().into_owned();
    z.start_file(format!("{root}/data.pkl"), opts).unwrap();
    std::io::Write::write_all(&mut z, pkl).unwrap();
    z.start_file(format!("{root}/data/0"), opts).unwrap();
    std::io::Write::write_all(&mut z, &[0; 4]).unwrap();
    z.finish().unwrap();
}

/// `_rebuild_tensor_v2(('storage', FloatStorage, '0', 'cpu', 1), 0, (1,), (1,), False,
/// OrderedDict())`, memoized as 1 and popped.
const TENSOR: &[u8] = b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQK\x00K\x01\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRq\x010";

#[test]
fn every_bomb_ends_with_a_clear_error_within_256_mib() {
    let dir = tempdir();
    let mut cases: Vec<(PathBuf, &str, Vec<&str>)> = vec![
        // 2**40 tensor names through the memo, 1.4 KB
        (fixture("bomb_shared.pt"), "exponentially", vec![]),
        // a deflated data.pkl of 2 MiB, over the limit asked for
        (
            fixture("bomb_deflated.pt"),
            "--max-decompressed",
            vec!["--max-decompressed", "1M"],
        ),
    ];
    // set(L) of a 4000-item list, 20,000 times: 1.9 GB of copies from 140 KB
    let mut p = b"\x80\x02]q\x00(".to_vec();
    p.extend(std::iter::repeat_n(&b"K\x01"[..], 4000).flatten());
    p.extend(b"ec__builtin__\nset\nq\x010");
    for _ in 0..20_000 {
        p.extend(b"h\x01h\x00\x85R0");
    }
    p.extend(b"N.");
    let copies = dir.path().join("copies.pt");
    torch_zip(&copies, &p);
    cases.push((copies, "memory bomb", vec![]));
    // 10 million DUPs: the stack grows by one value a byte
    let mut p = b"\x80\x02N".to_vec();
    p.extend(std::iter::repeat_n(b'2', 10_000_000));
    p.push(b'.');
    let dups = dir.path().join("dups.pkl");
    fs::write(&dups, &p).unwrap();
    cases.push((dups, "memory bomb", vec![]));
    // two million keys naming one memoized tensor
    let mut p = b"\x80\x02".to_vec();
    p.extend(TENSOR);
    p.extend(b"}(");
    for i in 0..2_000_000i32 {
        p.push(b'J');
        p.extend(i.to_le_bytes());
        p.extend(b"h\x01");
    }
    p.extend(b"u.");
    let keys = dir.path().join("keys.pt");
    torch_zip(&keys, &p);
    cases.push((keys, "memory bomb", vec![]));
    for (input, want, extra) in &cases {
        let (code, err, kib) = measured(input, extra);
        eprintln!("{}: exit {code:?}, {kib} KiB peak", input.display());
        assert_eq!(code, Some(1), "{}: {err}", input.display());
        assert!(err.contains(want), "{}: {err}", input.display());
        assert!(kib < 256 << 10, "{}: peaked at {kib} KiB", input.display());
    }
}

/// Opens a file and reads every tensor to the end.
fn read_all(path: &Path) -> anyhow::Result<usize> {
    use tensor2npy::source::{open, OpenOptions};
    let mut src = open(path, &OpenOptions::default())?;
    let mut bytes = 0;
    for i in 0..src.len() {
        src.read_dense(i, 64, &mut |c: &[u8]| {
            bytes += c.len();
            Ok(())
        })?;
    }
    Ok(bytes)
}

#[test]
fn flipped_bytes_of_torchscript_and_pt2_members_are_caught() {
    for name in ["scripted.pt", "exported.pt2"] {
        let path = fixture(name);
        let original = fs::read(&path).unwrap();
        assert!(read_all(&path).unwrap() > 0);
        let mut zip = zip::ZipArchive::new(fs::File::open(&path).unwrap()).or_else(|_| {
            let known = zip::read::Config {
                archive_offset: zip::read::ArchiveOffset::Known(0),
            };
            zip::ZipArchive::with_config(known, fs::File::open(&path).unwrap())
        });
        let zip = zip.as_mut().unwrap();
        let dir = tempdir();
        let bad = dir.path().join(name);
        let mut flips = 0;
        for i in 0..zip.len() {
            let m = zip.by_index_raw(i).unwrap();
            // Stored members only: a flip in the tail of a deflated stream (after its last
            // output byte) may leave the inflated bytes, and so their CRC-32, unchanged.
            if m.compression() != zip::CompressionMethod::Stored {
                continue;
            }
            let start = m.data_start().unwrap() as usize;
            // every 5th byte of every member (the whole sweep is slow in a debug build)
            for pos in (start..start + m.compressed_size() as usize).step_by(5) {
                let mut data = original.clone();
                data[pos] ^= 0x04;
                fs::write(&bad, &data).unwrap();
                assert!(
                    read_all(&bad).is_err(),
                    "{name}: a flipped byte at {pos} in {} went unnoticed",
                    m.name().unwrap()
                );
                flips += 1;
            }
        }
        assert!(flips > 100, "{name}");
    }
}

/// A legacy torch.save of one FloatStorage of `n` elements, as torch pickles a tensor's storage
/// by value (`TypedStorage.__reduce__`): magic number, protocol version, sys_info, the storage's
/// persistent id, the key list, the element count and the bytes.
fn nested_storage(n: u32, bytes: &[u8]) -> Vec<u8> {
    let mut b = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec();
    b.extend(b"\x80\x02M\xe9\x03.");
    b.extend(b"\x80\x02}(X\x0d\x00\x00\x00little_endian\x88u.");
    b.extend(b"\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ");
    b.extend(n.to_le_bytes());
    b.extend(b"NtQ.");
    b.extend(b"\x80\x02]X\x01\x00\x00\x000a.");
    b.extend(u64::from(n).to_le_bytes());
    b.extend(bytes);
    b
}

/// `pickle.dump({'w': tensor}, f)` of a float32 tensor of `n` elements whose storage is built by
/// the opcodes `storage` (as torch writes it: `_rebuild_tensor_v2(storage, 0, (n,), (1,), False,
/// OrderedDict())`).
fn pickled_tensor(n: u32, storage: &[u8]) -> Vec<u8> {
    let mut p = b"\x80\x04}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(".to_vec();
    p.extend(storage);
    p.extend(b"K\x00J");
    p.extend(n.to_le_bytes());
    p.extend(b"\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRs.");
    p
}

/// `torch.storage._load_from_bytes(nested)`, the bytes as protocols 3 to 5 write them.
fn by_value(nested: &[u8]) -> Vec<u8> {
    let mut p = b"ctorch.storage\n_load_from_bytes\n\x8e".to_vec();
    p.extend((nested.len() as u64).to_le_bytes());
    p.extend(nested);
    p.extend(b"\x85R");
    p
}

/// The same as protocol 2 writes it: `_codecs.encode(s, 'latin1')`, `s` one character per byte
/// (UTF-8 in the stream).
fn by_value_latin1(nested: &[u8]) -> Vec<u8> {
    let mut utf8 = Vec::with_capacity(nested.len() * 2);
    for &b in nested {
        if b < 0x80 {
            utf8.push(b);
        } else {
            utf8.extend([0xc0 | (b >> 6), 0x80 | (b & 0x3f)]);
        }
    }
    let mut p = b"ctorch.storage\n_load_from_bytes\nc_codecs\nencode\nX".to_vec();
    p.extend((utf8.len() as u32).to_le_bytes());
    p.extend(utf8);
    p.extend(b"X\x06\x00\x00\x00latin1\x86R\x85R");
    p
}

#[test]
fn a_large_tensor_pickled_by_value_is_copied_from_the_file_not_held() {
    // 64 MiB of float32: held in memory it would take the run past 96 MiB.
    let n: u32 = 16 << 20;
    let data: Vec<u8> = (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let dir = tempdir();
    let input = dir.path().join("big.pkl");
    fs::write(
        &input,
        pickled_tensor(n, &by_value(&nested_storage(n, &data))),
    )
    .unwrap();
    converts_within(&input, n, &data, 80 << 10);
}

#[test]
fn a_large_protocol_2_tensor_is_decoded_to_a_temporary_file_not_held() {
    // 32 MiB of float32 as a latin1 string of about 48 MiB: held, the run would pass 100 MiB.
    let n: u32 = 8 << 20;
    let data: Vec<u8> = (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let dir = tempdir();
    let input = dir.path().join("big_p2.pkl");
    let storage = by_value_latin1(&nested_storage(n, &data));
    fs::write(&input, pickled_tensor(n, &storage)).unwrap();
    converts_within(&input, n, &data, 64 << 10);
}

/// Converts `input` (one float32 tensor 'w' of `n` elements) and checks its bytes and that the
/// run's peak resident memory stayed under `max_kib`.
fn converts_within(input: &Path, n: u32, data: &[u8], max_kib: u64) {
    let dir = tempdir();
    let out = dir.path().join("out.npz");
    let o = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(bin())
        .arg("convert")
        .arg(input)
        .arg("-o")
        .arg(&out)
        .args(["--jobs", "1"])
        .output()
        .expect("/usr/bin/time (.ci/run installs it)");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let kib: u64 = err.lines().last().unwrap().trim().parse().unwrap();
    eprintln!("{}: {kib} KiB peak", input.display());
    assert!(kib < max_kib, "peaked at {kib} KiB: the storage was held");
    let got = read_npz(&out);
    assert_eq!(got.len(), 1);
    let w = &got["w"];
    assert_eq!(
        (w.descr.as_str(), &w.shape[..]),
        ("<f4", &[u64::from(n)][..])
    );
    assert!(w.data == data, "the values differ");
}

#[test]
fn a_nested_storage_that_declares_more_than_it_holds_is_refused_naming_the_tensor() {
    let data: Vec<u8> = (0..8u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let good = nested_storage(8, &data);
    let dir = tempdir();
    for (what, nested) in [
        ("truncated", good[..good.len() - 3].to_vec()),
        // past the unpickler's 64 KiB, so read from the file: its count says 2**40 elements
        ("oversized", {
            let big: Vec<u8> = vec![0; 70_000];
            let mut b = nested_storage(17_500, &big);
            let at = b.len() - big.len() - 8;
            b[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
            b
        }),
    ] {
        let n = if what == "truncated" { 8 } else { 17_500 };
        let input = dir.path().join(format!("{what}.pkl"));
        fs::write(&input, pickled_tensor(n, &by_value(&nested))).unwrap();
        let out = dir.path().join("out");
        fs::create_dir_all(&out).unwrap();
        let o = Command::new(bin())
            .arg("convert")
            .arg(&input)
            .arg("-o")
            .arg(out.join("x.npz"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.contains(&format!("{what}.pkl"))
                && err.contains("tensor 'w'")
                && err.contains("declares a storage of"),
            "{what}: {err}"
        );
        assert!(files_in(&out).is_empty(), "{what}: left output");
    }
}

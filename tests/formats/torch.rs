//! PyTorch checkpoints beyond the fixture manifest: every flipped byte of a zip member is
//! caught by its CRC-32, every truncation is an error and never a panic, contiguous tensors in
//! stored members are offered for a straight copy and strided ones are not.

use crate::common;

use std::fs;
use std::path::Path;

use tensor2npy::source::{open, OpenOptions};

/// Opens a file and reads every tensor to the end.
fn read_all(path: &Path) -> anyhow::Result<usize> {
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

fn fixture(name: &str) -> std::path::PathBuf {
    common::root().join("fixtures/torch").join(name)
}

#[test]
fn every_flipped_byte_of_every_zip_member_is_caught() {
    let path = fixture("state_dict.pt");
    let original = fs::read(&path).unwrap();
    assert!(read_all(&path).unwrap() > 0);
    let mut zip = zip::ZipArchive::new(fs::File::open(&path).unwrap()).unwrap();
    let dir = common::tempdir();
    let bad = dir.path().join("state_dict.pt");
    let mut flips = 0;
    for i in 0..zip.len() {
        let m = zip.by_index_raw(i).unwrap();
        let start = m.data_start().unwrap() as usize;
        for pos in start..start + m.compressed_size() as usize {
            let mut data = original.clone();
            data[pos] ^= 0x04;
            fs::write(&bad, &data).unwrap();
            let r = read_all(&bad);
            assert!(
                r.is_err(),
                "a flipped byte at {pos} in {} went unnoticed",
                m.name().unwrap()
            );
            flips += 1;
        }
    }
    assert!(flips > 100);
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    for name in ["state_dict.pt", "legacy.pth", "views_legacy.pt"] {
        let original = fs::read(fixture(name)).unwrap();
        let dir = common::tempdir();
        let cut = dir.path().join(name);
        for len in 0..original.len() {
            fs::write(&cut, &original[..len]).unwrap();
            assert!(
                read_all(&cut).is_err(),
                "{name} cut to {len} bytes was accepted"
            );
        }
    }
}

#[test]
fn contiguous_stored_tensors_are_copied_straight_and_views_are_gathered() {
    let src = open(&fixture("views.pt"), &OpenOptions::default()).unwrap();
    let mut straight = Vec::new();
    for i in 0..src.len() {
        let meta = src.meta(i).unwrap();
        if src.raw_range(i).is_some() {
            straight.push(meta.name);
        }
    }
    straight.sort();
    // Contiguous views (a row, a flat slice at an offset) are ranges of their storage; the
    // transposed, strided and expanded ones are not.
    assert_eq!(
        straight,
        [
            "base",
            "empty",
            "lm_head.weight",
            "offset_flat",
            "row",
            "scalar",
            "wte.weight"
        ]
    );
}

#[test]
fn a_pickle_calling_a_forbidden_global_is_refused_before_anything_runs() {
    // builtins.exec, in a protocol 4 stream (STACK_GLOBAL), inside a data.pkl
    let dir = common::tempdir();
    let path = dir.path().join("exec.pt");
    let mut z = zip::ZipWriter::new(fs::File::create(&path).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("exec/data.pkl", opts).unwrap();
    let pkl = b"\x80\x04\x8c\x08builtins\x94\x8c\x04exec\x94\x93\x8c\x06print()\x85R.";
    std::io::Write::write_all(&mut z, pkl).unwrap();
    z.finish().unwrap();
    let e = format!("{:#}", open(&path, &OpenOptions::default()).err().unwrap());
    assert!(e.contains("builtins.exec"), "{e}");
}

/// A small deterministic generator for the mutation sweep.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn mutated_pickles_and_files_are_errors_or_values_never_panics() {
    use tensor2npy::input::FileRange;
    use tensor2npy::source::pickle;
    use tensor2npy::source::torch::TorchSource;
    use tensor2npy::tensor::Source;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for name in ["checkpoint.pt", "views.pt", "dtypes.pt", "views_legacy.pt"] {
        let original = fs::read(fixture(name)).unwrap();
        let pkl = zip::ZipArchive::new(std::io::Cursor::new(&original))
            .ok()
            .and_then(|mut z| {
                let n = (0..z.len())
                    .find(|&i| z.by_index(i).unwrap().name().unwrap().ends_with("data.pkl"))?;
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut z.by_index(n).unwrap(), &mut v).unwrap();
                Some(v)
            })
            .unwrap_or_else(|| original.clone());
        for _ in 0..400 {
            let mut m = pkl.clone();
            for _ in 0..1 + xorshift(&mut seed) % 4 {
                let at = (xorshift(&mut seed) % m.len() as u64) as usize;
                m[at] = xorshift(&mut seed) as u8;
            }
            let _ = pickle::load_slice(&m);
            let mut f = original.clone();
            let at = (xorshift(&mut seed) % f.len() as u64) as usize;
            f[at] = xorshift(&mut seed) as u8;
            if let Ok(mut src) = TorchSource::open("m", vec![], FileRange::from_vec(f), "m") {
                for i in 0..src.len() {
                    let _ = src.read_dense(i, 64, &mut |_: &[u8]| Ok(()));
                }
            }
        }
    }
}

/// `bytes` with every occurrence of `from` replaced by `to` (same length) from the `skip`th on.
fn patched(bytes: &[u8], from: &[u8], to: &[u8], skip: usize) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = bytes.to_vec();
    let hits: Vec<usize> = bytes
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from)
        .map(|(i, _)| i)
        .collect();
    assert!(hits.len() > skip, "{:?} occurs {} times", from, hits.len());
    for &at in &hits[skip..] {
        out[at..at + to.len()].copy_from_slice(to);
    }
    out
}

/// Runs the binary with `args` and the input; returns (exit code, stderr).
fn t2n(args: &[&str], input: &Path) -> (Option<i32>, String) {
    let o = std::process::Command::new(common::bin())
        .args(args)
        .arg(input)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn damaged_member_names_are_refused_not_read_with_the_wrong_byte_order() {
    let original = fs::read(fixture("bigendian.pt")).unwrap();
    let dir = common::tempdir();
    let cases: [(&str, Vec<u8>, &str); 3] = [
        // the central directory's copy of the name only (the second occurrence): without it
        // the archive has no byteorder record, and its big-endian values would read as little
        (
            "renamed.pt",
            patched(&original, b"bigendian/byteorder", b"bigendian/byteordeX", 1),
            "does not match the central directory",
        ),
        // both copies: a member outside the root folder
        (
            "outside.pt",
            patched(&original, b"bigendian/byteorder", b"bigendianXbyteorder", 0),
            "outside its root folder",
        ),
        // two members named alike (the last would silently win)
        (
            "twice.pt",
            patched(&original, b"bigendian/data/13", b"bigendian/data/12", 0),
            "twice",
        ),
    ];
    for (name, bytes, want) in cases {
        let path = dir.path().join(name);
        fs::write(&path, bytes).unwrap();
        let out = dir.path().join("out.npz");
        let o = common::convert(&path, &out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(want) && err.contains(name), "{name}: {err}");
        assert!(!out.exists(), "{name}");
        let (code, err) = t2n(&["list"], &path);
        assert_eq!(code, Some(1), "{name}: list: {err}");
    }
}

#[test]
fn a_deflated_storage_past_max_decompressed_is_refused_and_list_inflates_nothing() {
    let path = fixture("deflated.pt");
    let dir = common::tempdir();
    // A storage of 64 MiB of zeros in a 70 KB file: refused below its size, converted at it.
    let bomb = dir.path().join("bomb.pt");
    {
        let mut src = zip::ZipArchive::new(fs::File::open(&path).unwrap()).unwrap();
        let mut z = zip::ZipWriter::new(fs::File::create(&bomb).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true);
        for i in 0..src.len() {
            let mut m = src.by_index(i).unwrap();
            let name = m.name().unwrap().to_string();
            z.start_file(name.as_str(), opts).unwrap();
            if name == "deflated/data/0" {
                let zeros = vec![0u8; 1 << 20];
                for _ in 0..64 {
                    std::io::Write::write_all(&mut z, &zeros).unwrap();
                }
            } else {
                std::io::copy(&mut m, &mut z).unwrap();
            }
        }
        z.finish().unwrap();
    }
    assert!(fs::metadata(&bomb).unwrap().len() < 200_000);
    let out = dir.path().join("out.npz");
    let o = std::process::Command::new(common::bin())
        .args(["convert", "--max-decompressed", "1M"])
        .arg(&bomb)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("deflated/data/0") && err.contains("--max-decompressed"),
        "{err}"
    );
    assert!(!out.exists());
    let (code, err) = t2n(&["list", "--max-decompressed", "1M"], &bomb);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--max-decompressed"), "{err}");
    let (code, err) = t2n(&["verify", "--max-decompressed", "64M"], &bomb);
    assert_eq!(code, Some(0), "{err}");

    // `list` reads the pickle, not the storages: a storage whose deflate stream is damaged
    // (sizes intact) lists, and fails only when it is read.
    let damaged = fixture("flipped_deflated.pt");
    let (code, err) = t2n(&["list"], &damaged);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = t2n(&["verify"], &damaged);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("deflated/data/0"), "{err}");
}

/// `_rebuild_tensor_v2(('storage', <class>, '<key>', 'cpu', n), 0, (n,), (1,), False,
/// OrderedDict())`, as torch pickles a one-dimensional tensor that is its whole storage.
fn whole_storage_tensor(class: &str, key: &str, n: u32) -> Vec<u8> {
    let mut p = b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\n".to_vec();
    p.extend(class.as_bytes());
    p.extend(b"\nX");
    p.extend((key.len() as u32).to_le_bytes());
    p.extend(key.as_bytes());
    p.extend(b"X\x03\x00\x00\x00cpuJ");
    p.extend(n.to_le_bytes());
    p.extend(b"tQK\x00J");
    p.extend(n.to_le_bytes());
    p.extend(b"\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtR");
    p
}

/// A state dict of two large storages, as torch.save lays it out (stored members): `w`, 1 MiB of
/// float32, copied to the `.npz` inside the kernel with the CRC-32 its check computed, and `b`,
/// 512 KiB of bfloat16, widened to float32 with its CRC-32 checked as it streams. A flipped byte in either fails the
/// command naming the file and the member, and leaves nothing, with any number of workers.
#[test]
fn a_large_storage_is_checked_once_and_a_flipped_byte_still_fails_the_command() {
    let n: u32 = 1 << 18;
    let w: Vec<u8> = (0..n)
        .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
        .collect();
    let b: Vec<u8> = (0..n * 2).map(|i| (i % 251) as u8).collect();
    let mut pkl = b"\x80\x02}(X\x01\x00\x00\x00w".to_vec();
    pkl.extend(whole_storage_tensor("FloatStorage", "0", n));
    pkl.extend(b"X\x01\x00\x00\x00b");
    pkl.extend(whole_storage_tensor("BFloat16Storage", "1", n));
    pkl.extend(b"u.");
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in [
        ("big/data.pkl", &pkl[..]),
        ("big/byteorder", b"little"),
        ("big/data/0", &w),
        ("big/data/1", &b),
    ] {
        z.start_file(name, opts).unwrap();
        std::io::Write::write_all(&mut z, data).unwrap();
    }
    let clean = z.finish().unwrap().into_inner();
    let start = |name: &str| {
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(&clean)).unwrap();
        let m = z.by_name(name).unwrap();
        m.data_start().unwrap() as usize
    };
    let dir = common::tempdir();
    let input = dir.path().join("big.pt");
    let outdir = dir.path().join("out");
    fs::create_dir(&outdir).unwrap();
    let out = outdir.join("big.npz");
    let convert = |jobs: &str| {
        std::process::Command::new(common::bin())
            .args(["convert", "--jobs", jobs])
            .arg(&input)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap()
    };
    fs::write(&input, &clean).unwrap();
    for jobs in ["1", "2"] {
        let o = convert(jobs);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // read_npz checks every member's CRC-32 against its bytes
        let got = common::read_npz(&out);
        assert_eq!(got["w"].descr, "<f4");
        assert!(got["w"].data == w);
        let widened: Vec<u8> = b.chunks_exact(2).flat_map(|h| [0, 0, h[0], h[1]]).collect();
        assert_eq!(got["b"].descr, "<f4");
        assert!(got["b"].data == widened);
        fs::remove_file(&out).unwrap();
    }
    for (member, len) in [("big/data/0", w.len()), ("big/data/1", b.len())] {
        for at in [0, 12345, len - 1] {
            let mut bad = clean.clone();
            bad[start(member) + at] ^= 0x10;
            fs::write(&input, &bad).unwrap();
            for jobs in ["1", "2"] {
                let o = convert(jobs);
                let err = String::from_utf8_lossy(&o.stderr);
                assert_eq!(o.status.code(), Some(1), "{member} byte {at}: {err}");
                assert!(
                    err.contains("big.pt") && err.contains(member) && err.contains("Bad CRC-32"),
                    "{member} byte {at}, --jobs {jobs}: {err}"
                );
                assert!(
                    common::files_in(&outdir).is_empty(),
                    "left behind: {:?}",
                    common::files_in(&outdir)
                );
            }
        }
    }
    // To standard output (which no failure can take back) no byte of a tensor goes before its
    // storage's CRC-32 matched: at most the `.npy` header.
    for (member, name) in [("big/data/0", "w"), ("big/data/1", "b")] {
        let mut bad = clean.clone();
        bad[start(member) + 12345] ^= 0x10;
        fs::write(&input, &bad).unwrap();
        let o = std::process::Command::new(common::bin())
            .args(["convert", "--select", name, "-o", "-"])
            .arg(&input)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{member}: {err}");
        assert!(err.contains("Bad CRC-32"), "{member}: {err}");
        assert!(
            o.stdout.len() <= 128,
            "{member}: {} bytes went to standard output",
            o.stdout.len()
        );
    }
}

//! The wgpu device stage against the CPU path, byte for byte: every 16-bit pattern through the
//! half-float kernels, every byte through the float8 tables and sub-byte integers, random and
//! edge-case floats through the narrowing kernels, integer casts, byte-order swaps, odd sizes
//! and many small chunks; plus the no-adapter paths of the command line.
//!
//! Without an adapter these tests print "skipped" and pass, unless T2N_REQUIRE_GPU=1 (as CI
//! sets, with Mesa's lavapipe installed), which makes a missing adapter a failure.
#![cfg(feature = "gpu")]

use crate::common;

use std::process::Command;

use common::*;
use tensor2npy::device::{DeviceChoice, DeviceStage};
use tensor2npy::dtype::{DType, DtypePolicy, NarrowFloatPolicy, NpyType, Plan};
use tensor2npy::transform::Converter;

fn gpu_or_skip() -> Option<DeviceStage> {
    match DeviceStage::open(DeviceChoice::Gpu, None) {
        Ok(stage) => Some(stage),
        Err(e) if std::env::var_os("T2N_REQUIRE_GPU").is_some() => {
            panic!("T2N_REQUIRE_GPU is set but no GPU adapter opened: {e:#}")
        }
        Err(e) => {
            eprintln!("skipped: no GPU adapter ({e:#})");
            None
        }
    }
}

/// A deterministic stream of pseudo-random bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Converts `data` on the CPU and on the GPU (fed in `piece`-byte source chunks, converted in
/// `chunk`-byte device chunks) and asserts the results are identical.
fn same_on_both(
    stage: &mut DeviceStage,
    src: DType,
    plan: Plan,
    big_endian: bool,
    data: &[u8],
    piece: usize,
    chunk: usize,
) {
    let cpu = Converter::new(src, plan, big_endian).unwrap();
    let mut want = Vec::new();
    cpu.convert(data, &mut want).unwrap();
    let size = src.item_size().unwrap();
    let piece = (piece / size).max(1) * size;
    let mut got = Vec::new();
    let mut run = stage.start("t", &cpu, chunk).unwrap();
    for c in data.chunks(piece) {
        got.extend_from_slice(run.push(c).unwrap());
    }
    got.extend_from_slice(run.finish().unwrap());
    let path = &stage.stats.last().unwrap().path;
    assert_eq!(path, "gpu", "{src} -> {plan:?} did not run on the GPU");
    assert_eq!(got.len(), want.len(), "{src} -> {plan:?}: length");
    if let Some(i) = got.iter().zip(&want).position(|(a, b)| a != b) {
        panic!("{src} -> {plan:?} (big_endian {big_endian}): first difference at byte {i}: gpu {:02x?} cpu {:02x?}",
            &got[i..(i + 8).min(got.len())], &want[i..(i + 8).min(want.len())]);
    }
}

fn all_u16() -> Vec<u8> {
    (0..=u16::MAX).flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn every_16_bit_pattern_widens_and_narrows_exactly() {
    let Some(mut gpu) = gpu_or_skip() else { return };
    let data = all_u16();
    let policy = DtypePolicy::default();
    same_on_both(
        &mut gpu,
        DType::BF16,
        policy.plan(DType::BF16),
        false,
        &data,
        3000,
        8192,
    );
    let f16_to_f32 = Plan::Numeric(NpyType::F32);
    same_on_both(
        &mut gpu,
        DType::F16,
        f16_to_f32,
        false,
        &data,
        1 << 20,
        1 << 20,
    );
    same_on_both(
        &mut gpu,
        DType::BF16,
        Plan::Numeric(NpyType::F16),
        false,
        &data,
        4094,
        1000,
    );
    // an odd element count, so the last word is half empty
    same_on_both(
        &mut gpu,
        DType::BF16,
        Plan::Numeric(NpyType::F16),
        false,
        &data[..data.len() - 2],
        1 << 20,
        1 << 20,
    );
    same_on_both(
        &mut gpu,
        DType::F16,
        f16_to_f32,
        false,
        &data[..data.len() - 2],
        777,
        1 << 20,
    );
}

#[test]
fn float32_and_float64_narrowing_rounds_like_the_cpu() {
    let Some(mut gpu) = gpu_or_skip() else { return };
    let mut f32s = noise(4 * 100_003, 1);
    // every float16 value, its neighbours and the midpoints between them, as float32
    for h in 0..=u16::MAX {
        let f = half::f16::from_bits(h).to_f32().to_bits();
        for d in [0u32, 1, 0x1000, 0xfff, 0x1001, u32::MAX] {
            f32s.extend_from_slice(&f.wrapping_add(d).to_le_bytes());
        }
    }
    same_on_both(
        &mut gpu,
        DType::F32,
        Plan::Numeric(NpyType::F16),
        false,
        &f32s,
        1 << 18,
        1 << 16,
    );
    let mut f64s = noise(8 * 100_001, 2);
    for e in 880u64..=1151 {
        // around float32's subnormal and normal range, with tie and near-tie mantissas
        for m in [
            0u64,
            1,
            1 << 28,
            (1 << 28) + 1,
            (1 << 29) - 1,
            3 << 28,
            0xf_ffff_ffff_ffff,
        ] {
            for sign in [0u64, 1 << 63] {
                f64s.extend_from_slice(&(sign | e << 52 | m).to_le_bytes());
            }
        }
    }
    for special in [
        f64::NAN,
        -f64::NAN,
        f64::INFINITY,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        -0.0,
    ] {
        f64s.extend_from_slice(&special.to_le_bytes());
    }
    f64s.extend_from_slice(&0x7ff0_0000_0000_0001u64.to_le_bytes()); // a signalling NaN
    same_on_both(
        &mut gpu,
        DType::F64,
        Plan::Numeric(NpyType::F32),
        false,
        &f64s,
        100_000,
        1 << 16,
    );
}

#[test]
fn every_byte_through_the_float8_tables_and_sub_byte_integers() {
    let Some(mut gpu) = gpu_or_skip() else { return };
    let bytes: Vec<u8> = (0..=255u8).cycle().take(256 * 9 + 3).collect();
    let widen = DtypePolicy::default();
    for d in [
        DType::F8E4M3FN,
        DType::F8E5M2,
        DType::F8E4M3FNUZ,
        DType::F8E5M2FNUZ,
        DType::F8E4M3B11FNUZ,
        DType::F8E8M0FNU,
        DType::F4E2M1FN,
    ] {
        same_on_both(&mut gpu, d, widen.plan(d), false, &bytes, 100, 300);
    }
    for d in [DType::I4, DType::U4, DType::I2, DType::U2] {
        same_on_both(&mut gpu, d, widen.plan(d), false, &bytes, 1 << 20, 1 << 20);
    }
}

#[test]
fn integer_and_bool_casts_wrap_like_the_cpu() {
    let Some(mut gpu) = gpu_or_skip() else { return };
    let small = [
        DType::Bool,
        DType::I8,
        DType::U8,
        DType::I16,
        DType::U16,
        DType::I32,
        DType::U32,
    ];
    let targets = [
        NpyType::Bool,
        NpyType::I8,
        NpyType::U8,
        NpyType::I16,
        NpyType::U16,
        NpyType::I32,
        NpyType::U32,
    ];
    for (n, &src) in small.iter().enumerate() {
        let mut data = noise(src.item_size().unwrap() * 5001, n as u64 + 10);
        if src == DType::Bool {
            data.iter_mut().for_each(|b| *b &= 1);
        }
        for &t in &targets {
            if NpyType::natural(src) == Some(t) {
                continue; // a plain copy, no device work
            }
            same_on_both(&mut gpu, src, Plan::Numeric(t), false, &data, 1234, 4096);
        }
    }
}

#[test]
fn big_endian_elements_are_swapped_on_the_device() {
    let Some(mut gpu) = gpu_or_skip() else { return };
    let data = noise(16 * 3001, 7);
    for d in [
        DType::I16,
        DType::F16,
        DType::F32,
        DType::I64,
        DType::C64,
        DType::C128,
    ] {
        let plan = Plan::Numeric(NpyType::natural(d).unwrap());
        same_on_both(
            &mut gpu,
            d,
            plan,
            true,
            &data[..d.item_size().unwrap() * 3001],
            999,
            2048,
        );
    }
    same_on_both(
        &mut gpu,
        DType::BF16,
        DtypePolicy::default().plan(DType::BF16),
        true,
        &all_u16(),
        5000,
        4096,
    );
    same_on_both(
        &mut gpu,
        DType::F64,
        Plan::Numeric(NpyType::F32),
        true,
        &data,
        5000,
        4096,
    );
}

#[test]
fn bits_policies_and_plain_copies_stay_on_the_cpu_and_say_so() {
    let Some(mut gpu) = gpu_or_skip() else { return };
    let policy = DtypePolicy {
        bf16: NarrowFloatPolicy::Bits,
        ..Default::default()
    };
    let cpu = Converter::new(DType::BF16, policy.plan(DType::BF16), false).unwrap();
    let mut run = gpu.start("bits", &cpu, 1 << 20).unwrap();
    assert_eq!(run.push(&[1, 2, 3, 4]).unwrap(), [1, 2, 3, 4]);
    assert!(run.finish().unwrap().is_empty());
    assert_eq!(
        gpu.stats.last().unwrap().path,
        "cpu: no device operation (a plain copy)"
    );
}

#[test]
fn gpu_conversions_of_the_fixtures_match_the_oracles_and_report_stats() {
    if gpu_or_skip().is_none() {
        return;
    }
    let dir = tempdir();
    for (input, oracle, extra) in [
        (
            "safetensors/extended.safetensors",
            "safetensors/extended.expected.npz",
            vec![],
        ),
        (
            "safetensors/numeric.safetensors",
            "safetensors/numeric.cast_f64_f32.expected.npz",
            vec!["--cast", "f64=f32"],
        ),
        ("ckpt/raw/ckpt", "ckpt/raw.expected.npz", vec![]),
        (
            "tfrecord/many_bf16.tfrecord",
            "tfrecord/many_bf16.expected.npz",
            vec![],
        ),
    ] {
        let out = dir.path().join("g.npz");
        let o = Command::new(bin())
            .arg("convert")
            .arg(root().join("fixtures").join(input))
            .args([
                "--device",
                "gpu",
                "--stats=json",
                "--chunk-size",
                "1000",
                "-o",
            ])
            .arg(&out)
            .args(&extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{input}: {stderr}");
        assert_same_arrays(
            &read_npz(&out),
            &read_npz(&root().join("fixtures").join(oracle)),
            input,
        );
        let stats: serde_json::Value =
            serde_json::from_str(stderr.trim()).unwrap_or_else(|e| panic!("{e}: {stderr}"));
        assert!(stats["total"]["d2h_bytes"].as_u64().unwrap() > 0, "{stats}");
        assert!(stats["device"].as_str().is_some());
    }
}

#[test]
fn without_an_adapter_gpu_fails_clearly_and_auto_falls_back_once() {
    let dir = tempdir();
    let hide = |c: &mut Command| {
        c.env("VK_ICD_FILENAMES", "/nonexistent")
            .env("VK_DRIVER_FILES", "/nonexistent");
    };
    let input = root().join("fixtures/safetensors/extended.safetensors");
    let mut c = Command::new(bin());
    c.arg("convert")
        .arg(&input)
        .args(["--device", "gpu", "-o"])
        .arg(dir.path().join("g.npz"));
    hide(&mut c);
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--device gpu") && err.contains("no GPU adapter found"),
        "{err}"
    );
    assert!(!dir.path().join("g.npz").exists());

    let mut c = Command::new(bin());
    c.arg("convert")
        .arg(&input)
        .args(["--device", "auto", "-o"])
        .arg(dir.path().join("a.npz"));
    hide(&mut c);
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(err.matches("using the CPU").count(), 1, "{err}");
    assert_same_arrays(
        &read_npz(&dir.path().join("a.npz")),
        &read_npz(&root().join("fixtures/safetensors/extended.expected.npz")),
        "auto",
    );
}

#[test]
fn a_chunk_of_more_than_65535_workgroups_dispatches_in_two_dimensions() {
    let Some(mut gpu) = gpu_or_skip() else { return };
    // 17 M bf16 elements -> 17 M output words: more than 65,535 x 256 invocations in one chunk
    let n = 65_535 * 256 + 4099;
    let data: Vec<u8> = (0..n)
        .flat_map(|i: u32| ((i.wrapping_mul(2_654_435_761) >> 16) as u16).to_le_bytes())
        .collect();
    same_on_both(
        &mut gpu,
        DType::BF16,
        DtypePolicy::default().plan(DType::BF16),
        false,
        &data,
        data.len(),
        1 << 30,
    );
}

#[test]
fn devices_lists_adapters_with_their_limits() {
    let o = Command::new(bin())
        .args(["devices", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let list = list.as_array().unwrap();
    if gpu_or_skip().is_none() {
        return;
    }
    assert!(!list.is_empty());
    for a in list {
        assert!(a["name"].is_string() && a["backend"].is_string() && a["device_type"].is_string());
        assert!(
            a["limits"]["max_storage_buffer_binding_size"]
                .as_u64()
                .unwrap()
                > 0
        );
    }
    let text = Command::new(bin()).arg("devices").output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("max_buffer_size"));
}

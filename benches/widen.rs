//! bf16 -> f32 widening (and f32 -> f16 narrowing) throughput against a plain memory copy of
//! the same bytes, on buffers that stay in cache-missing sizes. Prints one JSON line; run by
//! benches/run.sh, or `cargo bench --bench widen`.

use std::time::Instant;

use tensor2npy::dtype::{DType, DtypePolicy, NpyType, Plan};
use tensor2npy::transform::Converter;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let n_in: usize = 256 << 20; // 256 MiB of bf16 in, 512 MiB of f32 out
    let chunk = 4 << 20;
    let input: Vec<u8> = (0..n_in).map(|i| (i * 31 % 251) as u8).collect();
    let mut out = vec![0u8; n_in * 2];
    let widen =
        Converter::new(DType::BF16, DtypePolicy::default().plan(DType::BF16), false).unwrap();
    let narrow = Converter::new(DType::F32, Plan::Numeric(NpyType::F16), false).unwrap();
    let mut buf = Vec::with_capacity(chunk * 2);
    let (mut t_widen, mut t_copy, mut t_narrow) = (vec![], vec![], vec![]);
    for _ in 0..7 {
        let t = Instant::now();
        for (i, c) in input.chunks(chunk).enumerate() {
            buf.clear();
            widen.convert(c, &mut buf).unwrap();
            out[i * chunk * 2..i * chunk * 2 + buf.len()].copy_from_slice(&buf);
        }
        t_widen.push(t.elapsed().as_secs_f64());
        // the same output bytes moved by memcpy alone
        let t = Instant::now();
        for (i, c) in input.chunks(chunk).enumerate() {
            out[i * chunk * 2..i * chunk * 2 + c.len()].copy_from_slice(c);
            out[i * chunk * 2 + c.len()..i * chunk * 2 + 2 * c.len()].copy_from_slice(c);
        }
        t_copy.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for c in out.chunks(chunk) {
            buf.clear();
            narrow.convert(c, &mut buf).unwrap();
        }
        t_narrow.push(t.elapsed().as_secs_f64());
    }
    let gb = |bytes: usize, t: f64| bytes as f64 / t / 1e9;
    println!(
        "{{\"widen_bf16_f32_gb_out\": {:.3}, \"memcpy_gb\": {:.3}, \"narrow_f32_f16_gb_in\": {:.3}, \"out_bytes\": {}}}",
        gb(2 * n_in, median(t_widen)),
        gb(2 * n_in, median(t_copy)),
        gb(2 * n_in, median(t_narrow)),
        2 * n_in
    );
}

//! Block dequantizers for GGML's quantized types, byte-identical to `gguf.quants.dequantize`
//! (gguf-py): each one is a transcription of its NumPy `dequantize_blocks`, element order and
//! float32 operation order included (every product and sum rounded to float32 on its own,
//! never fused, as NumPy evaluates `d * q - m`). One function per type turns one block into
//! `block_size` floats; `mod.rs` streams blocks through them. The grid-based IQ types are in
//! `iq.rs`.

use half::f16;

/// Turns one block (`type_size` bytes) into `block_size` floats.
pub type BlockFn = fn(&[u8], &mut [f32]);

pub fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// Nibble `j` of a 32-element block whose 16 bytes hold elements j (low) and j + 16 (high).
fn nibble32(qs: &[u8], j: usize) -> u8 {
    (qs[j % 16] >> (4 * (j / 16))) & 0x0F
}

pub fn q4_0(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    for (j, o) in out.iter_mut().enumerate() {
        let q = nibble32(&b[2..18], j) as i8 - 8;
        *o = d * q as f32;
    }
}

pub fn q4_1(b: &[u8], out: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    for (j, o) in out.iter_mut().enumerate() {
        *o = d * nibble32(&b[4..20], j) as f32 + m;
    }
}

pub fn q5_0(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for (j, o) in out.iter_mut().enumerate() {
        let q = nibble32(&b[6..22], j) | (((qh >> j) & 1) as u8) << 4;
        *o = d * (q as i8 - 16) as f32;
    }
}

pub fn q5_1(b: &[u8], out: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for (j, o) in out.iter_mut().enumerate() {
        let q = nibble32(&b[8..24], j) | (((qh >> j) & 1) as u8) << 4;
        *o = d * q as f32 + m;
    }
}

pub fn q8_0(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    for (o, &x) in out.iter_mut().zip(&b[2..34]) {
        *o = x as i8 as f32 * d;
    }
}

/// 2-bit value `e` of a 256-element block stored as two halves of 32 bytes, four shifts each.
fn crumb256(qs: &[u8], e: usize) -> u8 {
    let (h, s, l) = (e / 128, (e % 128) / 32, e % 32);
    (qs[h * 32 + l] >> (2 * s)) & 3
}

pub fn q2_k(b: &[u8], out: &mut [f32]) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    for (g, (chunk, &sc)) in out.chunks_exact_mut(16).zip(scales).enumerate() {
        let dl = d * (sc & 0x0F) as f32;
        let ml = dmin * (sc >> 4) as f32;
        for (i, o) in chunk.iter_mut().enumerate() {
            *o = dl * crumb256(qs, g * 16 + i) as f32 - ml;
        }
    }
}

pub fn q3_k(b: &[u8], out: &mut [f32]) {
    let (hmask, qs, s) = (&b[0..32], &b[32..96], &b[96..108]);
    let d = f16_at(b, 108);
    for (g, chunk) in out.chunks_exact_mut(16).enumerate() {
        let low = (s[g % 8] >> (4 * (g / 8))) & 0x0F;
        let high = (s[8 + g % 4] >> (2 * (g / 4))) & 0x03;
        let scale = ((low | high << 4) as i8 - 32) as f32;
        let dl = d * scale;
        for (i, o) in chunk.iter_mut().enumerate() {
            let e = g * 16 + i;
            let ql = crumb256(qs, e) as i8;
            let qh = ((hmask[e % 32] >> (e / 32)) & 1) ^ 1;
            *o = dl * (ql - (qh << 2) as i8) as f32;
        }
    }
}

/// The eight 6-bit scales and mins of a Q4_K / Q5_K block (`Q4_K.get_scale_min`).
fn scale_min_k4(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
    for i in 0..4 {
        sc[i] = s[i] & 0x3F;
        sc[4 + i] = (s[8 + i] & 0x0F) | ((s[i] >> 2) & 0x30);
        mn[i] = s[4 + i] & 0x3F;
        mn[4 + i] = (s[8 + i] >> 4) | ((s[4 + i] >> 2) & 0x30);
    }
    (sc, mn)
}

/// Nibble `e` of a 256-element block of four 32-byte groups, low nibbles first.
fn nibble256(qs: &[u8], e: usize) -> u8 {
    let (k, l) = (e / 32, e % 32);
    (qs[(k / 2) * 32 + l] >> (4 * (k % 2))) & 0x0F
}

pub fn q4_k(b: &[u8], out: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (sc, mn) = scale_min_k4(&b[4..16]);
    let qs = &b[16..144];
    // Group k holds the low (k even) or high nibbles of 32 bytes: the loop over whole groups is
    // what the compiler vectorizes (the same arithmetic as element by element, `nibble256`).
    for (k, chunk) in out.chunks_exact_mut(32).enumerate() {
        let dk = d * sc[k] as f32;
        let mk = dmin * mn[k] as f32;
        let (q, shift) = (&qs[(k / 2) * 32..(k / 2) * 32 + 32], 4 * (k % 2));
        for (o, &byte) in chunk.iter_mut().zip(q) {
            *o = dk * ((byte >> shift) & 0x0F) as f32 - mk;
        }
    }
}

pub fn q5_k(b: &[u8], out: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (sc, mn) = scale_min_k4(&b[4..16]);
    let (qh, qs) = (&b[16..48], &b[48..176]);
    for (k, chunk) in out.chunks_exact_mut(32).enumerate() {
        let dk = d * sc[k] as f32;
        let mk = dmin * mn[k] as f32;
        for (l, o) in chunk.iter_mut().enumerate() {
            let q = nibble256(qs, k * 32 + l) | ((qh[l] >> k) & 1) << 4;
            *o = dk * q as f32 - mk;
        }
    }
}

pub fn q6_k(b: &[u8], out: &mut [f32]) {
    let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = f16_at(b, 208);
    // Element e = 128 h + 32 s + l takes its low 4 bits from ql[64 h + 32 (s % 2) + l] (nibble
    // s / 2) and its high 2 from qh[32 h + l] (crumb s); 16 elements share a scale.
    for h in 0..2 {
        for s in 0..4 {
            let base = h * 128 + s * 32;
            let lo = &ql[h * 64 + (s % 2) * 32..][..32];
            let hi = &qh[h * 32..][..32];
            let (sl, sh) = (4 * (s / 2), 2 * s);
            for half in 0..2 {
                let dg = d * scales[base / 16 + half] as i8 as f32;
                let o = &mut out[base + half * 16..base + half * 16 + 16];
                let (lo, hi) = (
                    &lo[half * 16..half * 16 + 16],
                    &hi[half * 16..half * 16 + 16],
                );
                for ((o, &l), &hb) in o.iter_mut().zip(lo).zip(hi) {
                    let q = ((l >> sl) & 0x0F) | ((hb >> sh) & 3) << 4;
                    *o = dg * (q as i8 - 32) as f32;
                }
            }
        }
    }
}

pub fn tq1_0(b: &[u8], out: &mut [f32]) {
    const POW3: [u8; 5] = [1, 3, 9, 27, 81];
    let (qs, qh) = (&b[0..48], &b[48..52]);
    let d = f16_at(b, 52);
    for (e, o) in out.iter_mut().enumerate() {
        let x = match e {
            0..160 => qs[e % 32].wrapping_mul(POW3[e / 32]),
            160..240 => qs[32 + (e - 160) % 16].wrapping_mul(POW3[(e - 160) / 16]),
            _ => qh[(e - 240) % 4].wrapping_mul(POW3[(e - 240) / 4]),
        };
        let q = ((x as u16 * 3) >> 8) as i8 - 1;
        *o = d * q as f32;
    }
}

pub fn tq2_0(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 64);
    for (e, o) in out.iter_mut().enumerate() {
        *o = d * (crumb256(&b[0..64], e) as i8 - 1) as f32;
    }
}

/// e2m1 values, doubled (`MXFP4.kvalues`).
const KVALUES_FP4: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

pub fn mxfp4(b: &[u8], out: &mut [f32]) {
    let e = u32::from(b[0]);
    // ggml_e8m0_to_fp32_half
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        (e - 1) << 23
    };
    let d = f32::from_bits(bits);
    for (j, o) in out.iter_mut().enumerate() {
        *o = d * KVALUES_FP4[nibble32(&b[1..17], j) as usize] as f32;
    }
}

/// `NVFP4.ue4m3_to_fp32`: unsigned e4m3 (bias 7), halved; 0x00 and 0x7F are zero. Every step
/// of NumPy's float32 computation is exact here, so computing it directly gives its bits.
fn ue4m3_half(x: u8) -> f32 {
    if x == 0 || x == 0x7F {
        return 0.0;
    }
    let exp = i32::from((x >> 3) & 0x0F);
    let man = f32::from(x & 7);
    let raw = if exp == 0 {
        man * 2f32.powi(-9)
    } else {
        (1.0 + man / 8.0) * 2f32.powi(exp - 7)
    };
    raw * 0.5
}

pub fn nvfp4(b: &[u8], out: &mut [f32]) {
    for (s, chunk) in out.chunks_exact_mut(16).enumerate() {
        let d = ue4m3_half(b[s]);
        let qs = &b[4 + s * 8..4 + s * 8 + 8];
        for (j, o) in chunk.iter_mut().enumerate() {
            let q = if j < 8 { qs[j] & 0x0F } else { qs[j - 8] >> 4 };
            *o = d * KVALUES_FP4[q as usize] as f32;
        }
    }
}

/// `IQ4_NL.kvalues`.
pub const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

pub fn iq4_nl(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    for (j, o) in out.iter_mut().enumerate() {
        *o = d * KVALUES_IQ4NL[nibble32(&b[2..18], j) as usize] as f32;
    }
}

pub fn iq4_xs(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    let scales_h = u16::from_le_bytes([b[2], b[3]]);
    let (scales_l, qs) = (&b[4..8], &b[8..136]);
    for (k, chunk) in out.chunks_exact_mut(32).enumerate() {
        let low = (scales_l[k / 2] >> (4 * (k % 2))) & 0x0F;
        let high = ((scales_h >> (2 * k)) as u8) & 0x03;
        let dl = d * ((low | high << 4) as i8 - 32) as f32;
        for (i, o) in chunk.iter_mut().enumerate() {
            let q = (qs[k * 16 + i % 16] >> (4 * (i / 16))) & 0x0F;
            *o = dl * KVALUES_IQ4NL[q as usize] as f32;
        }
    }
}

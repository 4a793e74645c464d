//! Dequantizers for the grid-based IQ types (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S,
//! IQ1_M), byte-identical to gguf-py's `dequantize_blocks`: same grids (unpacked once from the
//! hexadecimal tables in `iq_grids.rs`, as `init_grid` does), same element order, and the same
//! float32 operations in the same order (`(db * grid) * sign`, `dl * (grid + delta)`).

use std::sync::OnceLock;

use super::dequant::f16_at;
use super::iq_grids as g;

/// A grid: `cols` float32 values per row.
struct Grid {
    cols: usize,
    values: Vec<f32>,
}

impl Grid {
    fn row(&self, r: usize) -> &[f32] {
        &self.values[r * self.cols..(r + 1) * self.cols]
    }
}

/// `__Quant.init_grid`: hexadecimal bytes, each holding `8 / bits` indices into `map`, low
/// bits first.
fn unpack(hex: &[u8], map: &[f32], cols: usize) -> Grid {
    let bits = usize::BITS - (map.len() - 1).leading_zeros(); // ceil(log2(len))
    let per_byte = 8 / bits as usize;
    let step = 8 / per_byte;
    let mask = (1u8 << bits) - 1;
    let nib = |c: u8| (if c > 0x40 { c + 9 } else { c }) & 0x0F;
    let mut values = Vec::with_capacity(hex.len() / 2 * per_byte);
    for pair in hex.chunks_exact(2) {
        let byte = nib(pair[0]) << 4 | nib(pair[1]);
        for i in 0..per_byte {
            values.push(map[((byte >> (i * step)) & mask) as usize]);
        }
    }
    Grid { cols, values }
}

macro_rules! grid {
    ($name:ident, $hex:expr, $map:expr, $cols:expr) => {
        fn $name() -> &'static Grid {
            static G: OnceLock<Grid> = OnceLock::new();
            G.get_or_init(|| unpack($hex, &$map, $cols))
        }
    };
}

const MAP_IQ2: [f32; 3] = [8.0, 25.0, 43.0];
grid!(iq2xxs_grid, g::IQ2_XXS_GRID, MAP_IQ2, 8);
grid!(iq2xs_grid, g::IQ2_XS_GRID, MAP_IQ2, 8);
grid!(iq2s_grid, g::IQ2_S_GRID, MAP_IQ2, 8);
grid!(
    iq3xxs_grid,
    g::IQ3_XXS_GRID,
    [4.0, 12.0, 20.0, 28.0, 36.0, 44.0, 52.0, 62.0],
    4
);
grid!(
    iq3s_grid,
    g::IQ3_S_GRID,
    [1.0, 3.0, 5.0, 7.0, 9.0, 11.0, 13.0, 15.0],
    4
);
grid!(iq1s_grid, g::IQ1_S_GRID, [-1.0, 0.0, 1.0], 8);

/// `x * s` for the sign `s` (±1.0) that bit `j` of `bits` gives, as NumPy's multiply computes
/// it: a NaN `x` comes out unchanged. Written as a negation of the non-NaN values, because an
/// optimized build may turn a product with -1.0 into a negation, which flips a NaN's sign bit.
fn signed(x: f32, bits: u8, j: usize) -> f32 {
    if (bits >> j) & 1 == 0 || x.is_nan() {
        x
    } else {
        -x
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub fn iq2_xxs(b: &[u8], out: &mut [f32]) {
    let grid = iq2xxs_grid();
    let d = f16_at(b, 0);
    for (ib, sub) in out.chunks_exact_mut(32).enumerate() {
        let aux0 = u32_at(b, 2 + ib * 8);
        let aux1 = u32_at(b, 6 + ib * 8);
        let db = d * (0.5 + (aux1 >> 28) as f32) * 0.25;
        for (l, part) in sub.chunks_exact_mut(8).enumerate() {
            let row = grid.row(((aux0 >> (8 * l)) & 0xFF) as usize);
            let signs = g::KSIGNS[((aux1 >> (7 * l)) & 0x7F) as usize];
            for (j, o) in part.iter_mut().enumerate() {
                *o = signed(db * row[j], signs, j);
            }
        }
    }
}

/// The sixteen 4-bit scales of IQ2_XS / IQ2_S, as `d * (0.5 + s) * 0.25`.
fn iq2_scales(d: f32, scales: &[u8]) -> [f32; 16] {
    let mut db = [0f32; 16];
    for (k, x) in db.iter_mut().enumerate() {
        let s = (scales[k / 2] >> (4 * (k % 2))) & 0x0F;
        *x = d * (0.5 + s as f32) * 0.25;
    }
    db
}

pub fn iq2_xs(b: &[u8], out: &mut [f32]) {
    let grid = iq2xs_grid();
    let db = iq2_scales(f16_at(b, 0), &b[66..74]);
    for (i, part) in out.chunks_exact_mut(8).enumerate() {
        let q = u16_at(b, 2 + 2 * i);
        let row = grid.row((q & 511) as usize);
        let signs = g::KSIGNS[(q >> 9) as usize];
        let dbk = db[i / 2];
        for (j, o) in part.iter_mut().enumerate() {
            *o = signed(dbk * row[j], signs, j);
        }
    }
}

pub fn iq2_s(b: &[u8], out: &mut [f32]) {
    let grid = iq2s_grid();
    let (qs, signs, qh) = (&b[2..34], &b[34..66], &b[66..74]);
    let db = iq2_scales(f16_at(b, 0), &b[74..82]);
    for (i, part) in out.chunks_exact_mut(8).enumerate() {
        let high = u16::from((qh[i / 4] >> (2 * (i % 4))) & 3);
        let row = grid.row((u16::from(qs[i]) | high << 8) as usize);
        let dbk = db[i / 2];
        for (j, o) in part.iter_mut().enumerate() {
            *o = signed(dbk * row[j], signs[i], j);
        }
    }
}

pub fn iq3_xxs(b: &[u8], out: &mut [f32]) {
    let grid = iq3xxs_grid();
    let d = f16_at(b, 0);
    let qs = &b[2..66];
    for (ib, sub) in out.chunks_exact_mut(32).enumerate() {
        let sc = u32_at(b, 66 + 4 * ib);
        let db = d * (0.5 + (sc >> 28) as f32) * 0.5;
        for (e, o) in sub.iter_mut().enumerate() {
            let row = grid.row(qs[ib * 8 + e / 4] as usize);
            let signs = g::KSIGNS[((sc >> (7 * (e / 8))) & 0x7F) as usize];
            *o = signed(db * row[e % 4], signs, e % 8);
        }
    }
}

pub fn iq3_s(b: &[u8], out: &mut [f32]) {
    let grid = iq3s_grid();
    let d = f16_at(b, 0);
    let (qs, qh, signs, scales) = (&b[2..66], &b[66..74], &b[74..106], &b[106..110]);
    for (ib, sub) in out.chunks_exact_mut(32).enumerate() {
        let s = (scales[ib / 2] >> (4 * (ib % 2))) & 0x0F;
        let db = d * (1 + 2 * s) as f32;
        for (e, o) in sub.iter_mut().enumerate() {
            let i = ib * 8 + e / 4;
            let high = u16::from((qh[i / 8] >> (i % 8)) & 1);
            let row = grid.row((u16::from(qs[i]) | high << 8) as usize);
            let k = ib * 32 + e;
            *o = signed(db * row[e % 4], signs[k / 8], k % 8);
        }
    }
}

const DELTA: f32 = 0.125;

pub fn iq1_s(b: &[u8], out: &mut [f32]) {
    let grid = iq1s_grid();
    let d = f16_at(b, 0);
    let qs = &b[2..34];
    for (ib, sub) in out.chunks_exact_mut(32).enumerate() {
        let qh = u16_at(b, 34 + 2 * ib);
        let dl = d * (2 * ((qh >> 12) & 7) + 1) as f32;
        let delta = if qh & 0x8000 == 0 { DELTA } else { -DELTA };
        for (l, part) in sub.chunks_exact_mut(8).enumerate() {
            let idx = u16::from(qs[ib * 4 + l]) | ((qh >> (3 * l)) & 7) << 8;
            let row = grid.row(idx as usize);
            for (j, o) in part.iter_mut().enumerate() {
                *o = dl * (row[j] + delta);
            }
        }
    }
}

pub fn iq1_m(b: &[u8], out: &mut [f32]) {
    let grid = iq1s_grid();
    let (qs, qh) = (&b[0..32], &b[32..48]);
    let s = [0, 1, 2, 3].map(|i| u16_at(b, 48 + 2 * i));
    let bits = (s[0] & 0xF000) >> 12 | (s[1] & 0xF000) >> 8 | (s[2] & 0xF000) >> 4 | s[3] & 0xF000;
    let d = half::f16::from_bits(bits).to_f32();
    for (k, half16) in out.chunks_exact_mut(16).enumerate() {
        let sc = (s[k / 4] >> (3 * (k % 4))) & 7;
        let dl = d * (2 * sc + 1) as f32;
        for (q, part) in half16.chunks_exact_mut(8).enumerate() {
            let i = k * 2 + q;
            let high = qh[i / 2] >> (4 * (i % 2));
            let idx = u16::from(qs[i]) | u16::from(high & 7) << 8;
            let delta = if high & 0x08 == 0 { DELTA } else { -DELTA };
            let row = grid.row(idx as usize);
            for (j, o) in part.iter_mut().enumerate() {
                *o = dl * (row[j] + delta);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_unpack_to_their_declared_shapes() {
        assert_eq!(iq2xxs_grid().values.len(), 256 * 8);
        assert_eq!(iq2xs_grid().values.len(), 512 * 8);
        assert_eq!(iq2s_grid().values.len(), 1024 * 8);
        assert_eq!(iq3xxs_grid().values.len(), 256 * 4);
        assert_eq!(iq3s_grid().values.len(), 512 * 4);
        assert_eq!(iq1s_grid().values.len(), 2048 * 8);
        // iq2xxs_grid[0] in ggml-common.h is 0x0808080808080808.
        assert_eq!(iq2xxs_grid().row(0), &[8.0; 8]);
    }

    #[test]
    fn a_nan_scale_keeps_its_sign_through_negative_signs() {
        // gguf.quants: (db * grid) * signs, and NumPy's multiply returns a NaN operand as it is,
        // so a block whose scale is +NaN gives +NaN everywhere, whatever the signs. (An
        // optimized build used to negate instead, flipping the NaN's sign bit: run
        // `cargo test --release` to see it.)
        let mut b = [0u8; 66];
        b[..2].copy_from_slice(&0x7e07u16.to_le_bytes());
        for ib in 0..8 {
            // every 7-bit sign index 127: KSIGNS[127] = 0xff, all eight signs negative
            b[6 + ib * 8..10 + ib * 8].copy_from_slice(&0x0fff_ffffu32.to_le_bytes());
        }
        let mut out = [0f32; 256];
        iq2_xxs(&b, &mut out);
        assert!(
            out.iter().all(|v| v.to_bits() == 0x7fc0_e000),
            "{:x}",
            out[0].to_bits()
        );
        // a finite scale: every value negated (grid row 0 is all 8.0; db = 1 * 0.5 * 0.25)
        b[..2].copy_from_slice(&0x3c00u16.to_le_bytes());
        iq2_xxs(&b, &mut out);
        assert!(out.iter().all(|&v| v == -1.0), "{}", out[0]);
    }
}

//! Chunk-by-chunk element conversion between a source dtype and the `.npy` type the policy
//! chose: byte-order swaps, lossless widening of bfloat16 and the float8 family, sub-byte
//! integer sign extension, and the user's explicit `--cast`s (numpy `astype` semantics).

use std::sync::OnceLock;

use anyhow::{bail, Result};
use half::f16;

use crate::dtype::{DType, NpyType, Plan};

/// Converts whole elements of one source dtype into one output type.
///
/// [`Converter::new`] is the one table of conversions: it names each (source dtype, plan) pair
/// as an [`Op`], which this type performs on the host and `device::kernel` maps to a GPU
/// kernel. A new conversion is a new `Op` variant (or a new row choosing an existing one).
#[derive(Clone, Debug)]
pub struct Converter {
    src: DType,
    out: NpyType,
    swap: bool,
    op: Op,
}

/// What one element conversion does, after any byte-order swap. Every variant the GPU has a
/// kernel for is its own variant, so that the device mapping is a total `match` on this enum;
/// several of them share the host's generic cast code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Same bytes (after any byte swap).
    Copy,
    /// Sign-extend the low `bits` bits of each byte (int4 and int2 stored a byte each).
    SignExtend(u32),
    /// Keep the low `bits` bits of each byte (uint4 and uint2 stored a byte each).
    Mask(u32),
    /// bfloat16 to float32: the bits, shifted.
    Bf16ToF32,
    /// float16 to float32 (exact).
    F16ToF32,
    /// Table lookup of a one-byte float format ([`byte_float_table`]) to float32.
    Byte8ToF32,
    /// float32 to float16 straight from the bits ([`f32_to_f16_bits`]), so that NaN payloads
    /// are not first quieted by a trip through float64.
    F32ToF16,
    /// bfloat16 to float16, by the float32 whose top half it is.
    Bf16ToF16,
    /// float64 to float32, rounded to nearest even.
    F64ToF32,
    /// Between bool and the integers of at most 32 bits: sign- or zero-extend, then wrap as
    /// numpy's `astype` does; to bool is "non-zero".
    SmallIntCast {
        /// The source is a signed integer.
        signed: bool,
        /// The source is bool.
        from_bool: bool,
        /// The output is bool.
        to_bool: bool,
    },
    /// Any other element-wise numeric cast (64-bit integers, complex numbers, float to int and
    /// int to float, float8 to anything but float32), through a wide intermediate.
    Cast,
}

impl Converter {
    pub fn new(src: DType, plan: Plan, big_endian: bool) -> Result<Converter> {
        let out = match plan {
            Plan::Numeric(t) | Plan::Bits(t) => t,
            Plan::Strings | Plan::Unsupported => bail!("{src} has no element-wise conversion"),
        };
        let Some(size) = src.item_size() else {
            bail!("{src} has no fixed element size");
        };
        let op = match plan {
            Plan::Bits(t) if t.size() == size => Op::Copy,
            Plan::Bits(_) => bail!("cannot keep the bits of {src} as {}", out.descr()),
            _ => match (src, out) {
                (DType::I4, NpyType::I8) => Op::SignExtend(4),
                (DType::I2, NpyType::I8) => Op::SignExtend(2),
                (DType::U4, NpyType::U8) => Op::Mask(4),
                (DType::U2, NpyType::U8) => Op::Mask(2),
                (DType::BF16, NpyType::F32) => Op::Bf16ToF32,
                (s, NpyType::F32) if s.is_float8() => Op::Byte8ToF32,
                (s, o) if NpyType::natural(s) == Some(o) && !s.is_float8() && s != DType::BF16 => {
                    Op::Copy
                }
                (DType::F16, NpyType::F32) => Op::F16ToF32,
                (DType::F32, NpyType::F16) => Op::F32ToF16,
                (DType::BF16, NpyType::F16) => Op::Bf16ToF16,
                (DType::F64, NpyType::F32) => Op::F64ToF32,
                (s, o) => match small_int(s) {
                    Some((signed, from_bool)) if is_small_int_target(o) => Op::SmallIntCast {
                        signed,
                        from_bool,
                        to_bool: o == NpyType::Bool,
                    },
                    _ => Op::Cast,
                },
            },
        };
        Ok(Converter {
            src,
            out,
            swap: big_endian && src.swap_unit() > 1,
            op,
        })
    }

    /// The conversion this converter performs.
    pub fn op(&self) -> Op {
        self.op
    }

    pub fn src(&self) -> DType {
        self.src
    }

    pub fn out(&self) -> NpyType {
        self.out
    }

    /// The byte-order unit reversed before the op (each half of a complex number), or `None`
    /// when the source is little-endian already or has one-byte elements.
    pub fn swap_unit(&self) -> Option<usize> {
        self.swap.then(|| self.src.swap_unit())
    }

    /// True when conversion leaves the bytes as they are, so callers can pass them on uncopied.
    pub fn is_identity(&self) -> bool {
        self.op == Op::Copy && !self.swap
    }

    /// Converts `input` (whole source elements) and appends the result to `out`.
    pub fn convert(&self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let size = self.src.item_size().unwrap_or(1);
        if !input.len().is_multiple_of(size) {
            bail!(
                "internal: a chunk of {} bytes is not whole {} elements",
                input.len(),
                self.src
            );
        }
        let swapped;
        let input = if self.swap {
            let mut v = input.to_vec();
            for unit in v.chunks_exact_mut(self.src.swap_unit()) {
                unit.reverse();
            }
            swapped = v;
            &swapped[..]
        } else {
            input
        };
        let n = input.len() / size;
        out.reserve(n * self.out.size());
        match self.op {
            Op::Copy => out.extend_from_slice(input),
            Op::Bf16ToF32 => {
                // Written into a sized slice so that the loop vectorises: each f32 is the bf16's
                // two bytes after two zero bytes.
                out.extend(input.chunks_exact(2).flat_map(|e| [0, 0, e[0], e[1]]));
            }
            Op::Byte8ToF32 => {
                let table = byte_float_table(self.src);
                let start = out.len();
                out.resize(start + input.len() * 4, 0);
                for (o, &b) in out[start..].chunks_exact_mut(4).zip(input) {
                    o.copy_from_slice(&table[b as usize].to_le_bytes());
                }
            }
            Op::SignExtend(bits) => out.extend(
                input
                    .iter()
                    .map(|&b| (((b << (8 - bits)) as i8) >> (8 - bits)) as u8),
            ),
            Op::Mask(bits) => out.extend(input.iter().map(|&b| b & ((1u8 << bits) - 1))),
            Op::F32ToF16 => {
                for e in input.chunks_exact(4) {
                    let bits = u32::from_le_bytes(e.try_into().unwrap());
                    out.extend_from_slice(&f32_to_f16_bits(bits).to_le_bytes());
                }
            }
            Op::Bf16ToF16 => {
                for e in input.chunks_exact(2) {
                    let bits = u32::from(u16::from_le_bytes([e[0], e[1]])) << 16;
                    out.extend_from_slice(&f32_to_f16_bits(bits).to_le_bytes());
                }
            }
            // Exact or rounded as the generic cast code does them; the GPU has kernels of its
            // own for these (checked against this code byte for byte in tests/outputs/gpu.rs).
            Op::F16ToF32 | Op::F64ToF32 | Op::SmallIntCast { .. } | Op::Cast => {
                for e in input.chunks_exact(size) {
                    encode(self.out, decode(self.src, e), out);
                }
            }
        }
        Ok(())
    }
}

/// `(signed, is_bool)` of the sources [`Op::SmallIntCast`] takes: bool and the integers of at
/// most 32 bits, stored a whole byte or more each.
fn small_int(d: DType) -> Option<(bool, bool)> {
    use DType::*;
    match d {
        Bool => Some((false, true)),
        I8 | I16 | I32 | QInt8 | QInt16 | QInt32 => Some((true, false)),
        U8 | U16 | U32 | QUInt8 | QUInt16 => Some((false, false)),
        _ => None,
    }
}

/// The outputs [`Op::SmallIntCast`] writes.
fn is_small_int_target(t: NpyType) -> bool {
    use NpyType::*;
    matches!(t, Bool | I8 | U8 | I16 | U16 | I32 | U32)
}

/// One element in a form every numeric dtype converts through without loss.
#[derive(Clone, Copy, Debug)]
enum Value {
    Int(i128),
    Float(f64),
    Complex(f64, f64),
}

fn decode(d: DType, e: &[u8]) -> Value {
    use DType::*;
    let le2 = || u16::from_le_bytes([e[0], e[1]]);
    let le4 = || u32::from_le_bytes(e[..4].try_into().unwrap());
    let le8 = || u64::from_le_bytes(e[..8].try_into().unwrap());
    match d {
        Bool => Value::Int((e[0] != 0) as i128),
        I8 | QInt8 => Value::Int(e[0] as i8 as i128),
        U8 | QUInt8 => Value::Int(e[0] as i128),
        I4 => Value::Int((((e[0] << 4) as i8) >> 4) as i128),
        U4 => Value::Int((e[0] & 15) as i128),
        I2 => Value::Int((((e[0] << 6) as i8) >> 6) as i128),
        U2 => Value::Int((e[0] & 3) as i128),
        I16 | QInt16 => Value::Int(le2() as i16 as i128),
        U16 | QUInt16 => Value::Int(le2() as i128),
        I32 | QInt32 => Value::Int(le4() as i32 as i128),
        U32 => Value::Int(le4() as i128),
        I64 => Value::Int(le8() as i64 as i128),
        U64 => Value::Int(le8() as i128),
        F16 => Value::Float(f16::from_bits(le2()).to_f64()),
        BF16 => Value::Float(f32::from_bits(u32::from(le2()) << 16) as f64),
        F32 => Value::Float(f32::from_bits(le4()) as f64),
        F64 => Value::Float(f64::from_bits(le8())),
        C64 => Value::Complex(
            f32::from_bits(le4()) as f64,
            f32::from_bits(u32::from_le_bytes(e[4..8].try_into().unwrap())) as f64,
        ),
        C128 => Value::Complex(
            f64::from_bits(le8()),
            f64::from_bits(u64::from_le_bytes(e[8..16].try_into().unwrap())),
        ),
        d if d.is_float8() => {
            Value::Float(f32::from_bits(byte_float_table(d)[e[0] as usize]) as f64)
        }
        _ => Value::Int(0), // strings, resources and variants never reach a numeric cast
    }
}

fn encode(t: NpyType, v: Value, out: &mut Vec<u8>) {
    let as_int = |v: Value| -> i128 {
        match v {
            Value::Int(i) => i,
            // Rust's float-to-int `as` saturates (NaN gives 0); numpy's result for
            // out-of-range values is platform-defined, so this is documented, not matched.
            Value::Float(f) | Value::Complex(f, _) => f as i128,
        }
    };
    let as_float = |v: Value| -> f64 {
        match v {
            Value::Int(i) => i as f64,
            Value::Float(f) | Value::Complex(f, _) => f,
        }
    };
    match t {
        NpyType::Bool => out.push(match v {
            Value::Int(i) => (i != 0) as u8,
            Value::Float(f) => (f != 0.0) as u8,
            Value::Complex(r, i) => (r != 0.0 || i != 0.0) as u8,
        }),
        NpyType::I8 | NpyType::U8 => out.push(as_int(v) as u8),
        NpyType::I16 | NpyType::U16 => out.extend_from_slice(&(as_int(v) as u16).to_le_bytes()),
        NpyType::I32 | NpyType::U32 => out.extend_from_slice(&(as_int(v) as u32).to_le_bytes()),
        NpyType::I64 | NpyType::U64 => out.extend_from_slice(&(as_int(v) as u64).to_le_bytes()),
        NpyType::F16 => {
            // int -> half goes through double, as numpy does
            let f = match v {
                Value::Int(i) => i as f64,
                Value::Float(f) | Value::Complex(f, _) => f,
            };
            out.extend_from_slice(&f64_to_f16_bits(f.to_bits()).to_le_bytes())
        }
        NpyType::F32 => {
            let f = match v {
                Value::Int(i) => i as f32,
                other => as_float(other) as f32,
            };
            out.extend_from_slice(&f.to_le_bytes())
        }
        NpyType::F64 => out.extend_from_slice(&as_float(v).to_le_bytes()),
        NpyType::C64 | NpyType::C128 => {
            let (re, im) = match v {
                Value::Complex(r, i) => (r, i),
                other => (as_float(other), 0.0),
            };
            if t == NpyType::C64 {
                out.extend_from_slice(&(re as f32).to_le_bytes());
                out.extend_from_slice(&(im as f32).to_le_bytes());
            } else {
                out.extend_from_slice(&re.to_le_bytes());
                out.extend_from_slice(&im.to_le_bytes());
            }
        }
        NpyType::Bytes(_) => {}
    }
}

/// float64 bits to float16 bits, rounded to nearest even from the full-precision value (as
/// NumPy's `npy_doublebits_to_halfbits` does; the `half` crate's fallback only looks at the top
/// 32 bits, and its hardware path rounds twice through float32). NaN keeps the top of its
/// payload, made non-zero, as NumPy does.
pub fn f64_to_f16_bits(x: u64) -> u16 {
    let sign = ((x >> 48) & 0x8000) as u16;
    let exp = ((x >> 52) & 0x7ff) as i32;
    let man = x & ((1u64 << 52) - 1);
    if exp == 0x7ff {
        if man == 0 {
            return sign | 0x7c00;
        }
        let r = 0x7c00 | (man >> 42) as u16;
        return sign | if r == 0x7c00 { 0x7c01 } else { r };
    }
    if exp == 0 {
        return sign; // float64 subnormals are far below half the smallest float16
    }
    round_to_f16(sign, exp - 1023, man | (1u64 << 52), 52)
}

/// float32 bits to float16 bits; the same rounding and NaN rule as [`f64_to_f16_bits`]
/// (NumPy's `npy_floatbits_to_halfbits`). The GPU kernel mirrors this function.
pub fn f32_to_f16_bits(x: u32) -> u16 {
    let sign = ((x >> 16) & 0x8000) as u16;
    let exp = ((x >> 23) & 0xff) as i32;
    let man = (x & 0x7f_ffff) as u64;
    if exp == 0xff {
        if man == 0 {
            return sign | 0x7c00;
        }
        let r = 0x7c00 | (man >> 13) as u16;
        return sign | if r == 0x7c00 { 0x7c01 } else { r };
    }
    if exp == 0 {
        return sign;
    }
    round_to_f16(sign, exp - 127, man | (1u64 << 23), 23)
}

/// Rounds `mant × 2^(e - p)` (with `mant`'s leading bit at position `p`) to the nearest float16,
/// ties to even; too large becomes infinity.
fn round_to_f16(sign: u16, e: i32, mant: u64, p: u32) -> u16 {
    if e > 15 {
        return sign | 0x7c00;
    }
    // Shift so that the kept bits are the float16 significand: 10 fraction bits for normals,
    // fewer for subnormals (whose unit is 2^-24).
    let shift = if e >= -14 {
        p as i32 - 10
    } else {
        p as i32 - 10 + (-14 - e)
    };
    if shift > 63 {
        return sign;
    }
    let shift = shift as u32;
    let kept = mant >> shift;
    let rem = mant & ((1u64 << shift) - 1);
    let halfway = 1u64 << (shift - 1);
    let mut bits = if e >= -14 {
        (((e + 15) as u64) << 10) | (kept & 0x3ff)
    } else {
        kept
    };
    if rem > halfway || (rem == halfway && bits & 1 == 1) {
        bits += 1; // a carry into the exponent (or to infinity) is the right result
    }
    sign | bits as u16
}

/// Encodes a value in a source dtype's own little-endian layout (for fill values and sums that
/// then flow through the same conversion as the stored elements).
fn encode_in_source(d: DType, v: Value) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let natural = match d {
        DType::BF16 => {
            let f = match v {
                Value::Int(i) => i as f64,
                Value::Float(f) | Value::Complex(f, _) => f,
            };
            out.extend_from_slice(&half::bf16::from_f64(f).to_bits().to_le_bytes());
            return Ok(out);
        }
        DType::I4 | DType::I2 | DType::QInt8 => NpyType::I8,
        DType::U4 | DType::U2 | DType::QUInt8 => NpyType::U8,
        DType::QInt16 => NpyType::I16,
        DType::QUInt16 => NpyType::U16,
        DType::QInt32 => NpyType::I32,
        other => match NpyType::natural(other) {
            Some(t) if !other.is_float8() => t,
            _ => bail!("a fill value or sum of {other} elements is not supported"),
        },
    };
    encode(natural, v, &mut out);
    Ok(out)
}

/// Parses `--fill` text as one element of dtype `d`, in the dtype's own layout. A fill applies
/// to the kind of tensor it is written for: a number (or `true`/`false`) fills numeric tensors,
/// and strings pad with `b""` (`--fill -1` must not write `b"-1"`, which looks like data); a
/// Python bytes literal (`b'N/A'`) or any other text fills strings, and numeric tensors pad
/// with zeros.
pub fn parse_fill(d: DType, text: &str) -> Result<Vec<u8>> {
    let t = text.trim();
    let bad = || anyhow::anyhow!("--fill '{text}' is not a valid {d} value");
    let bytes_literal = ["'", "\""]
        .iter()
        .find_map(|q| t.strip_prefix('b')?.strip_prefix(q)?.strip_suffix(q));
    let numeric =
        t.parse::<f64>().is_ok() || matches!(t.to_ascii_lowercase().as_str(), "true" | "false");
    if let Some(b) = bytes_literal {
        return Ok(match d {
            DType::String => b.as_bytes().to_vec(),
            d => vec![0u8; d.item_size().unwrap_or(0)],
        });
    }
    let v = match d {
        DType::String if numeric => return Ok(Vec::new()),
        DType::String => return Ok(text.as_bytes().to_vec()),
        DType::Bool => match t.to_ascii_lowercase().as_str() {
            "true" | "1" => Value::Int(1),
            "false" | "0" => Value::Int(0),
            _ => return Err(bad()),
        },
        DType::F16 | DType::BF16 | DType::F32 | DType::F64 | DType::C64 | DType::C128 => {
            Value::Float(t.parse::<f64>().map_err(|_| bad())?)
        }
        _ => Value::Int(t.parse::<i128>().map_err(|_| bad())?),
    };
    encode_in_source(d, v)
}

/// The sum of two elements of dtype `d` (for `--sparse-duplicates sum`), rounded to `d` after
/// each addition as NumPy's `np.add.at` does.
pub fn add_elements(d: DType, a: &[u8], b: &[u8]) -> Result<Vec<u8>> {
    let v = match (decode(d, a), decode(d, b)) {
        (Value::Int(x), Value::Int(y)) if d == DType::Bool => Value::Int(((x | y) != 0) as i128),
        (Value::Int(x), Value::Int(y)) => Value::Int(x.wrapping_add(y)),
        (Value::Complex(a, b), Value::Complex(c, e)) => Value::Complex(a + c, b + e),
        (x, y) => {
            let f = |v: Value| match v {
                Value::Int(i) => i as f64,
                Value::Float(f) | Value::Complex(f, _) => f,
            };
            Value::Float(f(x) + f(y))
        }
    };
    encode_in_source(d, v)
}

/// The float32 bit pattern of each of the 256 codes of a one-byte float format, as ml_dtypes'
/// `astype(np.float32)` gives it (NaN is the quiet NaN carrying the code's sign).
pub fn byte_float_table(d: DType) -> &'static [u32; 256] {
    static TABLES: [OnceLock<[u32; 256]>; 7] = [const { OnceLock::new() }; 7];
    let (slot, fmt) = match d {
        DType::F8E4M3FN => (
            0,
            Format {
                exp: 4,
                man: 3,
                bias: 7,
                kind: NanKind::AllOnes,
            },
        ),
        DType::F8E5M2 => (
            1,
            Format {
                exp: 5,
                man: 2,
                bias: 15,
                kind: NanKind::Ieee,
            },
        ),
        DType::F8E4M3FNUZ => (
            2,
            Format {
                exp: 4,
                man: 3,
                bias: 8,
                kind: NanKind::NegZero,
            },
        ),
        DType::F8E5M2FNUZ => (
            3,
            Format {
                exp: 5,
                man: 2,
                bias: 16,
                kind: NanKind::NegZero,
            },
        ),
        DType::F8E4M3B11FNUZ => (
            4,
            Format {
                exp: 4,
                man: 3,
                bias: 11,
                kind: NanKind::NegZero,
            },
        ),
        DType::F8E8M0FNU => (
            5,
            Format {
                exp: 8,
                man: 0,
                bias: 127,
                kind: NanKind::Unsigned,
            },
        ),
        DType::F4E2M1FN => (
            6,
            Format {
                exp: 2,
                man: 1,
                bias: 1,
                kind: NanKind::None,
            },
        ),
        _ => panic!("{d} is not a one-byte float format"),
    };
    TABLES[slot].get_or_init(|| std::array::from_fn(|code| fmt.to_f32(code as u8).to_bits()))
}

#[derive(Clone, Copy)]
enum NanKind {
    /// IEEE-style: the top exponent is infinity (zero mantissa) or NaN.
    Ieee,
    /// "fn": no infinities; only the all-ones code is NaN.
    AllOnes,
    /// "fnuz": no infinities, no negative zero; the negative-zero code is the only NaN.
    NegZero,
    /// e8m0: no sign bit; 0xFF is NaN.
    Unsigned,
    /// fp4: neither infinities nor NaN.
    None,
}

#[derive(Clone, Copy)]
struct Format {
    exp: u32,
    man: u32,
    bias: i32,
    kind: NanKind,
}

impl Format {
    fn to_f32(self, code: u8) -> f32 {
        let width = 1 + self.exp + self.man;
        let signed = !matches!(self.kind, NanKind::Unsigned);
        let bits = if width >= 8 {
            code
        } else {
            code & ((1u16 << width) - 1) as u8
        };
        let total = if signed { width } else { self.exp + self.man };
        let negative = signed && (bits >> (total - 1)) & 1 == 1;
        let e = ((bits >> self.man) as u32) & ((1 << self.exp) - 1);
        let m = (bits as u32) & ((1 << self.man) - 1);
        let top = (1 << self.exp) - 1;
        let nan = || if negative { -f32::NAN } else { f32::NAN };
        match self.kind {
            NanKind::Ieee if e == top => {
                return if m == 0 {
                    if negative {
                        f32::NEG_INFINITY
                    } else {
                        f32::INFINITY
                    }
                } else {
                    nan()
                }
            }
            NanKind::AllOnes if e == top && m == (1 << self.man) - 1 => return nan(),
            NanKind::NegZero if negative && e == 0 && m == 0 => return nan(),
            NanKind::Unsigned if e == top => return f32::NAN,
            _ => {}
        }
        let magnitude = if matches!(self.kind, NanKind::Unsigned) {
            // e8m0 is a bare exponent: no zero, no subnormals, no implicit mantissa bit.
            2f64.powi(e as i32 - self.bias)
        } else if e == 0 {
            m as f64 * 2f64.powi(1 - self.bias - self.man as i32)
        } else {
            ((1u64 << self.man) + m as u64) as f64
                * 2f64.powi(e as i32 - self.bias - self.man as i32)
        };
        let v = magnitude as f32; // exact: every one of these values is a float32
        if negative {
            -v
        } else {
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float8_tables_hit_the_documented_extremes() {
        let t = byte_float_table(DType::F8E4M3FN);
        assert_eq!(f32::from_bits(t[0x7e]), 448.0);
        assert!(f32::from_bits(t[0x7f]).is_nan());
        assert_eq!(f32::from_bits(t[0x01]), 2f32.powi(-9));
        let t = byte_float_table(DType::F8E5M2);
        assert_eq!(f32::from_bits(t[0x7b]), 57344.0);
        assert_eq!(f32::from_bits(t[0x7c]), f32::INFINITY);
        let t = byte_float_table(DType::F8E4M3FNUZ);
        assert!(f32::from_bits(t[0x80]).is_nan());
        assert_eq!(f32::from_bits(t[0x7f]), 240.0);
        let t = byte_float_table(DType::F8E8M0FNU);
        assert_eq!(f32::from_bits(t[127]), 1.0);
        assert_eq!(f32::from_bits(t[0]), 2f32.powi(-127));
        let t = byte_float_table(DType::F4E2M1FN);
        assert_eq!(f32::from_bits(t[0x07]), 6.0);
        assert_eq!(f32::from_bits(t[0x0f]), -6.0);
        assert_eq!(f32::from_bits(t[0x02]), 1.0);
    }

    #[test]
    fn big_endian_complex_swaps_each_half() {
        let c = Converter::new(DType::C64, Plan::Numeric(NpyType::C64), true).unwrap();
        let mut out = Vec::new();
        let mut be = 1.5f32.to_be_bytes().to_vec();
        be.extend_from_slice(&(-2.0f32).to_be_bytes());
        c.convert(&be, &mut out).unwrap();
        assert_eq!(&out[..4], &1.5f32.to_le_bytes());
        assert_eq!(&out[4..], &(-2.0f32).to_le_bytes());
    }

    #[test]
    fn float16_rounding_uses_every_bit_of_the_source() {
        // 1 + 2^-11 + 2^-23 lies just above the midpoint between 1 and 1 + 2^-10
        assert_eq!(
            f32_to_f16_bits((1.0f32 + 2f32.powi(-11) + 2f32.powi(-23)).to_bits()),
            0x3c01
        );
        assert_eq!(
            f64_to_f16_bits((1.0f64 + 2f64.powi(-11) + 2f64.powi(-40)).to_bits()),
            0x3c01
        );
        assert_eq!(f32_to_f16_bits(65504.0f32.to_bits()), 0x7bff);
        assert_eq!(f32_to_f16_bits(65520.0f32.to_bits()), 0x7c00); // rounds to infinity
        assert_eq!(f32_to_f16_bits(2f32.powi(-24).to_bits()), 0x0001);
        assert_eq!(f32_to_f16_bits(2f32.powi(-25).to_bits()), 0x0000); // a tie, to even
        assert_eq!(f32_to_f16_bits((2f32.powi(-25) * 1.5).to_bits()), 0x0001);
        assert_eq!(f32_to_f16_bits(0x7f80_0001), 0x7c01); // NaN stays NaN
        assert_eq!(f32_to_f16_bits(0xffc0_0000), 0xfe00);
        // every float16 survives a round trip through float32
        for h in 0..=u16::MAX {
            let f = half::f16::from_bits(h);
            if !f.is_nan() {
                assert_eq!(f32_to_f16_bits(f.to_f32().to_bits()), h);
                assert_eq!(f64_to_f16_bits(f.to_f64().to_bits()), h);
            }
        }
    }

    #[test]
    fn casts_round_to_nearest_even_like_numpy() {
        let c = Converter::new(DType::F32, Plan::Numeric(NpyType::F16), false).unwrap();
        let mut out = Vec::new();
        // 1 + 2^-11 is exactly between two halves: ties to even gives 1.0
        c.convert(&(1.0f32 + 2f32.powi(-11)).to_le_bytes(), &mut out)
            .unwrap();
        assert_eq!(out, 0x3c00u16.to_le_bytes());
        let c = Converter::new(DType::I64, Plan::Numeric(NpyType::I8), false).unwrap();
        let mut out = Vec::new();
        c.convert(&300i64.to_le_bytes(), &mut out).unwrap();
        assert_eq!(out, [44]);
    }
}

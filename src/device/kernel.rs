//! Which WGSL kernel (`kernels.wgsl`) performs a conversion on the GPU, derived from the one
//! description of each conversion, [`transform::Op`](crate::transform::Op): a total `match`
//! on the op, so a new op fails to compile here until it is given a kernel or a reason not to
//! have one. Pure data, built with or without the `gpu` feature; `gpu.rs` runs what it picks.

use crate::dtype::DType;
use crate::transform::{Converter, Op};

/// Every entry point of `kernels.wgsl` a [`Kernel`] can name; `gpu.rs` compiles each once.
pub const ENTRIES: [&str; 7] = [
    "widen16",
    "lut8",
    "narrow16",
    "narrow64",
    "bytes8",
    "intcast",
    "swap_only",
];

/// What a tensor needs from the device: a kernel and its parameters (the uniform block of
/// `kernels.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// The entry point, one of [`ENTRIES`].
    pub entry: &'static str,
    /// Bytes per source element.
    pub in_size: usize,
    /// Bytes per output element.
    pub out_size: usize,
    /// The variant of the entry point: the sub-byte width, or which 16-bit format.
    pub mode: u32,
    pub flags: u32,
    /// The byte-order unit to reverse before converting, or 0.
    pub swap: u32,
    /// The one-byte float format whose table `lut8` reads.
    pub lut: Option<DType>,
}

impl Kernel {
    /// The kernel that performs `conv`'s op, or why the host does it instead (shown in
    /// `--stats`).
    pub fn for_conversion(conv: &Converter) -> Result<Kernel, String> {
        let (src, out) = (conv.src(), conv.out());
        let k = |entry, mode, flags| Kernel {
            entry,
            in_size: src.item_size().unwrap_or(1),
            out_size: out.size(),
            mode,
            flags,
            swap: conv.swap_unit().unwrap_or(0) as u32,
            lut: None,
        };
        Ok(match conv.op() {
            Op::Copy if conv.swap_unit().is_none() => {
                return Err("no device operation (a plain copy)".into())
            }
            Op::Copy => k("swap_only", 0, 0),
            Op::SignExtend(bits) => k("bytes8", bits, 1),
            Op::Mask(bits) => k("bytes8", bits, 0),
            Op::Bf16ToF32 => k("widen16", 0, 0),
            Op::F16ToF32 => k("widen16", 1, 0),
            Op::Byte8ToF32 => Kernel {
                lut: Some(src),
                ..k("lut8", 0, 0)
            },
            Op::F32ToF16 => k("narrow16", 0, 0),
            Op::Bf16ToF16 => k("narrow16", 1, 0),
            Op::F64ToF32 => k("narrow64", 0, 0),
            Op::SmallIntCast {
                signed,
                from_bool,
                to_bool,
            } => k(
                "intcast",
                0,
                signed as u32 | (from_bool as u32) << 1 | (to_bool as u32) << 2,
            ),
            // 64-bit integers and complex numbers do not fit the kernels' 32-bit words, and
            // float-to-int saturation is left to the host's one implementation.
            Op::Cast => return Err(format!("no GPU kernel for {src} to {}", out.descr())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::{NpyType, Plan};

    const OUTPUTS: [NpyType; 14] = [
        NpyType::Bool,
        NpyType::I8,
        NpyType::U8,
        NpyType::I16,
        NpyType::U16,
        NpyType::I32,
        NpyType::U32,
        NpyType::I64,
        NpyType::U64,
        NpyType::F16,
        NpyType::F32,
        NpyType::F64,
        NpyType::C64,
        NpyType::C128,
    ];

    /// Every converter the host can build: each source dtype, each plan, each byte order.
    fn every_converter() -> Vec<Converter> {
        let mut all = Vec::new();
        for src in DType::ALL {
            for t in OUTPUTS {
                for plan in [Plan::Numeric(t), Plan::Bits(t)] {
                    for big_endian in [false, true] {
                        if let Ok(c) = Converter::new(src, plan, big_endian) {
                            all.push(c);
                        }
                    }
                }
            }
        }
        all
    }

    #[test]
    fn every_host_conversion_has_a_kernel_or_a_reason() {
        let all = every_converter();
        // the table is not trivially small: each kind of op is reached
        for op in [
            Op::Copy,
            Op::SignExtend(4),
            Op::SignExtend(2),
            Op::Mask(4),
            Op::Mask(2),
            Op::Bf16ToF32,
            Op::F16ToF32,
            Op::Byte8ToF32,
            Op::F32ToF16,
            Op::Bf16ToF16,
            Op::F64ToF32,
            Op::Cast,
        ] {
            assert!(all.iter().any(|c| c.op() == op), "{op:?} is never chosen");
        }
        assert!(all
            .iter()
            .any(|c| matches!(c.op(), Op::SmallIntCast { to_bool: true, .. })));
        let shader = include_str!("kernels.wgsl");
        for c in &all {
            let what = format!("{} -> {} ({:?})", c.src(), c.out().descr(), c.op());
            match Kernel::for_conversion(c) {
                Ok(k) => {
                    assert!(ENTRIES.contains(&k.entry), "{what}: {}", k.entry);
                    assert!(shader.contains(&format!("fn {}(", k.entry)), "{what}");
                    assert_eq!(Some(k.in_size), c.src().item_size(), "{what}");
                    assert_eq!(k.out_size, c.out().size(), "{what}");
                    assert_eq!(k.swap as usize, c.swap_unit().unwrap_or(0), "{what}");
                    assert_eq!(k.lut.is_some(), c.op() == Op::Byte8ToF32, "{what}");
                    // the kernels work on 32-bit words: no element wider than one, except
                    // float64 in and whole elements merely reversed
                    assert!(
                        k.in_size <= 4 || c.op() == Op::F64ToF32 || k.entry == "swap_only",
                        "{what}"
                    );
                    assert!(k.out_size <= 4 || k.entry == "swap_only", "{what}");
                }
                Err(why) => {
                    assert!(
                        c.op() == Op::Cast || (c.op() == Op::Copy && c.swap_unit().is_none()),
                        "{what} has a GPU-shaped op but no kernel: {why}"
                    );
                    assert!(!why.is_empty());
                }
            }
        }
    }

    #[test]
    fn wide_and_float_to_int_casts_and_plain_copies_stay_on_the_host() {
        let kernel = |s, t, be| Kernel::for_conversion(&Converter::new(s, t, be).unwrap());
        let numeric = Plan::Numeric;
        assert_eq!(
            kernel(DType::I64, numeric(NpyType::I32), false),
            Err("no GPU kernel for int64 to <i4".into())
        );
        assert!(kernel(DType::F32, numeric(NpyType::I32), false).is_err());
        assert!(kernel(DType::I32, numeric(NpyType::F32), false).is_err());
        assert!(kernel(DType::I32, numeric(NpyType::I64), false).is_err());
        assert_eq!(
            kernel(DType::F32, numeric(NpyType::F32), false),
            Err("no device operation (a plain copy)".into())
        );
        assert_eq!(
            kernel(DType::BF16, Plan::Bits(NpyType::U16), false),
            Err("no device operation (a plain copy)".into())
        );
        assert_eq!(
            kernel(DType::F32, numeric(NpyType::F32), true).map(|k| k.entry),
            Ok("swap_only")
        );
        assert_eq!(
            kernel(DType::C64, numeric(NpyType::C64), true).map(|k| k.swap),
            Ok(4)
        );
        let to_bool = kernel(DType::I16, numeric(NpyType::Bool), true).unwrap();
        assert_eq!(
            (to_bool.entry, to_bool.flags, to_bool.swap),
            ("intcast", 0b101, 2)
        );
    }
}

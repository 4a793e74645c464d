//! The one dtype model: every TensorFlow and safetensors element type, its size in the source,
//! its name as users know it, and which NumPy type the default policy writes it as.

use std::fmt;

/// Declares [`DType`] and [`DType::ALL`] from one list, so that the two cannot fall out of step.
macro_rules! dtypes {
    ($($variant:ident),* $(,)?) => {
        /// A source element type, named as TensorFlow / ml_dtypes name it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum DType {
            $($variant),*
        }

        impl DType {
            /// Every dtype, in declaration order.
            pub const ALL: [DType; [$(stringify!($variant)),*].len()] = [$(DType::$variant),*];
        }
    };
}

dtypes![
    Bool,
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F16,
    BF16,
    F32,
    F64,
    C64,
    C128,
    F8E4M3FN,
    F8E5M2,
    F8E4M3FNUZ,
    F8E5M2FNUZ,
    F8E4M3B11FNUZ,
    F8E8M0FNU,
    F4E2M1FN,
    I4,
    U4,
    I2,
    U2,
    QInt8,
    QUInt8,
    QInt16,
    QUInt16,
    QInt32,
    String,
    Resource,
    Variant,
];

use DType::*;

impl DType {
    /// The name `list` prints: TensorFlow's / ml_dtypes' spelling.
    pub fn name(self) -> &'static str {
        match self {
            Bool => "bool",
            I8 => "int8",
            U8 => "uint8",
            I16 => "int16",
            U16 => "uint16",
            I32 => "int32",
            U32 => "uint32",
            I64 => "int64",
            U64 => "uint64",
            F16 => "float16",
            BF16 => "bfloat16",
            F32 => "float32",
            F64 => "float64",
            C64 => "complex64",
            C128 => "complex128",
            F8E4M3FN => "float8_e4m3fn",
            F8E5M2 => "float8_e5m2",
            F8E4M3FNUZ => "float8_e4m3fnuz",
            F8E5M2FNUZ => "float8_e5m2fnuz",
            F8E4M3B11FNUZ => "float8_e4m3b11fnuz",
            F8E8M0FNU => "float8_e8m0fnu",
            F4E2M1FN => "float4_e2m1fn",
            I4 => "int4",
            U4 => "uint4",
            I2 => "int2",
            U2 => "uint2",
            QInt8 => "qint8",
            QUInt8 => "quint8",
            QInt16 => "qint16",
            QUInt16 => "quint16",
            QInt32 => "qint32",
            String => "string",
            Resource => "resource",
            Variant => "variant",
        }
    }

    /// Bytes per element in `tensor_content`, checkpoints and safetensors; `None` for the
    /// variable-length types.
    pub fn item_size(self) -> Option<usize> {
        Some(match self {
            Bool | I8 | U8 | QInt8 | QUInt8 | I4 | U4 | I2 | U2 | F4E2M1FN => 1,
            F8E4M3FN | F8E5M2 | F8E4M3FNUZ | F8E5M2FNUZ | F8E4M3B11FNUZ | F8E8M0FNU => 1,
            I16 | U16 | F16 | BF16 | QInt16 | QUInt16 => 2,
            I32 | U32 | F32 | QInt32 => 4,
            I64 | U64 | F64 | C64 => 8,
            C128 => 16,
            String | Resource | Variant => return None,
        })
    }

    /// The size of one byte-order unit: complex numbers swap each half separately.
    pub fn swap_unit(self) -> usize {
        match self {
            C64 => 4,
            C128 => 8,
            _ => self.item_size().unwrap_or(1),
        }
    }

    /// TensorFlow's `DataType` enum (types.proto); `*_REF` values map to their base type.
    pub fn from_tf(code: i32) -> Option<DType> {
        let code = if code > 100 { code - 100 } else { code };
        Some(match code {
            1 => F32,
            2 => F64,
            3 => I32,
            4 => U8,
            5 => I16,
            6 => I8,
            7 => String,
            8 => C64,
            9 => I64,
            10 => Bool,
            11 => QInt8,
            12 => QUInt8,
            13 => QInt32,
            14 => BF16,
            15 => QInt16,
            16 => QUInt16,
            17 => U16,
            18 => C128,
            19 => F16,
            20 => Resource,
            21 => Variant,
            22 => U32,
            23 => U64,
            24 => F8E5M2,
            25 => F8E4M3FN,
            26 => F8E4M3FNUZ,
            27 => F8E4M3B11FNUZ,
            28 => F8E5M2FNUZ,
            29 => I4,
            30 => U4,
            31 => I2,
            32 => U2,
            33 => F4E2M1FN,
            _ => return None,
        })
    }

    /// A safetensors dtype string. F4 and F6 pack several elements per byte in an order
    /// safetensors does not specify, so they are deliberately absent (an unsupported dtype).
    pub fn from_safetensors(s: &str) -> Option<DType> {
        Some(match s {
            "BOOL" => Bool,
            "U8" => U8,
            "I8" => I8,
            "I16" => I16,
            "U16" => U16,
            "F16" => F16,
            "BF16" => BF16,
            "I32" => I32,
            "U32" => U32,
            "F32" => F32,
            "C64" => C64,
            "F64" => F64,
            "I64" => I64,
            "U64" => U64,
            "F8_E5M2" => F8E5M2,
            "F8_E4M3" => F8E4M3FN,
            "F8_E4M3FNUZ" => F8E4M3FNUZ,
            "F8_E5M2FNUZ" => F8E5M2FNUZ,
            "F8_E8M0" => F8E8M0FNU,
            _ => return None,
        })
    }

    /// Parses the spellings `--cast` accepts: `f32`, `float32`, `bf16`, `i64`, `u8`, `bool`, ...
    pub fn parse_user(s: &str) -> Option<DType> {
        let s = s.to_ascii_lowercase();
        let short = match s.as_str() {
            "f16" | "half" => Some(F16),
            "bf16" => Some(BF16),
            "f32" | "float" => Some(F32),
            "f64" | "double" => Some(F64),
            "i8" => Some(I8),
            "i16" => Some(I16),
            "i32" | "int" => Some(I32),
            "i64" => Some(I64),
            "u8" => Some(U8),
            "u16" => Some(U16),
            "u32" => Some(U32),
            "u64" => Some(U64),
            "c64" => Some(C64),
            "c128" => Some(C128),
            "f8e4m3" | "f8_e4m3" | "f8e4m3fn" => Some(F8E4M3FN),
            "f8e5m2" | "f8_e5m2" => Some(F8E5M2),
            _ => None,
        };
        short.or_else(|| DType::ALL.into_iter().find(|d| d.name() == s))
    }

    pub fn is_float8(self) -> bool {
        matches!(
            self,
            F8E4M3FN | F8E5M2 | F8E4M3FNUZ | F8E5M2FNUZ | F8E4M3B11FNUZ | F8E8M0FNU | F4E2M1FN
        )
    }

    pub fn is_complex(self) -> bool {
        matches!(self, C64 | C128)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An element type a `.npy` file can hold without extensions, as NumPy spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NpyType {
    Bool,
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F16,
    F32,
    F64,
    C64,
    C128,
    /// Fixed-width bytes `|S<n>`.
    Bytes(usize),
}

impl NpyType {
    pub fn descr(self) -> std::string::String {
        match self {
            NpyType::Bool => "|b1".into(),
            NpyType::I8 => "|i1".into(),
            NpyType::U8 => "|u1".into(),
            NpyType::I16 => "<i2".into(),
            NpyType::U16 => "<u2".into(),
            NpyType::I32 => "<i4".into(),
            NpyType::U32 => "<u4".into(),
            NpyType::I64 => "<i8".into(),
            NpyType::U64 => "<u8".into(),
            NpyType::F16 => "<f2".into(),
            NpyType::F32 => "<f4".into(),
            NpyType::F64 => "<f8".into(),
            NpyType::C64 => "<c8".into(),
            NpyType::C128 => "<c16".into(),
            NpyType::Bytes(n) => format!("|S{n}"),
        }
    }

    pub fn size(self) -> usize {
        match self {
            NpyType::Bool | NpyType::I8 | NpyType::U8 => 1,
            NpyType::I16 | NpyType::U16 | NpyType::F16 => 2,
            NpyType::I32 | NpyType::U32 | NpyType::F32 => 4,
            NpyType::I64 | NpyType::U64 | NpyType::F64 | NpyType::C64 => 8,
            NpyType::C128 => 16,
            NpyType::Bytes(n) => n,
        }
    }

    /// The `.npy` type a source dtype is written as when no policy option changes it; `None`
    /// for the dtypes that have no faithful NumPy form on their own (strings are sized later).
    pub fn natural(d: DType) -> Option<NpyType> {
        Some(match d {
            Bool => NpyType::Bool,
            I8 | QInt8 | I4 | I2 => NpyType::I8,
            U8 | QUInt8 | U4 | U2 => NpyType::U8,
            I16 | QInt16 => NpyType::I16,
            U16 | QUInt16 => NpyType::U16,
            I32 | QInt32 => NpyType::I32,
            U32 => NpyType::U32,
            I64 => NpyType::I64,
            U64 => NpyType::U64,
            F16 => NpyType::F16,
            F32 => NpyType::F32,
            F64 => NpyType::F64,
            C64 => NpyType::C64,
            C128 => NpyType::C128,
            BF16 | F8E4M3FN | F8E5M2 | F8E4M3FNUZ | F8E5M2FNUZ | F8E4M3B11FNUZ | F8E8M0FNU
            | F4E2M1FN => NpyType::F32,
            String | Resource | Variant => return None,
        })
    }

    /// The `.npy` type of a `--cast` target.
    pub fn cast_target(d: DType) -> Option<NpyType> {
        match d {
            BF16 | F8E4M3FN | F8E5M2 => None,
            _ => NpyType::natural(d),
        }
    }
}

/// How bfloat16 and the float8 family are written: widened to `<f4`, or as their raw bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NarrowFloatPolicy {
    /// Widen losslessly to float32 (`<f4`).
    #[default]
    F32,
    /// Keep the raw bit pattern as an unsigned integer (`<u2` for bf16, `|u1` for float8).
    Bits,
}

/// The default dtype policy of the contract, plus the user's `--bf16`, `--f8` and `--cast`.
#[derive(Clone, Debug, Default)]
pub struct DtypePolicy {
    pub bf16: NarrowFloatPolicy,
    pub f8: NarrowFloatPolicy,
    pub casts: Vec<(DType, DType)>,
}

/// What an element of a given source dtype becomes in the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Element-wise conversion into a fixed-size NumPy type.
    Numeric(NpyType),
    /// Raw bits kept as an unsigned integer of the same width.
    Bits(NpyType),
    /// Variable-length strings written as `|S<maxlen>`.
    Strings,
    /// No faithful NumPy form.
    Unsupported,
}

impl DtypePolicy {
    pub fn plan(&self, d: DType) -> Plan {
        if d == String {
            return Plan::Strings;
        }
        if let Some(&(_, to)) = self.casts.iter().rev().find(|(from, _)| *from == d) {
            if to == BF16 {
                return Plan::Numeric(NpyType::F32); // unreachable after validation
            }
            if let Some(t) = NpyType::cast_target(to) {
                return Plan::Numeric(t);
            }
        }
        if d == BF16 && self.bf16 == NarrowFloatPolicy::Bits {
            return Plan::Bits(NpyType::U16);
        }
        if d.is_float8() && self.f8 == NarrowFloatPolicy::Bits {
            return Plan::Bits(NpyType::U8);
        }
        match NpyType::natural(d) {
            Some(t) => Plan::Numeric(t),
            None => Plan::Unsupported,
        }
    }
}

/// Parses one `--cast FROM=TO`.
/// The short dtype names `--cast` takes (besides the full names), for its error message.
const CAST_NAMES: &str =
    "f16 bf16 f32 f64 i8 i16 i32 i64 u8 u16 u32 u64 c64 c128 f8e4m3 f8e5m2 bool";

pub fn parse_cast(s: &str) -> Result<(DType, DType), std::string::String> {
    let (from, to) = s
        .split_once('=')
        .ok_or_else(|| format!("expected FROM=TO (e.g. f64=f32), got '{s}'"))?;
    let unknown = |d: &str| {
        format!(
            "unknown dtype '{d}'; valid names: {CAST_NAMES}, or a full name such as float32, int64, bfloat16, float8_e4m3fn"
        )
    };
    let from = DType::parse_user(from.trim()).ok_or_else(|| unknown(from))?;
    let to = DType::parse_user(to.trim()).ok_or_else(|| unknown(to))?;
    if matches!(from, String | Resource | Variant) || from.item_size().is_none() {
        return Err(format!(
            "cannot cast from {from}: only numeric dtypes can be cast"
        ));
    }
    if to != BF16 && NpyType::cast_target(to).is_none() {
        return Err(format!(
            "cannot cast to {to}: the target must be a NumPy numeric type (bool, int8..int64, uint8..uint64, float16, float32, float64, complex64, complex128)"
        ));
    }
    if to == BF16 {
        return Err(
            "cannot cast to bfloat16: NumPy has no bfloat16; cast to f32 or f16, or keep the bits with --bf16 bits"
                .into(),
        );
    }
    if from.is_complex() && !to.is_complex() {
        return Err(format!(
            "cannot cast {from} to {to}: it would drop the imaginary part"
        ));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tf_code_round_trips_through_the_enum_including_ref_types() {
        for code in 1..=33 {
            let d = DType::from_tf(code).expect("every TF 2.21 dtype code is known");
            assert_eq!(DType::from_tf(code + 100), Some(d));
        }
        assert_eq!(DType::from_tf(0), None);
        assert_eq!(DType::from_tf(34), None);
    }

    #[test]
    fn default_policy_widens_bf16_and_float8_and_never_writes_f1() {
        let p = DtypePolicy::default();
        for d in DType::ALL {
            if let Plan::Numeric(t) = p.plan(d) {
                assert_ne!(t.descr(), "<f1");
                assert!(!t.descr().contains('V'));
            }
        }
        assert_eq!(p.plan(BF16), Plan::Numeric(NpyType::F32));
        assert_eq!(p.plan(F8E5M2), Plan::Numeric(NpyType::F32));
        assert_eq!(p.plan(QInt16), Plan::Numeric(NpyType::I16));
        assert_eq!(p.plan(Resource), Plan::Unsupported);
    }

    #[test]
    fn cast_parsing_accepts_short_and_long_names_and_refuses_lossy_complex() {
        assert_eq!(parse_cast("f64=f32"), Ok((F64, F32)));
        assert_eq!(parse_cast("bfloat16=float16"), Ok((BF16, F16)));
        assert!(parse_cast("c64=f32").is_err());
        assert!(parse_cast("f32=bf16").is_err());
        assert!(parse_cast("string=f32").is_err());
        assert!(parse_cast("f32").is_err());
    }
}

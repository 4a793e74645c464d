//! Unit tests of the HDF5 reader's type mapping and sniffing (`mod.rs`).

use super::*;
use hdf5_reader::{CompoundField, EnumMember};

fn input(head: Vec<u8>) -> Input {
    Input {
        path: "x.bin".into(),
        display: "x.bin".into(),
        stem: "x".into(),
        is_dir: false,
        data: None,
        head,
        files: vec![],
    }
}

#[test]
fn the_signature_is_found_at_the_start_or_after_a_user_block() {
    assert_eq!(sniff(&input(MAGIC.to_vec())), Sniff::Yes);
    let mut ub = vec![0u8; 512];
    ub.extend_from_slice(MAGIC);
    assert_eq!(sniff(&input(ub)), Sniff::Yes);
    let mut odd = vec![0u8; 100];
    odd.extend_from_slice(MAGIC);
    assert_eq!(sniff(&input(odd)), Sniff::No);
    assert_eq!(sniff(&input(b"PK\x03\x04".to_vec())), Sniff::No);
}

fn float(size: u8, byte_order: ByteOrder) -> Datatype {
    Datatype::FloatingPoint { size, byte_order }
}

#[test]
fn h5py_bool_enum_complex_compound_and_keras_bf16_are_recognised() {
    let int8 = Box::new(Datatype::FixedPoint {
        size: 1,
        signed: true,
        byte_order: ByteOrder::LittleEndian,
    });
    let member = |name: &str, v: u8| EnumMember {
        name: name.into(),
        value: vec![v],
    };
    let bool_enum = Datatype::Enum {
        base: int8.clone(),
        members: vec![member("FALSE", 0), member("TRUE", 1)],
    };
    assert!(matches!(
        classify(&bool_enum, false),
        Elem::Numeric {
            dtype: DType::Bool,
            ..
        }
    ));
    let other_enum = Datatype::Enum {
        base: int8,
        members: vec![member("A", 0), member("B", 1)],
    };
    assert!(matches!(
        classify(&other_enum, false),
        Elem::Numeric {
            dtype: DType::I8,
            ..
        }
    ));
    let field = |name: &str, byte_offset, bo| CompoundField {
        name: name.into(),
        byte_offset,
        datatype: float(8, bo),
    };
    let c128 = Datatype::Compound {
        size: 16,
        fields: vec![
            field("r", 0, ByteOrder::BigEndian),
            field("i", 8, ByteOrder::BigEndian),
        ],
    };
    assert!(matches!(
        classify(&c128, false),
        Elem::Numeric {
            dtype: DType::C128,
            big_endian: true,
            ..
        }
    ));
    let pair = Datatype::Compound {
        size: 16,
        fields: vec![
            field("a", 0, ByteOrder::LittleEndian),
            field("b", 8, ByteOrder::LittleEndian),
        ],
    };
    assert!(matches!(classify(&pair, false), Elem::Unsupported(_)));
    let opaque = Datatype::Opaque {
        size: 2,
        tag: String::new(),
    };
    assert!(matches!(
        classify(&opaque, true),
        Elem::Numeric {
            dtype: DType::BF16,
            ..
        }
    ));
    assert!(matches!(classify(&opaque, false), Elem::Unsupported(_)));
}

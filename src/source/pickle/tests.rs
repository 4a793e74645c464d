use super::*;
use crate::dtype::DType;

#[test]
fn refuses_os_system_by_name() {
    // protocol 2: GLOBAL posix system, a string, TUPLE1, REDUCE, STOP
    let p = b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00echoq\x00\x85R.";
    let e = format!("{:#}", load_slice(p).unwrap_err());
    assert!(e.contains("posix.system"), "{e}");
    let p = b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.";
    let e = format!("{:#}", load_slice(p).unwrap_err());
    assert!(e.contains("builtins.eval"), "{e}");
}

#[test]
fn builds_dicts_lists_and_numbers() {
    // {'a': [1, -2, 300, 2**40], 'b': 1.5} at protocol 2
    let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffM,\x01\x8a\x06\x00\x00\x00\x00\x00\x01eX\x01\x00\x00\x00bq\x03G?\xf8\x00\x00\x00\x00\x00\x00u.";
    let v = load_slice(p).unwrap();
    let Value::Dict(d) = &v else { panic!() };
    let d = d.borrow();
    assert_eq!(d.len(), 2);
    let Value::List(l) = &d[0].1 else { panic!() };
    let got: Vec<i64> = l
        .borrow()
        .iter()
        .map(|v| match v {
            Value::Int(i) => *i,
            _ => panic!(),
        })
        .collect();
    assert_eq!(got, vec![1, -2, 300, 1 << 40]);
    assert!(matches!(d[1].1, Value::Float(f) if f == 1.5));
}

#[test]
fn truncation_and_bad_memo_are_errors() {
    assert!(load_slice(b"\x80\x02X\xff\xff\xff\x7fab").is_err());
    assert!(load_slice(b"\x80\x02h\x05.").is_err());
    assert!(load_slice(b"\x80\x02.").is_err());
    assert!(load_slice(b"\x80\x09N.").is_err());
}

#[test]
fn deep_nesting_drops_without_recursion() {
    let mut p = b"\x80\x02".to_vec();
    p.extend(std::iter::repeat_n(b']', 200_000));
    p.extend(std::iter::repeat_n(b'a', 199_999));
    p.push(b'.');
    assert!(load_slice(&p).is_ok());
}

#[test]
fn rebuilds_a_tensor_from_a_storage() {
    // _rebuild_tensor_v2(('storage', FloatStorage, '0', 'cpu', 6), 1, (2, 2), (3, 1), False, OrderedDict())
    let mut p = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(".to_vec();
    p.extend(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x06tQ");
    p.extend(b"K\x01K\x02K\x02\x86K\x03K\x01\x86\x89ccollections\nOrderedDict\n)RtR.");
    let Value::Tensor(ref t) = load_slice(&p).unwrap() else {
        panic!()
    };
    assert_eq!(t.storage.key, "0");
    assert_eq!(t.storage.numel, 6);
    assert_eq!(t.dtype.dtype, Some(DType::F32));
    assert_eq!(
        (t.offset, &t.size[..], &t.stride[..]),
        (1, &[2, 2][..], &[3, 1][..])
    );
}

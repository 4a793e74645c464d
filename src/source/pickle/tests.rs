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
fn getattr_reads_tensor_ops_as_records_and_refuses_anything_else() {
    // getattr(torch._C._VariableFunctionsClass, 'tanh'): how a module holding torch.tanh pickles
    let ok = b"\x80\x02c__builtin__\ngetattr\nctorch._C\n_VariableFunctionsClass\nX\x04\x00\x00\x00tanh\x86R.";
    let v = load_slice(ok).unwrap();
    let Value::Record(r) = &v else { panic!() };
    assert_eq!(&*r.class, "torch._C._VariableFunctionsClass.tanh");
    // getattr(<a record>, 'load_hook'): a bound method of an object read as data
    let hook = b"\x80\x02c__builtin__\ngetattr\nctransformers.models.mamba\nMamba\n)\x81X\x09\x00\x00\x00load_hook\x86R.";
    let v = load_slice(hook).unwrap();
    let Value::Record(r) = &v else { panic!() };
    assert_eq!(&*r.class, "transformers.models.mamba.Mamba.load_hook");
    // getattr(object, '__subclasses__') and a dunder of an op namespace stay refused
    for p in [
        &b"\x80\x02c__builtin__\ngetattr\nc__builtin__\nobject\nX\x0e\x00\x00\x00__subclasses__\x86R."[..],
        &b"\x80\x02c__builtin__\ngetattr\nctorch._C\nTensorBase\nX\x0b\x00\x00\x00__globals__\x86R."[..],
    ] {
        let e = format!("{:#}", load_slice(p).unwrap_err());
        assert!(e.contains("builtins.getattr"), "{e}");
    }
    // --weights-only refuses getattr by name
    let opts = Options {
        strict: true,
        ..Options::default()
    };
    let e = match load_with(&mut &ok[..], &opts) {
        Ok(_) => panic!("getattr accepted with --weights-only"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("getattr"), "{e}");
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

fn strict() -> Options {
    Options {
        strict: true,
        ..Default::default()
    }
}

#[test]
fn classes_become_records_unless_strict() {
    // __main__.Net.__new__(Net), BUILD {'a': 1}, then APPEND on a list subclass record
    let p = b"\x80\x02c__main__\nNet\n)\x81}X\x01\x00\x00\x00aK\x01sb.";
    let v = load_slice(p).unwrap();
    let Value::Record(r) = &v else {
        panic!("not a record")
    };
    assert_eq!(&*r.class, "__main__.Net");
    assert!(matches!(r.attribute("a"), Some(Value::Int(1))));
    let e = format!("{:#}", load_with(&mut &p[..], &strict()).err().unwrap());
    assert!(
        e.contains("__main__.Net") && e.contains("weights_only"),
        "{e}"
    );
    // REDUCE keeps the call's arguments
    let p = b"\x80\x02cargparse\nNamespace\nK\x07\x85R.";
    let v = load_slice(p).unwrap();
    let Value::Record(r) = &v else {
        panic!("not a record")
    };
    assert!(matches!(r.args[..], [Value::Int(7)]));
}

#[test]
fn numpy_arrays_are_built_and_object_arrays_refused() {
    // _reconstruct(ndarray, (0,), b'b') BUILD (1, (2,), dtype('i2') BUILD (3, '>', ...), False, b'\x00\x01\x00\x02')
    let mut p =
        b"\x80\x03cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
            .to_vec();
    p.extend(b"(K\x01K\x02\x85cnumpy\ndtype\nX\x02\x00\x00\x00i2\x89\x88\x87R(K\x03X\x01\x00\x00\x00>NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb");
    p.extend(b"\x89C\x04\x00\x01\x00\x02tb.");
    let loaded = load(&mut &p[..]).unwrap();
    let Value::NdArray(a) = &loaded.value else {
        panic!("not an array")
    };
    let Value::Tensor(t) = &*a.borrow() else {
        panic!("not built")
    };
    assert_eq!((&t.size[..], t.dtype.dtype), (&[2][..], Some(DType::I16)));
    assert!(t.storage.big_endian);
    assert!(matches!(&loaded.blobs[..], [(_, Blob::Bytes(b))] if &b[..] == b"\x00\x01\x00\x02"));
    // four bytes for three int16s
    let at = p.windows(3).position(|w| w == b"K\x02\x85").unwrap();
    let mut bad = p.clone();
    bad[at + 1] = 3;
    assert!(load_slice(&bad).is_err());
    // numpy.core.multiarray.scalar(dtype('O8'), None)
    let p = b"\x80\x02cnumpy.core.multiarray\nscalar\ncnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87RN\x86R.";
    let e = format!("{:#}", load_slice(p).unwrap_err());
    assert!(e.contains("object arrays"), "{e}");
}

#[test]
fn large_bytes_are_spans_and_the_budget_holds() {
    let n = LAZY_BYTES as u32 + 1;
    let mut p = b"\x80\x03B".to_vec();
    p.extend(n.to_le_bytes());
    p.extend(std::iter::repeat_n(7u8, n as usize));
    p.push(b'.');
    assert!(matches!(load_slice(&p).unwrap(), Value::Span(7, l) if l == n as u64));
    p.truncate(p.len() - 2);
    assert!(load_slice(&p).is_err());
    // one value too many for a tiny budget
    let tiny = Options {
        budget: 48 * 100,
        ..Default::default()
    };
    let mut p = b"\x80\x02N".to_vec();
    p.extend(std::iter::repeat_n(b'2', 200));
    p.push(b'.');
    let e = format!("{:#}", load_with(&mut &p[..], &tiny).err().unwrap());
    assert!(e.contains("memory bomb"), "{e}");
}

#[test]
fn large_latin1_strings_are_decoded_to_a_file_and_other_characters_refused() {
    // _codecs.encode(s, 'latin1') of a string longer than LAZY_BYTES, read from a range: bytes
    // 0..=255 repeated, each above 0x7f written as two UTF-8 bytes
    let want: Vec<u8> = (0..LAZY_BYTES as usize + 1000).map(|i| i as u8).collect();
    let string = |bytes: &[u8]| {
        let mut s = Vec::new();
        for &b in bytes {
            if b < 0x80 {
                s.push(b);
            } else {
                s.extend([0xc0 | (b >> 6), 0x80 | (b & 0x3f)]);
            }
        }
        s
    };
    let pickle = |utf8: &[u8], enc: &[u8]| {
        let mut p = b"\x80\x02c_codecs\nencode\nX".to_vec();
        p.extend((utf8.len() as u32).to_le_bytes());
        p.extend(utf8);
        p.push(b'X');
        p.extend((enc.len() as u32).to_le_bytes());
        p.extend(enc);
        p.extend(b"\x86R.");
        FileRange::from_vec(p)
    };
    let got = load_range(&pickle(&string(&want), b"latin1"), &Options::default()).unwrap();
    let Value::Spooled(r) = &got.value else {
        panic!("{:?}", got.value)
    };
    assert_eq!(r.read_vec(0, r.len() as usize).unwrap(), want);
    // a character above 255 (U+20AC, three bytes), and another encoding
    let mut utf8 = string(&want);
    utf8.extend("\u{20ac}".as_bytes());
    let e = load_range(&pickle(&utf8, b"latin1"), &Options::default())
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("above 255"), "{e:#}");
    let e = load_range(&pickle(&string(&want), b"utf-8"), &Options::default())
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("only latin1"), "{e:#}");
    // read from a stream (no range), the string is read as before
    let p = pickle(&string(&want), b"latin1");
    let bytes = p.read_vec(0, p.len() as usize).unwrap();
    assert!(matches!(&load_slice(&bytes).unwrap(), Value::Bytes(b) if b[..] == want[..]));
}

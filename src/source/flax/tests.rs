use super::*;

/// Walks the whole tree, keeping nothing.
fn parse(data: &FileRange) -> Result<()> {
    walk_tree(data, "t", &mut Leaves::default())
}

fn fixstr(s: &str) -> Vec<u8> {
    let mut v = vec![0xa0 | s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

/// `{"a": {"b": ExtType(1, packb(((2,), "float32", <8 bytes>)))}}`, built by hand.
fn nested() -> Vec<u8> {
    let mut payload = vec![0x93, 0x91, 0x02];
    payload.extend(fixstr("float32"));
    payload.extend([0xc4, 8]);
    payload.extend(1.5f32.to_le_bytes());
    payload.extend((-2.0f32).to_le_bytes());
    let mut v = vec![0x81];
    v.extend(fixstr("a"));
    v.push(0x81);
    v.extend(fixstr("b"));
    v.extend([0xc7, payload.len() as u8, 1]);
    v.extend(payload);
    v
}

#[test]
fn arrays_are_named_by_their_keys_and_stay_ranges_of_the_file() {
    let data = FileRange::from_vec(nested());
    let src = FlaxSource::open("t", vec![], data, "t").unwrap();
    assert_eq!(src.len(), 1);
    let m = src.meta(0).unwrap();
    assert_eq!(
        (m.name.as_str(), m.dtype, m.shape),
        ("a/b", DType::F32, vec![2])
    );
    let range = src.raw_range(0).unwrap();
    let mut want = 1.5f32.to_le_bytes().to_vec();
    want.extend((-2.0f32).to_le_bytes());
    assert_eq!(range.read_vec(0, 8).unwrap(), want);
}

fn input(name: &str, bytes: Vec<u8>) -> Input {
    Input {
        path: name.into(),
        display: name.into(),
        stem: "t".into(),
        is_dir: false,
        head: bytes.clone(),
        data: Some(FileRange::from_vec(bytes)),
        files: vec![],
    }
}

#[test]
fn sniffing_wants_a_parsable_tree_and_leaves_pickles_alone() {
    assert_eq!(sniff(&input("x.bin", nested())), Sniff::Yes);
    let mut cut = nested();
    cut.truncate(cut.len() - 1);
    assert_eq!(sniff(&input("x.bin", cut.clone())), Sniff::Maybe);
    assert_eq!(sniff(&input("x.msgpack", cut)), Sniff::Maybe);
    // a pickle starts with PROTO (0x80), which is also msgpack's empty map
    assert_eq!(sniff(&input("x.pth", vec![0x80])), Sniff::No);
    assert_eq!(sniff(&input("x.pth", vec![0x80, 0x02, b'}'])), Sniff::No);
    assert_eq!(sniff(&input("x.msgpack", vec![0x80])), Sniff::Maybe);
}

#[test]
fn hostile_nesting_and_counts_fail_cleanly() {
    let deep = FileRange::from_vec(vec![0x91; 100_000]);
    let e = parse(&deep).unwrap_err();
    assert!(format!("{e:#}").contains("nest deeper"), "{e:#}");
    let huge_map = FileRange::from_vec(vec![0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, b'k']);
    assert!(format!("{:#}", parse(&huge_map).unwrap_err()).contains("truncated"));
    let huge_bin = FileRange::from_vec(vec![0x81, 0xa1, b'k', 0xc6, 0xff, 0xff, 0xff, 0xff]);
    assert!(format!("{:#}", parse(&huge_bin).unwrap_err()).contains("truncated"));
    let mut cut = nested();
    cut.truncate(cut.len() - 3);
    assert!(parse(&FileRange::from_vec(cut)).is_err());
}

#[test]
fn a_leaf_stays_compact() {
    // A million scalar leaves hold a million of these: the tree is walked, not kept, so the
    // leaves (and their names) are the whole of the memory per leaf.
    assert!(
        std::mem::size_of::<Leaf>() <= 64,
        "{}",
        std::mem::size_of::<Leaf>()
    );
}

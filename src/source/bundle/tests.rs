use super::*;
use crate::dtype::{NpyType, Plan};
use crate::source::proto::{TensorShapeProto, VersionDef};
use crate::transform::Converter;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A block of entries (restart interval 1, so no shared prefixes) plus its trailer.
fn block(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut b = Vec::new();
    let mut restarts = Vec::new();
    for (k, v) in entries {
        restarts.push(b.len() as u32);
        put_varint(&mut b, 0);
        put_varint(&mut b, k.len() as u64);
        put_varint(&mut b, v.len() as u64);
        b.extend_from_slice(k);
        b.extend_from_slice(v);
    }
    if restarts.is_empty() {
        restarts.push(0);
    }
    for r in &restarts {
        b.extend_from_slice(&r.to_le_bytes());
    }
    b.extend_from_slice(&(restarts.len() as u32).to_le_bytes());
    b
}

fn with_trailer(file: &mut Vec<u8>, block: &[u8]) -> (u64, u64) {
    let offset = file.len() as u64;
    file.extend_from_slice(block);
    let crc = crc32c::crc32c_append(crc32c::crc32c(block), &[0]);
    file.push(0);
    file.extend_from_slice(&mask_crc(crc).to_le_bytes());
    (offset, block.len() as u64)
}

/// An `.index` file holding `entries` (sorted by key) in one data block.
fn table(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut file = Vec::new();
    let data = with_trailer(&mut file, &block(entries));
    let meta = with_trailer(&mut file, &block(&[]));
    let mut handle = Vec::new();
    put_varint(&mut handle, data.0);
    put_varint(&mut handle, data.1);
    let index = with_trailer(&mut file, &block(&[(b"\xff".to_vec(), handle)]));
    let mut footer = Vec::new();
    for v in [meta.0, meta.1, index.0, index.1] {
        put_varint(&mut footer, v);
    }
    footer.resize(40, 0);
    footer.extend_from_slice(&0x8b80_fb57u32.to_le_bytes());
    footer.extend_from_slice(&0xdb47_7524u32.to_le_bytes());
    file.extend_from_slice(&footer);
    file
}

fn entry(dtype: i32, shape: &[i64], offset: usize, data: &[u8]) -> Vec<u8> {
    let e = BundleEntryProto {
        dtype,
        shape: Some(TensorShapeProto {
            dim: shape
                .iter()
                .map(|&size| crate::source::proto::Dim { size, name: vec![] })
                .collect(),
            unknown_rank: false,
        }),
        shard_id: 0,
        offset: offset as i64,
        size: data.len() as i64,
        crc32c: mask_crc(crc32c::crc32c(data)),
        slices: vec![],
    };
    e.encode_to_vec()
}

#[test]
fn big_endian_bundles_are_byte_swapped_numbers_and_be_checksummed_string_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("ckpt");
    let f32s: Vec<u8> = [1.5f32, -2.0, 1e-40]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let c64: Vec<u8> = [3.0f32, -4.0]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    // "ab", "": lengths, then the masked CRC of the lengths as big-endian u32s, then bytes
    let mut strings = vec![2u8, 0];
    let mut crc = crc32c::crc32c(&2u32.to_be_bytes());
    crc = crc32c::crc32c_append(crc, &0u32.to_be_bytes());
    strings.extend_from_slice(&mask_crc(crc).to_le_bytes());
    strings.extend_from_slice(b"ab");
    let mut data = Vec::new();
    let (o1, o2) = (data.len(), f32s.len());
    data.extend_from_slice(&f32s);
    data.extend_from_slice(&c64);
    let o3 = data.len();
    data.extend_from_slice(&strings);
    let header = BundleHeaderProto {
        num_shards: 1,
        endianness: 1,
        version: Some(VersionDef {
            producer: 1,
            min_consumer: 0,
            bad_consumers: vec![],
        }),
    };
    let mut strings_entry = BundleEntryProto::decode(&entry(7, &[2], o3, &strings)[..]).unwrap();
    let mut full = 0u32;
    full = crc32c::crc32c_append(full, &2u32.to_be_bytes());
    full = crc32c::crc32c_append(full, &0u32.to_be_bytes());
    full = crc32c::crc32c_append(full, &strings[2..6]);
    full = crc32c::crc32c_append(full, b"ab");
    strings_entry.crc32c = mask_crc(full);
    let entries = vec![
        (vec![], header.encode_to_vec()),
        (b"c".to_vec(), entry(8, &[1], o2, &c64)),
        (b"f".to_vec(), entry(1, &[3], o1, &f32s)),
        (b"s".to_vec(), strings_entry.encode_to_vec()),
    ];
    std::fs::write(dir.path().join("ckpt.index"), table(&entries)).unwrap();
    std::fs::write(dir.path().join("ckpt.data-00000-of-00001"), &data).unwrap();

    let mut src = BundleSource::open(
        "ckpt",
        &prefix,
        BundleOptions {
            verify: true,
            ..Default::default()
        },
    )
    .unwrap();
    let names: Vec<String> = (0..src.len()).map(|i| src.meta(i).unwrap().name).collect();
    assert_eq!(names, ["c", "f", "s"]);
    let read = |src: &mut BundleSource, i: usize, out: NpyType| {
        let meta = src.meta(i).unwrap();
        assert!(meta.big_endian);
        let conv = Converter::new(meta.dtype, Plan::Numeric(out), true).unwrap();
        let mut bytes = Vec::new();
        src.read_dense(i, 4, &mut |c: &[u8]| conv.convert(c, &mut bytes))
            .unwrap();
        bytes
    };
    let want: Vec<u8> = [3.0f32, -4.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    assert_eq!(read(&mut src, 0, NpyType::C64), want);
    let want: Vec<u8> = [1.5f32, -2.0, 1e-40]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    assert_eq!(read(&mut src, 1, NpyType::F32), want);
    let mut got = Vec::new();
    src.read_strings(2, &mut |s: &[u8]| {
        got.push(s.to_vec());
        Ok(())
    })
    .unwrap();
    assert_eq!(got, [b"ab".to_vec(), vec![]]);
}

#[test]
fn slice_keys_match_the_documented_examples() {
    // `00 77 00 01 01 02 80 82 80 7f` -> w, rank 2, [(0,2), (0,full)]
    assert_eq!(
        slice_key("w", &[(0, 2), (0, -1)]),
        [0x00, 0x77, 0x00, 0x01, 0x01, 0x02, 0x80, 0x82, 0x80, 0x7f]
    );
    // `00 656d62 00 01 01 02 84 83 80 84` -> emb, [(4,3), (0,4)]
    assert_eq!(
        slice_key("emb", &[(4, 3), (0, 4)]),
        [0x00, 0x65, 0x6d, 0x62, 0x00, 0x01, 0x01, 0x02, 0x84, 0x83, 0x80, 0x84]
    );
}

#[test]
fn signed_num_increasing_covers_every_length() {
    let enc = |v| {
        let mut o = Vec::new();
        write_signed_num_increasing(&mut o, v);
        o
    };
    assert_eq!(enc(0), [0x80]);
    assert_eq!(enc(63), [0xbf]);
    assert_eq!(enc(-64), [0x40]);
    assert_eq!(enc(64), [0xc0, 0x40]);
    assert_eq!(enc(-65), [0x3f, 0xbf]);
    assert_eq!(enc(8191).len(), 2);
    assert_eq!(enc(8192).len(), 3);
    assert_eq!(enc(i64::MAX).len(), 10);
    // Encodings sort like the numbers they encode.
    let vals = [
        i64::MIN,
        -1 << 40,
        -8193,
        -65,
        -64,
        -1,
        0,
        1,
        63,
        64,
        8191,
        8192,
        1 << 40,
        i64::MAX,
    ];
    for w in vals.windows(2) {
        assert!(enc(w[0]) < enc(w[1]), "{} vs {}", w[0], w[1]);
    }
}

//! Tests of the streaming zip writer: read back by the `zip` crate, CRCs checked.

use super::*;
use std::io::Read;

fn archive(f: File) -> ::zip::ZipArchive<File> {
    ::zip::ZipArchive::new(f).expect("a valid zip archive")
}

fn read_member(z: &mut ::zip::ZipArchive<File>, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    // read_to_end checks the CRC-32 against the data
    z.by_name(name).unwrap().read_to_end(&mut out).unwrap();
    out
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn seekable_stored_and_deflated_and_streamed_members_read_back() {
    for (seekable, compress) in [(true, false), (true, true), (false, false), (false, true)] {
        let mut w = ZipWriter::new(tempfile::tempfile().unwrap(), seekable, compress);
        // a member longer than the buffer, so its header is completed with a pwrite
        let big = bytes(3 * BUFFER + 17, 1);
        let small = bytes(100, 2);
        w.begin("big.npy", big.len() as u64, None).unwrap();
        for c in big.chunks(100_000) {
            w.write(c).unwrap();
        }
        w.end().unwrap();
        w.begin("ü/small.npy", small.len() as u64, None).unwrap();
        w.write(&small).unwrap();
        w.end().unwrap();
        w.begin("empty.npy", 0, None).unwrap();
        w.end().unwrap();
        let mut z = archive(w.finish().unwrap());
        assert_eq!(z.len(), 3);
        assert_eq!(read_member(&mut z, "big.npy"), big, "{seekable} {compress}");
        assert_eq!(read_member(&mut z, "ü/small.npy"), small);
        assert!(read_member(&mut z, "empty.npy").is_empty());
        let m = z.by_name("big.npy").unwrap();
        assert_eq!(m.crc32(), crc32fast::hash(&big));
        assert_eq!(
            m.compression(),
            if compress {
                ::zip::CompressionMethod::Deflated
            } else {
                ::zip::CompressionMethod::Stored
            }
        );
    }
}

#[test]
fn a_hundred_thousand_members_spill_the_directory_and_need_zip64_end_records() {
    let n = 100_000;
    let mut w = ZipWriter::new(tempfile::tempfile().unwrap(), true, false);
    for i in 0..n {
        w.begin(&format!("m{i}.npy"), 4, None).unwrap();
        w.write(&(i as u32).to_le_bytes()).unwrap();
        w.end().unwrap();
    }
    assert!(w.spill.is_some(), "the directory spilled to a file");
    assert!(w.central.capacity() <= 2 * CENTRAL_IN_MEMORY);
    // a duplicate is found in the spilled part and in the part still in memory
    let err = w.begin("m5.npy", 4, None).unwrap_err().to_string();
    assert!(err.contains("two tensors are both named 'm5'"), "{err}");
    let err = w.begin(&format!("m{}.npy", n - 1), 4, None).unwrap_err();
    assert!(err.to_string().contains("both named"));
    let f = w.finish().unwrap();
    let mut z = archive(f);
    assert_eq!(z.len(), n);
    assert_eq!(read_member(&mut z, "m77777.npy"), 77777u32.to_le_bytes());
    assert_eq!(
        z.by_index(n - 1).unwrap().name().unwrap(),
        format!("m{}.npy", n - 1)
    );
}

#[test]
fn copied_ranges_read_back_beside_written_bytes_stored_or_deflated() {
    use std::io::Write;
    let data = bytes((3 << 20) + 11, 7);
    for (seekable, compress) in [(true, false), (false, false), (true, true)] {
        let mut input = tempfile::tempfile().unwrap();
        input.write_all(&[9u8; 1000]).unwrap();
        input.write_all(&data).unwrap();
        let range = FileRange::whole(input)
            .unwrap()
            .slice(1000, data.len() as u64)
            .unwrap();
        let header = bytes(128, 3);
        let mut w = ZipWriter::new(tempfile::tempfile().unwrap(), seekable, compress);
        w.begin("first.npy", 5, None).unwrap();
        w.write(b"hello").unwrap();
        w.end().unwrap();
        w.begin("x.npy", (header.len() + data.len()) as u64, None)
            .unwrap();
        w.write(&header).unwrap();
        w.copy(&range).unwrap();
        w.end().unwrap();
        let mut z = archive(w.finish().unwrap());
        let got = read_member(&mut z, "x.npy");
        assert!(got[..128] == header[..] && got[128..] == data[..]);
        assert_eq!(read_member(&mut z, "first.npy"), b"hello");
    }
}

#[test]
fn a_name_longer_than_a_zip_allows_is_refused() {
    let mut w = ZipWriter::new(tempfile::tempfile().unwrap(), true, false);
    assert!(w.begin(&"x".repeat(70_000), 0, None).is_err());
}

#[test]
fn members_reserved_and_filled_out_of_order_give_the_bytes_written_in_turn() {
    use crate::sink::MemberWriter;
    use std::io::Write;
    let big = bytes(3 * BUFFER + 5, 4);
    let copied = bytes((2 << 20) + 3, 8);
    let mut input = tempfile::tempfile().unwrap();
    input.write_all(&[1u8; 777]).unwrap();
    input.write_all(&copied).unwrap();
    let range = FileRange::whole(input)
        .unwrap()
        .slice(777, copied.len() as u64)
        .unwrap();
    // in turn
    let mut w = ZipWriter::new(tempfile::tempfile().unwrap(), true, false);
    w.begin("a.npy", 3, None).unwrap();
    w.write(b"abc").unwrap();
    w.end().unwrap();
    w.begin("big.npy", big.len() as u64, None).unwrap();
    w.write(&big).unwrap();
    w.end().unwrap();
    w.begin("c.npy", copied.len() as u64, Some((0, 777)))
        .unwrap();
    w.copy(&range).unwrap();
    w.end().unwrap();
    w.begin("d.npy", 2, None).unwrap();
    w.write(b"de").unwrap();
    w.end().unwrap();
    let mut in_turn = Vec::new();
    let mut f = w.finish().unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut in_turn).unwrap();
    // reserved, filled after the members behind them, the last first
    let mut w = ZipWriter::new(tempfile::tempfile().unwrap(), true, false);
    w.begin("a.npy", 3, None).unwrap();
    w.write(b"abc").unwrap();
    w.end().unwrap();
    let mut r1 = Box::new(w.reserve("big.npy", big.len() as u64, None).unwrap());
    let mut r2 = Box::new(
        w.reserve("c.npy", copied.len() as u64, Some((0, 777)))
            .unwrap(),
    );
    assert!(
        w.reserve("big.npy", 1, None).is_err(),
        "a duplicate name is refused"
    );
    w.begin("d.npy", 2, None).unwrap();
    w.write(b"de").unwrap();
    w.end().unwrap();
    r2.copy(&range).unwrap();
    r2.commit().unwrap();
    for c in big.chunks(77_777) {
        r1.write(c).unwrap();
    }
    r1.commit().unwrap();
    let mut f = w.finish().unwrap();
    let mut reserved = Vec::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut reserved).unwrap();
    let mut first = tempfile::tempfile().unwrap();
    first.write_all(&reserved).unwrap();
    let mut z = archive(first);
    assert_eq!(read_member(&mut z, "big.npy"), big);
    assert_eq!(read_member(&mut z, "c.npy"), copied);
    assert_eq!(read_member(&mut z, "d.npy"), b"de");
    // the copied member's data keeps its input offset within the page
    let c = z.by_name("c.npy").unwrap();
    assert_eq!(c.data_start().unwrap() % PAGE, 777 % PAGE);
    drop(c);
    assert!(
        reserved == in_turn,
        "filled out of order, the archive has other bytes than written in turn"
    );
}

#[test]
fn an_unfilled_reservation_fails_the_archive() {
    let mut w = ZipWriter::new(tempfile::tempfile().unwrap(), true, false);
    let r = w.reserve("x.npy", 10, None).unwrap();
    drop(r);
    assert!(w.finish().is_err());
    let mut w = ZipWriter::new(tempfile::tempfile().unwrap(), true, true);
    assert!(
        w.reserve("x.npy", 10, None).is_err(),
        "deflated members are not reserved"
    );
}

#[test]
fn a_reserved_member_whose_directory_record_spilled_gets_its_crc() {
    use crate::sink::MemberWriter;
    let mut w = ZipWriter::new(tempfile::tempfile().unwrap(), true, false);
    let data = bytes(5000, 9);
    let mut r = Box::new(w.reserve("first.npy", data.len() as u64, None).unwrap());
    // enough members after it that its central record spills to the temporary file
    for i in 0..30_000 {
        w.begin(&format!("m{i}.npy"), 1, None).unwrap();
        w.write(&[i as u8]).unwrap();
        w.end().unwrap();
    }
    assert!(w.spill.is_some() && w.spilled > 0);
    r.write(&data).unwrap();
    r.commit().unwrap();
    let mut z = archive(w.finish().unwrap());
    // read_to_end checks the CRC in the central directory against the data
    assert_eq!(read_member(&mut z, "first.npy"), data);
    assert_eq!(read_member(&mut z, "m29999.npy"), [(29_999 % 256) as u8]);
}

#[test]
fn a_copied_range_whose_crc_a_reader_checked_is_not_read_again_for_it() {
    use std::io::Write;
    let data = bytes((2 << 20) + 5, 11);
    let mut input = tempfile::tempfile().unwrap();
    input.write_all(&data).unwrap();
    let whole = FileRange::whole(input).unwrap();
    let right = crc32fast::hash(&data);
    // the right CRC carried: the archive reads back, its CRC-32 checking; a wrong one carried
    // is written as it is (the bytes were not read again to compute it)
    for (carried, reads_back) in [(right, true), (right ^ 1, false)] {
        let mut w = ZipWriter::new(tempfile::tempfile().unwrap(), true, false);
        w.begin("x.npy", data.len() as u64, None).unwrap();
        w.copy(&whole.clone().with_crc(carried)).unwrap();
        w.end().unwrap();
        let mut z = archive(w.finish().unwrap());
        assert_eq!(z.by_name("x.npy").unwrap().crc32(), carried);
        let mut got = Vec::new();
        let read = z.by_name("x.npy").unwrap().read_to_end(&mut got);
        assert_eq!(read.is_ok(), reads_back);
        assert!(got == data);
    }
}

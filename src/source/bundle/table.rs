//! The checkpoint `.index` file: a LevelDB-style immutable table (footer with magic, index block,
//! data blocks of prefix-compressed keys with restart points, 5-byte block trailers carrying a
//! masked CRC32C). Hand-written because the LevelDB crates want a whole database directory and
//! Snappy, while TensorFlow's bundle writer never compresses; every trailer CRC is verified.

use anyhow::{bail, Context, Result};

use crate::container::protobuf::varint;
use crate::input::FileRange;
use crate::source::proto::mask_crc;

const FOOTER_LEN: u64 = 48;
const MAGIC: u64 = 0xdb47_7524_8b80_fb57;
const TRAILER_LEN: u64 = 5;

#[derive(Clone, Copy, Debug)]
struct BlockHandle {
    offset: u64,
    size: u64,
}

fn handle(b: &[u8]) -> Option<(BlockHandle, usize)> {
    let (offset, n1) = varint(b)?;
    let (size, n2) = varint(&b[n1..])?;
    Some((BlockHandle { offset, size }, n1 + n2))
}

/// Every key-value entry of the table, in key order.
pub fn read_all(file: &FileRange) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    if file.len() < FOOTER_LEN {
        bail!(
            "the index file is {} bytes, shorter than the 48-byte table footer",
            file.len()
        );
    }
    let footer = file.read_vec(file.len() - FOOTER_LEN, FOOTER_LEN as usize)?;
    let magic = u64::from(u32::from_le_bytes(footer[40..44].try_into().unwrap()))
        | u64::from(u32::from_le_bytes(footer[44..48].try_into().unwrap())) << 32;
    if magic != MAGIC {
        bail!("not a checkpoint index: the table magic number is missing (truncated or not an .index file)");
    }
    let (metaindex, n1) = handle(&footer).context("corrupt table footer")?;
    let (index, n2) = handle(&footer[n1..]).context("corrupt table footer")?;
    // TensorFlow pads the footer with zeros; anything else is damage no CRC would catch.
    if footer[n1 + n2..40].iter().any(|&b| b != 0) {
        bail!("corrupt table footer (non-zero padding)");
    }
    // The metaindex block is always empty in TensorFlow bundles, but its checksum guards it.
    read_block(file, metaindex).context("metaindex block")?;
    let index_block = read_block(file, index).context("index block")?;
    let mut entries = Vec::new();
    let mut last_key: Option<Vec<u8>> = None;
    for (_, value) in block_entries(&index_block).context("index block")? {
        let (h, _) = handle(&value).context("corrupt block handle in the index block")?;
        let block =
            read_block(file, h).with_context(|| format!("data block at offset {}", h.offset))?;
        for (key, value) in
            block_entries(&block).with_context(|| format!("data block at offset {}", h.offset))?
        {
            if last_key.as_ref().is_some_and(|k| *k >= key) {
                bail!("index keys are not in increasing order (corrupt index)");
            }
            last_key = Some(key.clone());
            entries.push((key, value));
        }
    }
    Ok(entries)
}

fn read_block(file: &FileRange, h: BlockHandle) -> Result<Vec<u8>> {
    let end = h
        .offset
        .checked_add(h.size)
        .and_then(|e| e.checked_add(TRAILER_LEN));
    if end.is_none_or(|e| e > file.len() - FOOTER_LEN.min(file.len())) {
        bail!("a block handle points past the end of the index file (truncated or corrupt)");
    }
    let mut data = file.read_vec(h.offset, (h.size + TRAILER_LEN) as usize)?;
    let trailer = data.split_off(h.size as usize);
    let kind = trailer[0];
    let stored = u32::from_le_bytes(trailer[1..5].try_into().unwrap());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&data), &[kind]);
    if mask_crc(crc) != stored {
        bail!("block checksum mismatch (corrupt index file)");
    }
    match kind {
        0 => Ok(data),
        1 => {
            bail!("Snappy-compressed index blocks are not supported (TensorFlow never writes them)")
        }
        k => bail!("unknown block compression type {k}"),
    }
}

/// Decodes a block's entries (keys restored from their shared prefixes).
fn block_entries(block: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    if block.len() < 4 {
        bail!("block too short");
    }
    let num_restarts = u32::from_le_bytes(block[block.len() - 4..].try_into().unwrap()) as usize;
    let restarts_len = num_restarts
        .checked_mul(4)
        .and_then(|r| r.checked_add(4))
        .filter(|&r| r <= block.len())
        .context("corrupt restart count")?;
    let data = &block[..block.len() - restarts_len];
    let mut out = Vec::new();
    let mut key: Vec<u8> = Vec::new();
    let mut p = 0;
    while p < data.len() {
        let mut next = || -> Result<u64> {
            let (v, n) = varint(&data[p..]).context("corrupt block entry")?;
            p += n;
            Ok(v)
        };
        let shared = next()? as usize;
        let unshared = next()? as usize;
        let value_len = next()? as usize;
        if shared > key.len() || unshared > data.len() - p || value_len > data.len() - p - unshared
        {
            bail!("corrupt block entry at offset {p}");
        }
        key.truncate(shared);
        key.extend_from_slice(&data[p..p + unshared]);
        p += unshared;
        out.push((key.clone(), data[p..p + value_len].to_vec()));
        p += value_len;
    }
    Ok(out)
}

//! The bytes a chunked HDF5 dataset occupies in the file, for `list`'s BYTES (what h5py's
//! `ds.id.get_storage_size()` reports): the sum of its chunks' stored sizes (after filters:
//! gzip, shuffle, ...), read from its chunk index with hdf5-reader's public index walkers
//! (B-tree v1; single chunk, implicit, fixed array, extensible array and B-tree v2 indexes of
//! layout v4), without decoding a chunk. Called by `mod.rs` as a dataset is opened; contiguous
//! and compact datasets keep their logical size.

use anyhow::{Context, Result};
use hdf5_reader::chunk_index::{self, ChunkEntry};
use hdf5_reader::messages::layout::{ChunkIndexing, DataLayout};
use hdf5_reader::messages::HdfMessage;
use hdf5_reader::{Dataset, Hdf5File};

/// The stored size of `ds` when it is chunked (`None` otherwise); `elem_size` is its element's
/// size in the file. A dataset never written has no chunks: 0 bytes.
pub(super) fn chunked_bytes(file: &Hdf5File, ds: &Dataset, elem_size: u64) -> Result<Option<u64>> {
    let header = file
        .get_or_parse_header(ds.address())
        .context("cannot read the object header")?;
    let (mut layout, mut filtered) = (None, false);
    for m in &header.messages {
        match m {
            HdfMessage::DataLayout(l) => layout = Some(l.layout.clone()),
            HdfMessage::FilterPipeline(_) => filtered = true,
            _ => {}
        }
    }
    let Some(DataLayout::Chunked {
        address,
        dims,
        chunk_indexing,
        ..
    }) = layout
    else {
        return Ok(None);
    };
    let sb = file.superblock();
    let (os, ls) = (sb.offset_size, sb.length_size);
    if hdf5_reader::io::Cursor::is_undefined_offset(address, os) {
        return Ok(Some(0));
    }
    let shape = ds.shape();
    let ndim = shape.len();
    // Layouts before v4 carry the element size as one more chunk dimension.
    let dims = &dims[..ndim.min(dims.len())];
    let chunk_bytes = dims
        .iter()
        .try_fold(elem_size, |n, &d| n.checked_mul(u64::from(d)))
        .context("the chunk size overflows")?;
    let storage = file.storage();
    let sum = |entries: Vec<ChunkEntry>| -> Result<u64> {
        entries
            .iter()
            .map(|e| {
                if filtered && e.size > 0 {
                    e.size
                } else {
                    chunk_bytes
                }
            })
            .try_fold(0u64, |n, s| n.checked_add(s))
            .context("the stored size overflows")
    };
    let total = match chunk_indexing {
        None => {
            let leaves = hdf5_reader::btree_v1::collect_btree_v1_leaves_storage(
                storage,
                address,
                os,
                ls,
                Some(ndim as u32),
                dims,
                None,
            )?;
            leaves
                .iter()
                .map(|(key, _)| match key {
                    hdf5_reader::btree_v1::BTreeV1Key::RawData { chunk_size, .. } => {
                        u64::from(*chunk_size)
                    }
                    _ => 0,
                })
                .sum()
        }
        Some(ChunkIndexing::SingleChunk { filtered_size, .. }) => match filtered {
            true => filtered_size,
            false => chunk_bytes,
        },
        Some(ChunkIndexing::Implicit) => sum(chunk_index::collect_implicit_chunk_entries(
            address,
            shape,
            dims,
            elem_size as usize,
            None,
            storage.len(),
        )?)?,
        Some(ChunkIndexing::FixedArray { .. }) => sum(
            hdf5_reader::fixed_array::collect_fixed_array_chunk_entries_storage(
                storage, address, os, ls, shape, dims, None,
            )?,
        )?,
        Some(ChunkIndexing::ExtensibleArray { .. }) => sum(
            hdf5_reader::extensible_array::collect_extensible_array_chunk_entries_storage(
                storage,
                address,
                os,
                ls,
                shape,
                ds.max_dims(),
                dims,
                None,
            )?,
        )?,
        Some(ChunkIndexing::BTreeV2) => sum(chunk_index::collect_v2_chunk_entries_storage(
            storage,
            address,
            os,
            ls,
            ndim as u32,
            dims,
            None,
        )?)?,
    };
    Ok(Some(total))
}

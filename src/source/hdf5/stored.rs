//! The bytes a chunked HDF5 dataset occupies in the file, for `list`'s BYTES (what h5py's
//! `ds.id.get_storage_size()` reports): the sum of its chunks' stored sizes (after filters:
//! gzip, shuffle, ...), read from its chunk index with hdf5-reader's public index walkers
//! (B-tree v1; single chunk, implicit, fixed array, extensible array and B-tree v2 indexes of
//! layout v4), without decoding a chunk. Called by `mod.rs` as a dataset is opened; contiguous
//! and compact datasets keep their logical size. The same walk lists the chunks for `rows.rs`,
//! which reads chunks of whole rows itself.

use anyhow::{Context, Result};
use hdf5_reader::chunk_index::{self, ChunkEntry};
use hdf5_reader::messages::layout::{ChunkIndexing, DataLayout};
use hdf5_reader::messages::HdfMessage;
use hdf5_reader::{Dataset, Hdf5File};

/// The stored size of `ds` when it is chunked (`None` otherwise); `elem_size` is its element's
/// size in the file. A dataset never written has no chunks: 0 bytes.
pub(super) fn chunked_bytes(file: &Hdf5File, ds: &Dataset, elem_size: u64) -> Result<Option<u64>> {
    let Some(index) = walk(file, ds, elem_size)? else {
        return Ok(None);
    };
    let (filtered, chunk_bytes) = (index.filtered, index.chunk_bytes);
    index
        .entries
        .iter()
        .map(|e| match index.kind {
            // a v1 B-tree key's size, as it stands; a single chunk's filtered size if filtered
            Kind::BTreeV1 => e.size,
            Kind::Single if filtered => e.size,
            _ if filtered && e.size > 0 => e.size,
            _ => chunk_bytes,
        })
        .try_fold(0u64, |n, s| n.checked_add(s))
        .context("the stored size overflows")
        .map(Some)
}

/// The chunks of `ds` as its index lists them (offsets, address, stored size, filter mask),
/// unchecked (`rows.rs` checks them), or `None` when it is not chunked; none when it was never
/// written.
pub(super) fn chunk_entries(
    file: &Hdf5File,
    ds: &Dataset,
    elem_size: u64,
) -> Result<Option<Vec<ChunkEntry>>> {
    Ok(walk(file, ds, elem_size)?.map(|i| i.entries))
}

/// Which kind of index listed the chunks (their sizes are counted differently).
enum Kind {
    BTreeV1,
    Single,
    Other,
}

struct Index {
    entries: Vec<ChunkEntry>,
    kind: Kind,
    filtered: bool,
    chunk_bytes: u64,
}

fn walk(file: &Hdf5File, ds: &Dataset, elem_size: u64) -> Result<Option<Index>> {
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
        return Ok(Some(Index {
            entries: Vec::new(),
            kind: Kind::Other,
            filtered,
            chunk_bytes: 0,
        }));
    }
    let shape = ds.shape();
    let ndim = shape.len();
    // Layouts before v4 carry the element size as one more chunk dimension.
    let dims = &dims[..ndim.min(dims.len())];
    let chunk_bytes = dims
        .iter()
        .try_fold(elem_size, |n, &d| n.checked_mul(u64::from(d)))
        .context("the chunk size overflows")?;
    let index = |entries, kind| {
        Ok(Some(Index {
            entries,
            kind,
            filtered,
            chunk_bytes,
        }))
    };
    let storage = file.storage();
    match chunk_indexing {
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
            let entries = leaves
                .into_iter()
                .filter_map(|(key, address)| match key {
                    hdf5_reader::btree_v1::BTreeV1Key::RawData {
                        chunk_size,
                        filter_mask,
                        mut offsets,
                    } => {
                        offsets.truncate(ndim);
                        Some(ChunkEntry {
                            address,
                            size: u64::from(chunk_size),
                            filter_mask,
                            offsets,
                        })
                    }
                    _ => None,
                })
                .collect();
            index(entries, Kind::BTreeV1)
        }
        Some(ChunkIndexing::SingleChunk {
            filtered_size,
            filters,
        }) => index(
            vec![chunk_index::single_chunk_entry(
                address,
                filtered_size,
                filters,
                ndim,
            )],
            Kind::Single,
        ),
        Some(ChunkIndexing::Implicit) => index(
            chunk_index::collect_implicit_chunk_entries(
                address,
                shape,
                dims,
                elem_size as usize,
                None,
                storage.len(),
            )?,
            Kind::Other,
        ),
        Some(ChunkIndexing::FixedArray { .. }) => index(
            hdf5_reader::fixed_array::collect_fixed_array_chunk_entries_storage(
                storage, address, os, ls, shape, dims, None,
            )?,
            Kind::Other,
        ),
        Some(ChunkIndexing::ExtensibleArray { .. }) => index(
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
            Kind::Other,
        ),
        Some(ChunkIndexing::BTreeV2) => index(
            chunk_index::collect_v2_chunk_entries_storage(
                storage,
                address,
                os,
                ls,
                ndim as u32,
                dims,
                None,
            )?,
            Kind::Other,
        ),
    }
}

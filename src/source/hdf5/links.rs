//! The links of an HDF5 group by kind, so that `mod.rs` names each dataset by its hard-link
//! path only, as h5py's `visititems` (`H5Ovisit`) does (a file with dataset `w` and a soft link
//! `alias -> /w` gives `w`, never `alias`), and can open a group's members one by one when the
//! crate cannot list them together (a virtual dataset among them, skipped with a note).
//!
//! The `hdf5-reader` crate resolves links transparently when it lists a group, so the link kinds
//! are read here from the group's own structures, with the crate's public parsers, in each of
//! the three forms a group may take: link messages in its object header (compact), a fractal
//! heap indexed by a v2 B-tree (dense), or an old-style symbol table (a v1 B-tree of `SNOD`
//! nodes naming entries in a local heap; a soft link is an entry of cache type 2). The crate has
//! already read the same structures to list the group, with its bounds and cycle checks.

use std::collections::HashSet;

use anyhow::{Context, Result};
use hdf5_reader::btree_v1::collect_btree_v1_leaves_storage;
use hdf5_reader::btree_v2::{collect_btree_v2_records_storage, BTreeV2Header, BTreeV2Record};
use hdf5_reader::fractal_heap::FractalHeap;
use hdf5_reader::group::Group;
use hdf5_reader::io::Cursor;
use hdf5_reader::local_heap::LocalHeap;
use hdf5_reader::messages::link::{self, LinkTarget};
use hdf5_reader::messages::HdfMessage;
use hdf5_reader::symbol_table::SymbolTableNode;
use hdf5_reader::Dataset;
use hdf5_reader::Hdf5File;

/// A group's link names: hard links (in storage order) and soft or external ones.
#[derive(Default)]
pub struct Links {
    pub hard: Vec<String>,
    pub soft: HashSet<String>,
}

/// True when the crate refused an object because it is a virtual dataset (layout class 3).
pub fn is_virtual(e: &hdf5_reader::error::Error) -> bool {
    use hdf5_reader::error::Error;
    match e {
        Error::UnsupportedLayoutClass(3) => true,
        Error::Context { source, .. } => is_virtual(source),
        _ => false,
    }
}

/// The links of `group`, read from its own structures.
pub fn read(file: &Hdf5File, group: &Group) -> Result<Links> {
    let header = file
        .get_or_parse_header(group.address())
        .context("cannot read the group's object header")?;
    let storage = group.storage();
    let (os, ls) = (group.offset_size(), group.length_size());
    let mut links = Links::default();
    let note = |links: &mut Links, name: &str, target: &LinkTarget| match target {
        LinkTarget::Hard { .. } => links.hard.push(name.to_string()),
        _ => {
            links.soft.insert(name.to_string());
        }
    };
    for m in &header.messages {
        match m {
            HdfMessage::Link(l) => note(&mut links, &l.name, &l.target),
            HdfMessage::LinkInfo(info) => {
                if Cursor::is_undefined_offset(info.fractal_heap_address, os) {
                    continue;
                }
                let heap =
                    FractalHeap::parse_at_storage(storage, info.fractal_heap_address, os, ls)
                        .context("cannot read the group's link heap")?;
                let index =
                    BTreeV2Header::parse_at_storage(storage, info.btree_name_index_address, os, ls)
                        .context("cannot read the group's link index")?;
                let records =
                    collect_btree_v2_records_storage(storage, &index, os, ls, None, &[], None)
                        .context("cannot read the group's link index")?;
                for r in &records {
                    let BTreeV2Record::LinkNameHash { heap_id, .. } = r else {
                        continue;
                    };
                    let bytes = heap
                        .get_object_storage(heap_id, storage, os, ls)
                        .context("cannot read a link of the group")?;
                    let l = link::parse(&mut Cursor::new(&bytes), os, ls, bytes.len())
                        .context("cannot read a link of the group")?;
                    note(&mut links, &l.name, &l.target);
                }
            }
            HdfMessage::SymbolTable(st) => {
                let heap = LocalHeap::parse_at_storage(storage, st.heap_address, os, ls)
                    .context("cannot read the group's local heap")?;
                let leaves = collect_btree_v1_leaves_storage(
                    storage,
                    st.btree_address,
                    os,
                    ls,
                    None,
                    &[],
                    None,
                )
                .context("cannot read the group's symbol table")?;
                for (_, node) in &leaves {
                    // `SNOD`, version, reserved, then the number of entries.
                    let prefix = storage.read_range(*node, 8)?;
                    let Some(&[lo, hi]) = prefix.get(6..8) else {
                        anyhow::bail!("a symbol table node of the group is cut short");
                    };
                    let count = usize::from(u16::from_le_bytes([lo, hi]));
                    let len = 8 + count * (2 * usize::from(os) + 24);
                    let bytes = storage.read_range(*node, len)?;
                    let snod = SymbolTableNode::parse(&mut Cursor::new(bytes.as_ref()), os, ls)
                        .context("cannot read the group's symbol table")?;
                    for e in &snod.entries {
                        let name = heap
                            .get_string_storage(e.link_name_offset, storage)
                            .context("cannot read a link name of the group")?;
                        match e.cache_type {
                            2 => drop(links.soft.insert(name)),
                            _ => links.hard.push(name),
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(links)
}

/// A group's members opened one at a time by their hard links, for a group the crate cannot
/// list at once: a virtual dataset (which h5py assembles from other datasets, and tensor2npy
/// does not) is left out with a note; named datatypes are no tensors.
pub fn one_by_one(
    group: &Group,
    prefix: &str,
    hard: &[String],
    notes: &mut Vec<String>,
) -> Result<(Vec<Group>, Vec<Dataset>)> {
    let (mut groups, mut datasets) = (Vec::new(), Vec::new());
    for name in hard {
        let full = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        if let Ok(g) = group.group(name) {
            groups.push(g);
            continue;
        }
        match group.dataset(name) {
            Ok(d) => datasets.push(d),
            Err(e) if is_virtual(&e) => notes.push(format!(
                "skipped '{full}': a virtual dataset (its values live in other datasets; tensor2npy does not assemble them)"
            )),
            Err(hdf5_reader::error::Error::DatasetNotFound(_)) => {}
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("cannot open '/{full}'")));
            }
        }
    }
    Ok((groups, datasets))
}

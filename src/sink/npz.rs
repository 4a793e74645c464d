//! The `.npz` sink: one zip member `<name>.npy` per tensor, in the order added, through the
//! streaming writer of [`super::zip`]. Into a path the archive is built in a temporary file
//! beside it and renamed into place; into standard output, a FIFO or a device it streams.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::atomic::Staged;
use super::digest::Hashed;
use super::names;
use super::zip::ZipWriter;
use super::{
    io_error, is_special, open_special, persist, temp_file_beside, MemberSpec, MemberWriter, Sink,
};
use crate::input::FileRange;

/// An `.npz` archive: stored (or deflated) members named `<name>.npy`, zip64 always, fixed
/// 1980-01-01 timestamps, members in the order added.
pub struct NpzSink {
    zip: Option<ZipWriter>,
    /// The temporary file to rename to the path once complete; `None` when streaming.
    commit: Option<(Staged, PathBuf)>,
}

/// An `.npz` written to a file: built in a temporary file and renamed into place, or streamed
/// straight into a device or pipe.
pub fn npz_file(path: &Path, compress: bool) -> Result<Box<dyn Sink>> {
    if is_special(path) {
        return Ok(Box::new(NpzSink {
            zip: Some(ZipWriter::new(open_special(path)?, false, compress)),
            commit: None,
        }));
    }
    let tmp = temp_file_beside(path)?;
    let file = tmp.reopen()?;
    Ok(Box::new(NpzSink {
        zip: Some(ZipWriter::new(file, true, compress)),
        commit: Some((tmp, path.to_path_buf())),
    }))
}

impl NpzSink {
    /// An archive streamed to standard output (members carry data descriptors, which `np.load`
    /// reads).
    pub fn stdout(compress: bool) -> Result<NpzSink> {
        let fd = io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .context("cannot use standard output")?;
        Ok(NpzSink {
            zip: Some(ZipWriter::new(File::from(fd), false, compress)),
            commit: None,
        })
    }
}

/// The alignment of a member whose data is copied from an input file: the bytes before the
/// data (the `.npy` header) and the data's offset in the input.
fn align(spec: &MemberSpec) -> Option<(u64, u64)> {
    spec.copy_from.map(|at| (spec.header.len() as u64, at))
}

/// A member of the archive being written.
struct NpzMember<'a>(&'a mut ZipWriter);

impl MemberWriter for NpzMember<'_> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.0.write(data).map_err(io_error)
    }

    fn copy(&mut self, range: &FileRange) -> Result<()> {
        self.0.copy(range)
    }

    fn commit(self: Box<Self>) -> Result<()> {
        self.0.end()
    }
}

impl Sink for NpzSink {
    fn begin_member(&mut self, spec: &MemberSpec) -> Result<Box<dyn MemberWriter + '_>> {
        let member = names::npz_member(spec.name)?;
        let zip = self.zip.as_mut().expect("sink used after finish");
        zip.begin(
            &member,
            spec.header.len() as u64 + spec.data_len,
            align(spec),
        )?;
        zip.write(spec.header).map_err(io_error)?;
        Ok(Box::new(NpzMember(zip)))
    }

    /// Into a file only (a streamed archive is not hashed).
    fn hash(&mut self) -> Option<Hashed> {
        self.commit.as_ref()?;
        let cell = Hashed::default();
        self.zip.as_mut()?.hash(cell.clone());
        Some(cell)
    }

    fn can_reserve(&self) -> bool {
        self.zip.as_ref().is_some_and(ZipWriter::reservable)
    }

    fn reserve(&mut self, spec: &MemberSpec) -> Result<Box<dyn MemberWriter + Send>> {
        let member = names::npz_member(spec.name)?;
        let zip = self.zip.as_mut().expect("sink used after finish");
        let mut room = zip.reserve(
            &member,
            spec.header.len() as u64 + spec.data_len,
            align(spec),
        )?;
        room.write(spec.header)?;
        Ok(Box::new(room))
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        let zip = self.zip.take().expect("finished twice");
        let file = zip.finish().context("cannot finish the .npz archive")?;
        drop(file);
        match self.commit.take() {
            Some((tmp, path)) => persist(tmp, &path),
            None => Ok(()),
        }
    }
}

//! External raw storage (`h5py.create_dataset(..., external=[(name, offset, size)])`): the
//! dataset's bytes live in other files, named relative to the HDF5 file. They are read, as h5py
//! reads them, only when the name stays inside the HDF5 file's folder (after resolving links)
//! and is a regular file (opened through `input::open_file`, so a FIFO never blocks); anything
//! else is refused, naming the file. Beside a remote object (`s3://`, `https://`) the name is
//! read from the same "folder" of the bucket, when it has no `..`, `.` or empty component. An
//! HDF5 file read from a `.keras` member or standard input resolves no external storage.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hdf5_reader::error::Error;
use hdf5_reader::storage::DynStorage;
use hdf5_reader::ExternalFileResolver;

use super::blocks::RangeStorage;
use crate::input::FileRange;

/// Resolves external raw data files inside one folder, local or remote.
pub enum Beside {
    Dir(PathBuf),
    /// The URL of the remote object's "folder", without its trailing `/`.
    Url(String),
}

impl Beside {
    /// The resolver for an HDF5 file at `path` (a local file or a URL), or `None` when there is
    /// no folder.
    pub fn of(path: &Path) -> Option<Arc<dyn ExternalFileResolver>> {
        if let Some(url) = crate::input::url_of(path) {
            let (base, _) = url.rsplit_once('/')?;
            return Some(Arc::new(Beside::Url(base.to_string())));
        }
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        let dir = parent.unwrap_or(Path::new(".")).canonicalize().ok()?;
        Some(Arc::new(Beside::Dir(dir)))
    }
}

impl ExternalFileResolver for Beside {
    fn resolve_external_file(
        &self,
        filename: &str,
    ) -> hdf5_reader::error::Result<Option<DynStorage>> {
        let refuse = |why: &str| {
            Err(Error::Other(format!(
                "external raw data file '{filename}' {why} (only regular files inside the HDF5 file's folder are read)"
            )))
        };
        if filename.is_empty() || Path::new(filename).is_absolute() {
            return refuse("is not a relative name");
        }
        let opened = match self {
            Beside::Dir(dir) => {
                let full = match dir.join(filename).canonicalize() {
                    Ok(p) => p,
                    Err(e) => return refuse(&format!("cannot be found: {e}")),
                };
                if !full.starts_with(dir) {
                    return refuse("lies outside the folder");
                }
                crate::input::open_file(&full).and_then(FileRange::whole)
            }
            Beside::Url(base) => {
                if filename
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == ".." || c.contains('\\'))
                {
                    return refuse("lies outside the folder");
                }
                crate::input::open_range(Path::new(&format!("{base}/{filename}")))
            }
        };
        let range = opened
            .map_err(|e| Error::Other(format!("external raw data file '{filename}': {e:#}")))?;
        Ok(Some(Arc::new(RangeStorage(range))))
    }
}

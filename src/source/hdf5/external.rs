//! External raw storage (`h5py.create_dataset(..., external=[(name, offset, size)])`): the
//! dataset's bytes live in other files, named relative to the HDF5 file. They are read, as h5py
//! reads them, only when the name stays inside the HDF5 file's folder (after resolving links)
//! and is a regular file (opened through `input::open_file`, so a FIFO never blocks); anything
//! else is refused, naming the file. An HDF5 file that is not a plain local file (a `.keras`
//! member, standard input, an object in a bucket) resolves no external storage.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hdf5_reader::error::Error;
use hdf5_reader::storage::DynStorage;
use hdf5_reader::ExternalFileResolver;

use super::blocks::RangeStorage;
use crate::input::FileRange;

/// Resolves external raw data files inside one folder.
pub struct Beside {
    dir: PathBuf,
}

impl Beside {
    /// The resolver for an HDF5 file at `path` (a local file), or `None` when there is no folder.
    pub fn of(path: &Path) -> Option<Arc<dyn ExternalFileResolver>> {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        let dir = parent.unwrap_or(Path::new(".")).canonicalize().ok()?;
        Some(Arc::new(Beside { dir }))
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
        let full = match self.dir.join(filename).canonicalize() {
            Ok(p) => p,
            Err(e) => return refuse(&format!("cannot be found: {e}")),
        };
        if !full.starts_with(&self.dir) {
            return refuse("lies outside the folder");
        }
        let file = crate::input::open_file(&full)
            .and_then(FileRange::whole)
            .map_err(|e| Error::Other(format!("external raw data file '{filename}': {e:#}")))?;
        Ok(Some(Arc::new(RangeStorage(file))))
    }
}

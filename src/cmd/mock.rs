//! A `Source` of named tensors for the unit tests of the planners (`planner.rs`, `members.rs`):
//! its metadata is all they read; reading data is an error.

use anyhow::{bail, Result};

use crate::dtype::DType;
use crate::tensor::{ChunkSink, Kind, Source, TensorMeta};

/// Tensors of `i32` (4 bytes, shape `[1]`) named as given, or of `resource` (no NumPy form) for
/// names starting with `r`.
struct Mock {
    path: String,
    names: Vec<&'static str>,
}

impl Source for Mock {
    fn display_path(&self) -> &str {
        &self.path
    }
    fn len(&self) -> usize {
        self.names.len()
    }
    fn meta(&self, i: usize) -> Result<TensorMeta> {
        let name = self.names[i];
        Ok(TensorMeta {
            name: name.into(),
            dtype: if name.starts_with('r') {
                DType::Resource
            } else {
                DType::I32
            },
            shape: vec![1],
            kind: Kind::Dense,
            stored_bytes: 4,
            max_string_len: None,
            big_endian: false,
            ragged_rank: 0,
            facts: Default::default(),
        })
    }
    fn read_dense(&mut self, _: usize, _: usize, _: &mut ChunkSink) -> Result<()> {
        bail!("a plan must not read tensors")
    }
    fn read_strings(&mut self, _: usize, _: &mut ChunkSink) -> Result<()> {
        bail!("a plan must not read tensors")
    }
    fn input_files(&self) -> Vec<std::path::PathBuf> {
        vec![]
    }
}

/// An input at `path` holding the tensors `names`.
pub(super) fn mock(path: &str, names: &[&'static str]) -> Box<dyn Source> {
    Box::new(Mock {
        path: path.into(),
        names: names.to_vec(),
    })
}

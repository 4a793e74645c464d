//! Two sources read as one: their tensors one after the other (a SavedModel's variables, then
//! with `--constants` the constants of its `saved_model.pb`). Names must not collide.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::input::FileRange;
use crate::tensor::{ChunkSink, Source, TensorMeta};

pub struct Chain {
    first: Box<dyn Source>,
    second: Box<dyn Source>,
    notes: Vec<String>,
}

impl Chain {
    pub fn new(first: Box<dyn Source>, second: Box<dyn Source>) -> Result<Chain> {
        let mut names = HashSet::new();
        for i in 0..first.len() {
            names.insert(first.meta(i)?.name);
        }
        for i in 0..second.len() {
            let name = second.meta(i)?.name;
            if names.contains(&name) {
                bail!(
                    "{name} names both a tensor of {} and one of {}",
                    first.display_path(),
                    second.display_path()
                );
            }
        }
        let notes = first
            .notes()
            .iter()
            .chain(second.notes())
            .cloned()
            .collect();
        Ok(Chain {
            first,
            second,
            notes,
        })
    }

    fn pick(&self, index: usize) -> (bool, usize) {
        let n = self.first.len();
        if index < n {
            (true, index)
        } else {
            (false, index - n)
        }
    }
}

impl Source for Chain {
    fn display_path(&self) -> &str {
        self.first.display_path()
    }
    fn len(&self) -> usize {
        self.first.len() + self.second.len()
    }
    fn meta(&self, index: usize) -> Result<TensorMeta> {
        match self.pick(index) {
            (true, i) => self.first.meta(i),
            (false, i) => self.second.meta(i),
        }
    }
    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        match self.pick(index) {
            (true, i) => self.first.read_dense(i, chunk, sink),
            (false, i) => self.second.read_dense(i, chunk, sink),
        }
    }
    fn read_strings(&mut self, index: usize, sink: &mut ChunkSink) -> Result<()> {
        match self.pick(index) {
            (true, i) => self.first.read_strings(i, sink),
            (false, i) => self.second.read_strings(i, sink),
        }
    }
    fn input_files(&self) -> Vec<PathBuf> {
        let mut f = self.first.input_files();
        f.extend(self.second.input_files());
        f
    }
    fn raw_range(&self, index: usize) -> Option<FileRange> {
        match self.pick(index) {
            (true, i) => self.first.raw_range(i),
            (false, i) => self.second.raw_range(i),
        }
    }
    fn format(&self) -> Option<&str> {
        self.first.format()
    }
    fn notes(&self) -> &[String] {
        &self.notes
    }
}

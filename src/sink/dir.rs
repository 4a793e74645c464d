//! A directory of `.npy` files (`-o DIR`). The directory may already exist and hold anything:
//! only the files this run writes are added or replaced, each atomically, and nothing else in
//! it is touched. Every tensor is first written into one locked staging directory inside the
//! target (`DIR/.tensor2npy-<pid>-*.tmp/`, so that the final renames stay on one file system);
//! once all are written, and no interrupt has arrived, each is renamed to its place. A failure
//! before that leaves the target as it was (directories this run created are removed again), and
//! two runs writing the same files both succeed, the last rename of each file winning. A
//! symbolic link already in the directory is never written through when it leads out of it.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

use super::atomic::{keep_mode, path_error, temp_dir_in, CreatedDirs};
use super::digest::{self, Hashed, Hashing};
use super::{FileMember, MemberSpec, MemberWriter, Sink, BUFFER};
use crate::sink::names;

pub struct DirSink {
    target: PathBuf,
    /// The staging directory and the handle holding its lock (dropped in this order, before
    /// `created`, which removes directories only when they are empty).
    stage: Option<(tempfile::TempDir, File)>,
    created: CreatedDirs,
    /// The relative destination of staged file `i` (staged as `stage/i`).
    files: Vec<PathBuf>,
    seen: HashSet<PathBuf>,
    /// `--manifest`: each staged file's bytes hashed as written, and where the directory's
    /// digest (of these files only, [`digest::listing`]) goes.
    hash: Option<(Vec<Hashing>, Hashed)>,
}

impl DirSink {
    pub fn create(target: &Path) -> Result<Self> {
        if target.exists() && !target.is_dir() {
            bail!("{} exists and is not a directory", target.display());
        }
        let created = CreatedDirs::create(target)?;
        let stage = temp_dir_in(target)?;
        Ok(DirSink {
            target: target.to_path_buf(),
            created,
            stage: Some(stage),
            files: Vec::new(),
            seen: HashSet::new(),
            hash: None,
        })
    }

    /// Creates the staged file for a tensor, refusing a second tensor at the same path.
    fn create_file(&mut self, name: &str) -> Result<BufWriter<File>> {
        let rel = names::dir_path(name)?;
        if !self.seen.insert(rel.clone()) {
            bail!(
                "two tensors map to the same file {} ('{}' is the second)",
                rel.display(),
                names::shown(name)
            );
        }
        let root = self
            .stage
            .as_ref()
            .expect("sink used after finish")
            .0
            .path();
        let path = root.join(self.files.len().to_string());
        self.files.push(rel);
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| path_error("cannot create a file in", root, e))?;
        Ok(BufWriter::with_capacity(BUFFER, file))
    }

    /// Refuses a destination whose folders pass through a symbolic link that leads out of the
    /// target directory (a link already in it): nothing is ever written outside `-o DIR`. A
    /// link that stays inside is followed; the file itself replaces a link of its own name.
    fn check_inside(&self, root: &Path, rel: &Path) -> Result<()> {
        let mut at = self.target.clone();
        for c in rel.parent().into_iter().flat_map(|p| p.components()) {
            at.push(c);
            match fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    let real = at.canonicalize().ok();
                    if real.as_ref().is_none_or(|r| !r.starts_with(root)) {
                        bail!(
                            "cannot write {}: {} is a symbolic link that leads out of the output directory{}",
                            self.target.join(rel).display(),
                            at.display(),
                            real.map(|r| format!(" (to {})", r.display()))
                                .unwrap_or_default()
                        );
                    }
                }
                Ok(_) => {}
                // Not there yet: this run creates it, and nothing below it.
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// Moves staged file `i` to its place, creating the directories its name asks for.
    fn commit_one(&self, stage: &Path, i: usize, rel: &Path) -> Result<()> {
        let from = stage.join(i.to_string());
        let dest = self.target.join(rel);
        if let Ok(f) = File::open(&from) {
            keep_mode(&f, &dest)?;
        }
        // A concurrent run may remove an empty directory it created just as this one needs
        // it; try again then.
        for attempt in 0..3 {
            if let Some(dir) = dest.parent() {
                fs::create_dir_all(dir)
                    .map_err(|e| path_error("cannot create the directory", dir, e))?;
            }
            match fs::rename(&from, &dest) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 2 => continue,
                Err(e) if dest.is_dir() => {
                    return Err(anyhow!(
                        "cannot write {}: a directory of that name is in the way ({e})",
                        dest.display()
                    ))
                }
                Err(e) => return Err(path_error("cannot move the finished file to", &dest, e)),
            }
        }
        unreachable!("the loop returns")
    }
}

impl Sink for DirSink {
    fn begin_member(&mut self, spec: &MemberSpec) -> Result<Box<dyn MemberWriter + '_>> {
        let w = self.create_file(spec.name)?;
        let hash = self.hash.as_mut().map(|(files, _)| {
            files.push(Hashing::default());
            files.last_mut().expect("just pushed")
        });
        Ok(Box::new(FileMember::start(w, spec.header, hash)?))
    }

    fn hash(&mut self) -> Option<Hashed> {
        let cell = Hashed::default();
        self.hash = Some((Vec::new(), cell.clone()));
        Some(cell)
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        crate::error::check_interrupted()?;
        let root = self
            .target
            .canonicalize()
            .map_err(|e| path_error("cannot resolve", &self.target, e))?;
        for rel in &self.files {
            self.check_inside(&root, rel)?;
        }
        let (stage, lock) = self.stage.take().expect("finished twice");
        for (i, rel) in self.files.iter().enumerate() {
            self.commit_one(stage.path(), i, rel)?;
        }
        self.created.keep();
        drop(stage);
        drop(lock);
        if let Some((hashes, cell)) = self.hash.take() {
            let mut files: Vec<(String, digest::Digest)> = self
                .files
                .iter()
                .map(|rel| rel.to_string_lossy().into_owned())
                .zip(hashes.into_iter().map(Hashing::finish))
                .collect();
            cell.set(digest::listing(&mut files)).ok();
        }
        Ok(())
    }
}

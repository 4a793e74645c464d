//! Atomic replacement of one output file, shared by every sink that writes to a path: a
//! temporary file beside the destination (`.tensor2npy-<pid>-*.tmp`), held under an advisory
//! lock (`flock`) for as long as it is written, then renamed over the destination. The sinks in
//! `sink/mod.rs` call it; nothing here knows about tensors.
//!
//! - Modes are what `cp` gives: a new file gets 0666 minus the umask (the kernel applies the
//!   umask when the temporary is created), and a replaced file keeps its mode.
//! - Missing parent directories are created only when the sink is created (after every check of
//!   the command line), and removed again, if still empty, when the output is abandoned.
//! - An interrupt (SIGINT / SIGTERM) is checked right before the rename, so a signal that arrives
//!   after the last byte still leaves the destination untouched.
//! - Stale temporaries (a run killed outright) are removed by the next run into the same
//!   directory, but only those whose lock nobody holds: PIDs are not trusted, since a run in
//!   another PID namespace may share the directory, and PIDs are reused.

use std::fs::{self, File, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};

/// The prefix of every temporary file or directory tensor2npy creates beside an output.
pub const TEMP_PREFIX: &str = ".tensor2npy-";

fn temp_prefix() -> String {
    format!("{TEMP_PREFIX}{}-", std::process::id())
}

/// The directory a path's file lives in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Directories created for an output, removed (innermost first, only if empty) when the output
/// is abandoned; kept once `keep` is called.
#[derive(Default)]
pub struct CreatedDirs(Vec<PathBuf>);

impl CreatedDirs {
    /// Creates `dir` and its missing ancestors, remembering which ones it made.
    pub fn create(dir: &Path) -> Result<CreatedDirs> {
        let mut missing = Vec::new();
        let mut d = Some(dir);
        while let Some(p) = d.filter(|p| !p.as_os_str().is_empty()) {
            if p.is_dir() {
                break;
            }
            missing.push(p.to_path_buf());
            d = p.parent();
        }
        let mut created = CreatedDirs::default();
        for p in missing.into_iter().rev() {
            match fs::create_dir(&p) {
                Ok(()) => created.0.push(p),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && p.is_dir() => {}
                Err(e) => return Err(path_error("cannot create the directory", &p, e)),
            }
        }
        Ok(created)
    }

    pub fn keep(&mut self) {
        self.0.clear();
    }
}

impl Drop for CreatedDirs {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            fs::remove_dir(p).ok();
        }
    }
}

/// An I/O failure on a path, said in words ("cannot create the directory out/x: Permission
/// denied"), keeping the typed error in the chain.
pub fn path_error(what: &str, path: &Path, e: io::Error) -> anyhow::Error {
    let msg = format!("{what} {}", path.display());
    let full = e.raw_os_error() == Some(28) || e.kind() == io::ErrorKind::StorageFull;
    // tempfile appends a debug-style `at path "..."` to the OS error: the message names the
    // path in words already.
    let text = e.to_string();
    let e = match text.find(" at path \"") {
        Some(i) => io::Error::new(e.kind(), text[..i].to_string()),
        None => e,
    };
    if full {
        return anyhow::Error::new(e).context(format!("{msg}: no space left on the device"));
    }
    anyhow::Error::new(e).context(msg)
}

/// Takes the advisory lock on a temporary, refusing one that a stale-temporary cleaner removed
/// between its creation and the lock (its link count is then 0).
fn lock_fresh(f: &File) -> bool {
    f.try_lock().is_ok() && f.metadata().is_ok_and(|m| m.nlink() > 0)
}

/// Removes temporaries left in `dir` by runs killed outright: those whose advisory lock nobody
/// holds. A live run holds the lock on each of its temporaries until it renames or removes it.
pub fn clean_stale_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(TEMP_PREFIX) || !(name.ends_with(".tmp") || name.ends_with(".old")) {
            continue;
        }
        let p = e.path();
        // Opening a directory read-only works on Linux, and flock applies to it as to a file.
        let Ok(f) = File::open(&p) else { continue };
        if f.try_lock().is_err() {
            continue; // a live run's
        }
        if p.is_dir() {
            fs::remove_dir_all(&p).ok();
        } else {
            fs::remove_file(&p).ok();
        }
    }
}

/// A temporary file beside its destination, locked while it lives.
pub struct Staged {
    tmp: tempfile::NamedTempFile,
    created: CreatedDirs,
}

impl Staged {
    /// A second handle on the temporary, for writing.
    pub fn reopen(&self) -> Result<File> {
        self.tmp
            .reopen()
            .map_err(|e| path_error("cannot reopen the temporary file", self.tmp.path(), e))
    }
}

/// Creates a locked temporary file (mode 0666 minus the umask) in `dir`.
pub fn temp_file_in(dir: &Path) -> Result<tempfile::NamedTempFile> {
    clean_stale_temporaries(dir);
    for _ in 0..16 {
        let tmp = tempfile::Builder::new()
            .prefix(&temp_prefix())
            .suffix(".tmp")
            .permissions(Permissions::from_mode(0o666))
            .tempfile_in(dir)
            .map_err(|e| path_error("cannot create a temporary file in", dir, e))?;
        if lock_fresh(tmp.as_file()) {
            return Ok(tmp);
        }
    }
    Err(anyhow!(
        "cannot create a temporary file in {}: another run keeps removing it",
        dir.display()
    ))
}

/// A locked temporary directory in `dir`, and the handle that holds its lock.
pub fn temp_dir_in(dir: &Path) -> Result<(tempfile::TempDir, File)> {
    clean_stale_temporaries(dir);
    for _ in 0..16 {
        let tmp = tempfile::Builder::new()
            .prefix(&temp_prefix())
            .suffix(".tmp")
            .tempdir_in(dir)
            .map_err(|e| path_error("cannot create a temporary directory in", dir, e))?;
        // Another run's cleaner may remove the directory before it is locked: make another.
        let lock = match File::open(tmp.path()) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(path_error(
                    "cannot open the temporary directory",
                    tmp.path(),
                    e,
                ))
            }
        };
        if lock_fresh(&lock) {
            return Ok((tmp, lock));
        }
    }
    Err(anyhow!(
        "cannot create a temporary directory in {}: another run keeps removing it",
        dir.display()
    ))
}

/// A temporary file beside `path`, creating missing parent directories.
pub fn temp_file_beside(path: &Path) -> Result<Staged> {
    let dir = parent_dir(path);
    let created = CreatedDirs::create(&dir)?;
    let tmp = temp_file_in(&dir)?;
    Ok(Staged { tmp, created })
}

/// Gives `file` the mode `cp` would: that of the file it replaces, if any (the mode it was
/// created with otherwise).
pub fn keep_mode(file: &File, dest: &Path) -> Result<()> {
    if let Ok(m) = fs::metadata(dest) {
        if m.is_file() {
            file.set_permissions(Permissions::from_mode(m.mode() & 0o777))
                .map_err(|e| path_error("cannot set the mode of the output", dest, e))?;
        }
    }
    Ok(())
}

/// Renames the finished temporary over `path`, unless an interrupt arrived. No fsync: like
/// `cp`, durability is the file system's (ext4 and xfs order a rename-over after the data it
/// replaces); the rename keeps readers from ever seeing a partial file.
pub fn persist(staged: Staged, path: &Path) -> Result<()> {
    let Staged { tmp, mut created } = staged;
    crate::pipeline::check_interrupted()?;
    keep_mode(tmp.as_file(), path)?;
    tmp.persist(path)
        .map_err(|e| path_error("cannot move the finished output to", path, e.error))?;
    created.keep();
    Ok(())
}

/// Device and inode of a path (following links), when it exists.
pub fn file_id(path: &Path) -> Option<(u64, u64)> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

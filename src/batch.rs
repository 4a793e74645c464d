//! What makes a batch of conversions survive being killed and checkable afterwards:
//! `--update` (an output newer than all its inputs is left alone, like `cp -u` or make) and
//! `--manifest FILE` (one JSON line per output: input, output, tensors, bytes, sha256).
//! `cmd/convert.rs` asks [`up_to_date`] before planning an output and hands each finished one
//! to [`Manifest::record`]; input times come from `input.rs` (local files, or the
//! `Last-Modified` of remote objects).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};

/// True when `output` exists and is newer than every input; an input whose time cannot be
/// known makes the output out of date.
pub fn up_to_date(output: &Path, inputs: &[PathBuf]) -> bool {
    let Some(out_time) = std::fs::metadata(output).and_then(|m| m.modified()).ok() else {
        return false;
    };
    !inputs.is_empty()
        && inputs
            .iter()
            .all(|i| crate::input::modified(i).is_some_and(|t: SystemTime| t < out_time))
}

/// The `--manifest` file, appended to one line at a time (a single `write` of each line, so
/// that concurrent runs appending to one manifest do not interleave).
pub struct Manifest {
    file: File,
    path: PathBuf,
}

/// What one output holds, for its manifest line.
pub struct Record<'a> {
    pub inputs: &'a [String],
    /// The output path, or `None` for standard output.
    pub output: Option<&'a Path>,
    /// Where the output went when it is an object (`-o s3://…`): named instead of the path.
    pub url: Option<&'a str>,
    pub tensors: u64,
    /// `written`, or `up-to-date` for an output `--update` left alone.
    pub status: &'a str,
}

impl Manifest {
    pub fn open(path: &Path) -> Result<Manifest> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create the directory of {}", path.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the manifest {}", path.display()))?;
        Ok(Manifest {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn record(&mut self, r: &Record) -> Result<()> {
        let (bytes, sha256) = match r.output {
            Some(p) => digest(p)?,
            None => (None, None),
        };
        let inputs: Vec<String> = r
            .inputs
            .iter()
            .map(|i| crate::sink::names::scrub_urls(i))
            .collect();
        let line = json!({
            "input": if inputs.len() == 1 { json!(inputs[0]) } else { json!(inputs) },
            "output": match (r.url, r.output) {
                (Some(u), _) => shown_url(u),
                (None, Some(p)) => p.display().to_string(),
                (None, None) => "-".into(),
            },
            "status": r.status,
            "tensors": r.tensors,
            "bytes": bytes,
            "sha256": sha256,
        });
        let mut text = line.to_string();
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .with_context(|| format!("cannot write to the manifest {}", self.path.display()))
    }
}

fn shown_url(u: &str) -> String {
    #[cfg(feature = "remote")]
    return crate::remote::redact(u);
    #[cfg(not(feature = "remote"))]
    u.to_string()
}

/// Size and SHA-256 of a file, or of every file under a directory (in sorted path order, each
/// hashed as its relative path, a NUL, and its bytes), streamed in 1 MiB pieces.
fn digest(path: &Path) -> Result<(Option<u64>, Option<String>)> {
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut files = Vec::new();
    if path.is_dir() {
        collect(path, path, &mut files)?;
        files.sort();
    } else if path.is_file() {
        files.push(PathBuf::new());
    } else {
        return Ok((None, None)); // a device or pipe
    }
    let mut buf = vec![0u8; 1 << 20];
    for rel in &files {
        let full = if rel.as_os_str().is_empty() {
            path.to_path_buf()
        } else {
            hasher.update(rel.to_string_lossy().as_bytes());
            hasher.update([0]);
            path.join(rel)
        };
        let mut f = File::open(&full).with_context(|| format!("cannot read {}", full.display()))?;
        loop {
            let n = f
                .read(&mut buf)
                .with_context(|| format!("cannot read {}", full.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            total += n as u64;
        }
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((Some(total), Some(hex)))
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            collect(root, &p, out)?;
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.to_path_buf());
        }
    }
    Ok(())
}

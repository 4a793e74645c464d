//! Outputs in object storage: `-o s3://…`, `gs://…`, `az://…` (also `s3a`, `abfs[s]`,
//! `azure`). `cmd/convert.rs` asks [`plan`] about `-o` before anything else: a URL of a store
//! tensor2npy writes to gets a local staging directory (under `$TMPDIR`), and every sink writes
//! there exactly as it writes a local output (so the bytes are those of a local output, whatever
//! `--jobs`); once an output is whole, [`RemoteOutput::upload`] streams it to the store (a
//! multipart upload of 8 MiB parts, at most 4 in flight: bounded memory), completed only then,
//! and aborted on a failure or an interrupt, so that no partial object is ever visible. A
//! directory output becomes one object per file under the URL as a prefix. A URL of any other
//! scheme (`http://`, `foo://`) is a usage mistake, never a local path. The staging directory
//! is removed when the command ends, whatever the outcome. Talks to `remote/` (stores,
//! runtime, error wording).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::usage;

/// Schemes of the stores tensor2npy writes to.
const WRITABLE: &[&str] = &["s3", "s3a", "gs", "az", "abfs", "abfss", "azure"];

/// The scheme of `-o` when it is written as a URL (`scheme://…`), else `None`.
fn scheme_of(output: &Path) -> Option<&str> {
    let (scheme, _) = output.to_str()?.split_once("://")?;
    let valid = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid.then_some(scheme)
}

/// An output in object storage, staged locally until each of its files is whole.
pub struct RemoteOutput {
    /// The URL without a trailing `/`.
    url: String,
    /// What the sinks are told to write: a path inside the staging directory, named as the
    /// URL's last segment so that its extension picks the kind of output.
    local: PathBuf,
    _staging: tempfile::TempDir,
}

/// `None` for a local `-o`; a staged [`RemoteOutput`] for a URL of a store tensor2npy writes
/// to; a usage error for any other URL.
pub fn plan(output: Option<&Path>) -> Result<Option<RemoteOutput>> {
    let Some(output) = output else {
        return Ok(None);
    };
    let Some(scheme) = scheme_of(output) else {
        return Ok(None);
    };
    let text = output.to_string_lossy();
    let shown = shown(&text);
    if !WRITABLE.contains(&scheme.to_ascii_lowercase().as_str()) {
        return Err(usage(format!(
            "-o {shown}: tensor2npy writes to s3://, gs:// and az:// URLs or to local paths, not to {scheme}://"
        )));
    }
    if !cfg!(feature = "remote") {
        return Err(usage(format!(
            "-o {shown}: this build of tensor2npy writes no remote outputs (built without the `remote` feature)"
        )));
    }
    let url = text.trim_end_matches('/').to_string();
    let name = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .and_then(|(_, key)| key.rsplit('/').next())
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .unwrap_or("out")
        .to_string();
    let staging = tempfile::Builder::new()
        .prefix(crate::sink::TEMP_PREFIX)
        .tempdir()
        .context("cannot create a local staging directory for the remote output")?;
    Ok(Some(RemoteOutput {
        url,
        local: staging.path().join(name),
        _staging: staging,
    }))
}

impl RemoteOutput {
    /// The local path the sinks write to in place of the URL.
    pub fn local(&self) -> &Path {
        &self.local
    }

    /// The URL a staged path stands for (`None` for a path outside the staging area).
    pub fn url_of(&self, staged: &Path) -> Option<String> {
        let rel = staged.strip_prefix(&self.local).ok()?;
        Some(join(&self.url, rel))
    }

    /// Uploads the finished output staged at `staged` (a file, or a directory: one object per
    /// file); its URL.
    pub fn upload(&self, staged: &Path) -> Result<String> {
        let url = self
            .url_of(staged)
            .context("internal: an output outside the staging directory")?;
        if staged.is_dir() {
            let mut files = Vec::new();
            walk(staged, &mut files)?;
            files.sort();
            for f in files {
                let rel = f.strip_prefix(staged).unwrap_or(&f);
                upload_file(&f, &join(&url, rel))?;
            }
        } else {
            upload_file(staged, &url)?;
        }
        Ok(url)
    }

    /// Removes the staged copy of an output once it is uploaded (or has failed) and recorded,
    /// so that a batch needs local room for the outputs in progress, not for all of them.
    pub fn release(&self, staged: &Path) {
        if staged.starts_with(&self.local) {
            let _ = match staged.is_dir() {
                true => std::fs::remove_dir_all(staged),
                false => std::fs::remove_file(staged),
            };
        }
    }
}

fn shown(url: &str) -> String {
    #[cfg(feature = "remote")]
    return crate::remote::redact(url);
    #[cfg(not(feature = "remote"))]
    url.to_string()
}

fn join(url: &str, rel: &Path) -> String {
    let rel = rel.to_string_lossy();
    if rel.is_empty() {
        url.to_string()
    } else {
        format!("{url}/{rel}")
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// Parts of a multipart upload (S3 wants at least 5 MiB for all but the last).
#[cfg(feature = "remote")]
const PART: usize = 8 << 20;
/// Parts in flight at once: the memory an upload holds is about `PART * (IN_FLIGHT + 1)`.
#[cfg(feature = "remote")]
const IN_FLIGHT: usize = 4;

/// Streams one local file to one object: a single PUT for a file of one part, else a
/// multipart upload, aborted unless every part went up.
#[cfg(feature = "remote")]
fn upload_file(file: &Path, url: &str) -> Result<()> {
    use object_store::{ObjectStoreExt, WriteMultipart};
    use std::io::Read;
    let shown = crate::remote::redact(url);
    let (store, path) = crate::remote::store_for(url)?;
    let mut f =
        std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    crate::error::check_interrupted()?;
    if size <= PART as u64 {
        let mut data = Vec::with_capacity(size as usize);
        f.read_to_end(&mut data)
            .with_context(|| format!("cannot read {}", file.display()))?;
        crate::remote::block_on(store.put(&path, data.into()))?
            .map_err(|e| crate::remote::describe(e, url))?;
        return Ok(());
    }
    let upload = crate::remote::block_on(store.put_multipart(&path))?
        .map_err(|e| crate::remote::describe(e, url))?;
    let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
    let mut buf = vec![0u8; 1 << 20];
    let sent = (|| -> Result<()> {
        loop {
            crate::error::check_interrupted()?;
            let n = f
                .read(&mut buf)
                .with_context(|| format!("cannot read {}", file.display()))?;
            if n == 0 {
                return Ok(());
            }
            // Inside the runtime: a full part is handed to a task of it at once.
            let chunk = &buf[..n];
            crate::remote::block_on(async {
                w.wait_for_capacity(IN_FLIGHT)
                    .await
                    .map(|()| w.write(chunk))
            })?
            .map_err(|e| crate::remote::describe(e, url))?;
        }
    })();
    match sent {
        Ok(()) => {
            crate::error::check_interrupted()
                .and_then(|()| crate::remote::block_on(w.finish()))
                .and_then(|r| r.map_err(|e| crate::remote::describe(e, url)))
                .with_context(|| format!("cannot upload {shown}"))?;
            Ok(())
        }
        Err(e) => {
            // Not interruptible: the abort is what keeps no partial upload behind.
            if let Ok(rt) = crate::remote::runtime() {
                let _ = rt.block_on(async {
                    tokio::time::timeout(std::time::Duration::from_secs(5), w.abort()).await
                });
            }
            Err(e.context(format!("cannot upload {shown}; the upload was aborted")))
        }
    }
}

#[cfg(not(feature = "remote"))]
fn upload_file(_file: &Path, url: &str) -> Result<()> {
    anyhow::bail!("{url}: built without the `remote` feature")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_unknown_schemes_are_usage_errors_and_paths_stay_local() {
        assert!(plan(Some(Path::new("out/x.npz"))).unwrap().is_none());
        assert!(plan(Some(Path::new("a:b/x.npz"))).unwrap().is_none());
        for bad in ["foo://x/y.npz", "http://host/x.npz", "https://h/x"] {
            let e = plan(Some(Path::new(bad))).err().unwrap();
            assert!(
                e.downcast_ref::<crate::error::UsageError>().is_some(),
                "{bad}"
            );
        }
    }

    #[cfg(feature = "remote")]
    #[test]
    fn staged_paths_map_to_urls_under_the_prefix() {
        let r = plan(Some(Path::new("s3://b/out/x.npz"))).unwrap().unwrap();
        assert_eq!(r.local().file_name().unwrap(), "x.npz");
        assert_eq!(r.url_of(r.local()).unwrap(), "s3://b/out/x.npz");
        let r = plan(Some(Path::new("s3://b/out/"))).unwrap().unwrap();
        assert_eq!(
            r.url_of(&r.local().join("m.npz")).unwrap(),
            "s3://b/out/m.npz"
        );
        assert!(r.url_of(Path::new("/elsewhere")).is_none());
    }
}

//! What makes a batch of conversions survive being killed, retried and audited: `--manifest
//! FILE` (one JSON line per output, appended the moment that output is complete: its inputs
//! and their identity, the options fingerprint, the tool version, the status — written, up to
//! date, or failed with its error — tensors, bytes and sha256) and `--update` (an output is
//! left alone only when the manifest says the same inputs, unchanged, and the same options made
//! it; without a manifest to ask, when it is newer than all its inputs, like `cp -u`).
//! `cmd/convert.rs` computes [`fingerprint`] and [`identity`], asks [`up_to_date`] before
//! planning an output and hands each finished or failed one to [`Manifest::record`]; input
//! times and identities come from `input.rs` / `remote/` (local files, or remote objects'
//! size, ETag and `Last-Modified`).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::cli::ConvertArgs;

/// A fingerprint (16 hex digits of a SHA-256) of the options that shape an output: everything
/// of the command line but the inputs, the output, and the options that change only how the
/// work is done (`--jobs`, `--chunk-size`, `--quiet`, `--update`, `--manifest`, `--stats`,
/// `--request-timeout`).
pub fn fingerprint(args: &mut ConvertArgs) -> String {
    let inputs = std::mem::take(&mut args.input.inputs);
    let timeout = args.input.request_timeout.take();
    let shaping = format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        args.input,
        args.to,
        args.compress,
        args.dtypes,
        args.sparse,
        args.ragged,
        args.fill,
        args.sparse_duplicates,
        args.max_dense_bytes,
        args.skip_unsupported,
        args.device,
        args.adapter,
    );
    args.input.inputs = inputs;
    args.input.request_timeout = timeout;
    hex(&Sha256::digest(shaping.as_bytes()))[..16].to_string()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// What identifies the inputs as they are now: per file, its size and modification time (ns
/// since the epoch), or a remote object's size, ETag and time. `null` for one that cannot be
/// looked up (standard input, a pipe): such an input is never up to date.
pub fn identity(files: &[PathBuf]) -> Value {
    Value::Array(
        files
            .iter()
            .map(|f| {
                let path = crate::sink::names::scrub_urls(&f.display().to_string());
                match file_identity(f) {
                    Some(mut id) => {
                        id["path"] = json!(path);
                        id
                    }
                    None => json!({ "path": path, "size": null }),
                }
            })
            .collect(),
    )
}

fn file_identity(f: &Path) -> Option<Value> {
    if let Some(url) = crate::input::url_of(f) {
        #[cfg(feature = "remote")]
        return crate::remote::identity(url)
            .or_else(|| crate::remote::identity(&format!("{url}.index")));
        #[cfg(not(feature = "remote"))]
        return {
            let _ = url;
            None
        };
    }
    let m = std::fs::metadata(f)
        .or_else(|_| std::fs::metadata(crate::input::with_suffix(f, ".index")))
        .ok()?;
    if !(m.is_file() || m.is_dir()) {
        return None;
    }
    let ns = m
        .modified()
        .ok()?
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(json!({ "size": m.len(), "mtime_ns": ns.to_string() }))
}

/// Whether the output `shown` (a path or a URL) is to be left alone by `--update`. With a
/// manifest that can be read back: when its latest line for this output says it was written
/// (or found up to date) from inputs of this `identity` with options of this `fingerprint`,
/// and the output is still there; the line is returned. Without one: when the output is newer
/// than every input (`Value::Null` then).
pub fn up_to_date(
    shown: &Path,
    inputs: &[PathBuf],
    manifest: Option<&Manifest>,
    identity: &Value,
    fingerprint: &str,
) -> Option<Value> {
    let exists = crate::input::is_file(shown) || crate::input::is_dir(shown);
    if let Some(history) = manifest.and_then(|m| m.history.as_ref()) {
        let name = crate::sink::names::scrub_urls(&shown.display().to_string());
        let last = history.iter().rev().find(|l| {
            l["output"] == json!(name) && (l["status"] == "written" || l["status"] == "up-to-date")
        })?;
        let known = identity
            .as_array()
            .is_some_and(|a| a.iter().all(|i| !i["size"].is_null()));
        return (exists
            && known
            && last["identity"] == *identity
            && last["options"] == json!(fingerprint))
        .then(|| last.clone());
    }
    let out_time = crate::input::modified(shown)?;
    (exists
        && !inputs.is_empty()
        && inputs
            .iter()
            .all(|i| crate::input::modified(i).is_some_and(|t: SystemTime| t < out_time)))
    .then_some(Value::Null)
}

/// The `--manifest` file (or standard output for `-`), appended to one line at a time: each
/// line is a single `write` to a file opened with `O_APPEND`, so that concurrent runs (and
/// `--jobs` workers) appending to one manifest never interleave.
pub struct Manifest {
    out: Mutex<Box<dyn Write + Send>>,
    name: String,
    /// The lines already in the file when it was opened (`None` for standard output).
    history: Option<Vec<Value>>,
}

/// What one output holds, for its manifest line.
pub struct Record<'a> {
    pub inputs: &'a [String],
    /// The output path, or `None` for standard output.
    pub output: Option<&'a Path>,
    /// Where the output went when it is an object (`-o s3://…`): named instead of the path.
    pub url: Option<&'a str>,
    pub tensors: u64,
    /// `written`, `up-to-date` (`--update` left it alone) or `failed`.
    pub status: &'a str,
    /// The failure, for `failed`.
    pub error: Option<String>,
    /// The inputs' [`identity`] and the options' [`fingerprint`].
    pub identity: &'a Value,
    pub fingerprint: &'a str,
    /// For `up-to-date`: the line that recorded the output, whose bytes and sha256 stand.
    pub previous: Option<&'a Value>,
    /// For `written`: the size and SHA-256 the sink computed while writing; without it, an
    /// output file is read back (an archive filled by `--jobs` workers).
    pub digest: Option<&'a crate::sink::digest::Digest>,
}

impl Manifest {
    pub fn open(path: &Path) -> Result<Manifest> {
        if path.as_os_str() == "-" {
            return Ok(Manifest {
                out: Mutex::new(Box::new(std::io::stdout())),
                name: "standard output".into(),
                history: None,
            });
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create the directory of {}", path.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .with_context(|| format!("cannot open the manifest {}", path.display()))?;
        let mut text = String::new();
        (&file)
            .read_to_string(&mut text)
            .with_context(|| format!("cannot read the manifest {}", path.display()))?;
        let history = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        Ok(Manifest {
            out: Mutex::new(Box::new(file)),
            name: path.display().to_string(),
            history: Some(history),
        })
    }

    pub fn record(&self, r: &Record) -> Result<()> {
        let (bytes, sha256) = match (r.previous, r.digest, r.output) {
            (Some(p), _, _) if !p.is_null() => {
                (p["bytes"].as_u64(), p["sha256"].as_str().map(String::from))
            }
            _ if r.status == "failed" => (None, None),
            (_, Some(d), _) => (Some(d.bytes), Some(d.sha256.clone())),
            (_, None, Some(p)) => digest(p)?,
            _ => (None, None),
        };
        let inputs: Vec<String> = r
            .inputs
            .iter()
            .map(|i| crate::sink::names::scrub_urls(i))
            .collect();
        let mut line = json!({
            "input": if inputs.len() == 1 { json!(inputs[0]) } else { json!(inputs) },
            "output": match (r.url, r.output) {
                (Some(u), _) => crate::sink::names::scrub_urls(u),
                (None, Some(p)) => crate::sink::names::scrub_urls(&p.display().to_string()),
                (None, None) => "-".into(),
            },
            "status": r.status,
            "tensors": r.tensors,
            "bytes": bytes,
            "sha256": sha256,
            "identity": r.identity,
            "options": r.fingerprint,
            "version": env!("CARGO_PKG_VERSION"),
        });
        if let Some(e) = &r.error {
            line["error"] = json!(crate::sink::names::scrub_urls(e));
        }
        let mut text = line.to_string();
        text.push('\n');
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .with_context(|| format!("cannot write to the manifest {}", self.name))
    }
}

/// Size and SHA-256 of an output file the sink could not hash while writing (an archive whose
/// members `--jobs` workers filled), read back in 1 MiB pieces; none for a device, a pipe or a
/// directory (a directory's sink always hashes the files it writes).
fn digest(path: &Path) -> Result<(Option<u64>, Option<String>)> {
    if !path.is_file() {
        return Ok((None, None));
    }
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((Some(total), Some(hex(&hasher.finalize()))))
}

//! Remote inputs: `s3://`, `gs://`, `az://` (also `abfs[s]://`, `azure://`) and `http[s]://`
//! URLs, read by ranged GETs through Apache Arrow's `object_store` crate on a small tokio
//! runtime, so that every reader sees a remote object as one more kind of `FileRange`
//! (`input.rs` owns that type and calls [`RemoteFile::read_at`]).
//!
//! Reads are bounded and fast: a cold read fetches a small range (64 KiB), sequential reads
//! double the window up to 8 MiB and split it into several GETs in flight (a tensor streamed
//! whole says so first, [`RemoteFile::expect`], and starts at its own length); at most 24 MiB of
//! fetched segments are kept per object, and 48 MiB per run (the caches of objects not being
//! read are emptied past that). So `list` of a large checkpoint fetches its index and headers,
//! not its data. Every GET carries `If-Match` with the ETag of the first `HEAD`, so an object
//! that changes between reads fails instead of mixing two versions. Transient failures are
//! retried with backoff by object_store (a bounded number of times), then reported naming the
//! object. Credentials and endpoints come from each cloud's standard environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
//! `AWS_ALLOW_HTTP`, ...; `GOOGLE_*`; `AZURE_*`) and, for S3, the AWS CLI's
//! `~/.aws/credentials` profile; no credential is ever printed (messages name the URL only,
//! without any user-info part). Connecting (the runtime, one store per scheme and host, the
//! credentials, timeouts and retries) is `store.rs`; this file reads and lists objects.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

mod store;

use store::aws_profile;
pub(crate) use store::{block_on, runtime, store_for};
pub use store::{redact, set_request_timeout};

use anyhow::{anyhow, bail, Context, Result};
use object_store::path::Path as ObjPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

/// The first read of a cold position fetches this much.
const MIN_WINDOW: u64 = 64 << 10;
/// Sequential reads grow the window up to this.
const MAX_WINDOW: u64 = 8 << 20;
/// A window at least this large is split into parallel GETs of this size.
const PART: u64 = 2 << 20;
/// Fetched bytes kept for later reads, per object.
const CACHE_BYTES: usize = 24 << 20;
/// Fetched bytes kept by all the objects of a run together: past this, the caches of objects
/// not being read at the moment are emptied (an input that is finished holds none), so memory
/// is bounded per run, not per input.
const RUN_CACHE_BYTES: usize = 48 << 20;

/// Bytes held by every object's cache.
static CACHED_TOTAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Every open object's cache, for [`trim_others`].
fn caches() -> &'static Mutex<Vec<std::sync::Weak<Mutex<State>>>> {
    static CACHES: OnceLock<Mutex<Vec<std::sync::Weak<Mutex<State>>>>> = OnceLock::new();
    CACHES.get_or_init(Default::default)
}

/// Empties the caches of objects other than `own` that nobody is reading right now, until the
/// run's cached bytes are within [`RUN_CACHE_BYTES`].
fn trim_others(own: &Arc<Mutex<State>>) {
    use std::sync::atomic::Ordering::Relaxed;
    if CACHED_TOTAL.load(Relaxed) <= RUN_CACHE_BYTES {
        return;
    }
    let mut all = caches().lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|w| w.strong_count() > 0);
    for w in all.iter() {
        if CACHED_TOTAL.load(Relaxed) <= RUN_CACHE_BYTES {
            break;
        }
        let Some(other) = w.upgrade() else { continue };
        if Arc::ptr_eq(&other, own) {
            continue;
        }
        // Never wait for another reader: one that is busy keeps its cache for now.
        let got = other.try_lock();
        if let Ok(mut st) = got {
            st.clear();
        }
    }
}

/// A remote failure as one message: the URL once, each cause once (`error::chain_text`), and,
/// when no credentials were found, where they may come from.
pub(crate) fn describe(e: object_store::Error, url: &str) -> anyhow::Error {
    let shown = redact(url);
    let hint = match missing_credentials(url) {
        Some(h) if credentials_matter(&e) => format!(" ({h})"),
        _ => String::new(),
    };
    let cause = |e: object_store::Error| {
        anyhow::Error::new(crate::error::Quoted {
            text: crate::error::chain_text(&e),
            inner: e,
        })
    };
    match e {
        object_store::Error::NotFound { .. } => anyhow!("{shown}: no such object"),
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            match hint.is_empty() {
                true => anyhow!("{shown}: access denied (check the credentials in the environment)"),
                false => anyhow!("{shown}: access denied{hint}"),
            }
        }
        object_store::Error::Precondition { .. } => anyhow!(
            "{shown}: the object changed while it was being read (its ETag no longer matches); nothing was written"
        ),
        other if transient(&other) => cause(other).context(crate::error::Transient(format!(
            "{shown}: remote request failed (a transient failure: retrying later may succeed){hint}"
        ))),
        other => cause(other).context(format!("{shown}: remote request failed{hint}")),
    }
}

/// Whether a failure may come from credentials: access denied, or a request for them (the
/// instance metadata endpoint object_store asks when none are set).
fn credentials_matter(e: &object_store::Error) -> bool {
    let mut text = String::new();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        text.push_str(&c.to_string().to_lowercase());
        cause = c.source();
    }
    matches!(
        e,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || text.contains("credential")
        || text.contains("token")
        || text.contains("169.254.169.254")
}

/// When no credentials are configured for `url`'s store: which variables or profile supply
/// them. `None` when some are set (or the scheme takes none: http).
pub(crate) fn missing_credentials(url: &str) -> Option<String> {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    let any = |ks: &[&str]| ks.iter().any(|k| set(k));
    let scheme = url.split_once("://")?.0;
    match scheme {
        "s3" | "s3a" => {
            let found = any(&[
                "AWS_ACCESS_KEY_ID",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            ]) || std::env::var("AWS_SKIP_SIGNATURE").is_ok_and(|v| v == "true")
                || aws_profile().iter().any(|(k, _)| k == "aws_access_key_id");
            (!found).then(|| {
                "no S3 credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones), or AWS_PROFILE with a profile in ~/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE); AWS_WEB_IDENTITY_TOKEN_FILE or an instance role also serve, and AWS_SKIP_SIGNATURE=true reads a public bucket".to_string()
            })
        }
        "gs" => (!any(&[
            "GOOGLE_SERVICE_ACCOUNT",
            "GOOGLE_SERVICE_ACCOUNT_PATH",
            "GOOGLE_SERVICE_ACCOUNT_KEY",
            "GOOGLE_APPLICATION_CREDENTIALS",
        ]))
        .then(|| {
            "no Google Cloud credentials were found: set GOOGLE_APPLICATION_CREDENTIALS (or GOOGLE_SERVICE_ACCOUNT_PATH) to a service account key file, or GOOGLE_SERVICE_ACCOUNT_KEY to its JSON".to_string()
        }),
        "az" | "abfs" | "abfss" | "azure" => (!any(&[
            "AZURE_STORAGE_ACCOUNT_KEY",
            "AZURE_STORAGE_ACCESS_KEY",
            "AZURE_STORAGE_SAS_TOKEN",
            "AZURE_CLIENT_SECRET",
            "AZURE_FEDERATED_TOKEN_FILE",
            "AZURE_STORAGE_USE_EMULATOR",
        ]))
        .then(|| {
            "no Azure credentials were found: set AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN, or AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET".to_string()
        }),
        _ => None,
    }
}

/// Whether a failure that outlasted object_store's retries may pass when the whole command is
/// retried: a refused, reset or timed-out connection, throttling (429, SlowDown) or a server
/// error (5xx). A missing object, denied access, a bad request are not.
pub(crate) fn transient(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind as K;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut text = String::new();
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if crate::error::lost_connection(io.kind())
                || matches!(io.kind(), K::BrokenPipe | K::UnexpectedEof)
            {
                return true;
            }
        }
        text.push_str(&c.to_string().to_lowercase());
        text.push('\n');
        cause = c.source();
    }
    [
        "timed out",
        "timeout",
        "connection refused",
        "connection reset",
        "connection closed",
        "error sending request",
        "broken pipe",
        "status code: 5",
        "status code: 429",
        "too many requests",
        "slowdown",
        "slow down",
        "throttl",
        "service unavailable",
        "error decoding response body",
    ]
    .iter()
    .any(|w| text.contains(w))
}

/// One remote object, read at any offset.
pub struct RemoteFile {
    url: String,
    store: Arc<dyn ObjectStore>,
    path: ObjPath,
    size: u64,
    e_tag: Option<String>,
    state: Arc<Mutex<State>>,
}

impl Drop for RemoteFile {
    fn drop(&mut self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl std::fmt::Debug for RemoteFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteFile({}, {} bytes)", redact(&self.url), self.size)
    }
}

impl State {
    /// Drops every cached segment.
    fn clear(&mut self) {
        CACHED_TOTAL.fetch_sub(self.cached, std::sync::atomic::Ordering::Relaxed);
        self.cached = 0;
        self.segments.clear();
    }
}

#[derive(Default)]
struct State {
    /// Fetched segments, newest last: (start offset, bytes).
    segments: VecDeque<(u64, bytes::Bytes)>,
    cached: usize,
    /// Per reading thread (each `--jobs` worker keeps its own read window, so that workers
    /// reading different tensors of one object do not reset each other's): where its last
    /// fetch ended, and the window it used.
    windows: HashMap<std::thread::ThreadId, (u64, u64)>,
}

impl RemoteFile {
    /// Looks the object up (`HEAD`): its size and ETag.
    pub fn open(url: &str) -> Result<RemoteFile> {
        let (store, path) = store_for(url)?;
        let meta = block_on(store.head(&path))?.map_err(|e| describe(e, url))?;
        let state = Arc::new(Mutex::default());
        caches()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(&state));
        Ok(RemoteFile {
            url: url.to_string(),
            store,
            path,
            size: meta.size,
            e_tag: meta.e_tag,
            state,
        })
    }

    pub fn len(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Says that the calling thread is about to read `len` bytes from `pos` in order (a tensor
    /// streamed whole), so that its first fetch takes them at once, up to the largest window and
    /// split into GETs in flight, instead of growing from the smallest: a `--jobs` worker's
    /// next tensor rarely starts where its last read ended, which restarted its window.
    pub fn expect(&self, pos: u64, len: u64) {
        let me = std::thread::current().id();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.windows.len() > 256 {
            st.windows.clear();
        }
        // The first read at `pos` doubles this to the whole range (at most MAX_WINDOW).
        st.windows.insert(me, (pos, len.min(MAX_WINDOW) / 2));
    }

    /// Fills `buf` from `pos`; the caller has checked that the range lies inside the object.
    pub fn read_at(&self, mut pos: u64, mut buf: &mut [u8]) -> Result<()> {
        let me = std::thread::current().id();
        while !buf.is_empty() {
            let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = copy_cached(&st.segments, pos, buf) {
                pos += n as u64;
                buf = &mut buf[n..];
                continue;
            }
            let window = match st.windows.get(&me) {
                Some(&(last_end, w)) if pos == last_end && w > 0 => (w * 2).min(MAX_WINDOW),
                _ => MIN_WINDOW,
            };
            let want = window.max(buf.len() as u64).min(self.size - pos);
            // The lock is not held while the bytes travel: other workers read on meanwhile.
            drop(st);
            let parts = self.fetch(pos..pos + want)?;
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.windows.len() > 256 {
                st.windows.clear();
            }
            st.windows.insert(me, (pos + want, window));
            let mut at = pos;
            for bytes in parts {
                let n = bytes.len();
                st.cached += n;
                CACHED_TOTAL.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                st.segments.push_back((at, bytes));
                at += n as u64;
            }
            while st.cached > CACHE_BYTES && st.segments.len() > 1 {
                if let Some((_, old)) = st.segments.pop_front() {
                    st.cached -= old.len();
                    CACHED_TOTAL.fetch_sub(old.len(), std::sync::atomic::Ordering::Relaxed);
                }
            }
            // Copied from the segments just fetched, even if another thread evicted older ones.
            let n = copy_cached(&st.segments, pos, buf).unwrap_or(0);
            pos += n as u64;
            buf = &mut buf[n..];
            drop(st);
            trim_others(&self.state);
        }
        Ok(())
    }

    /// GETs `range` as parts of at most `PART` bytes, all in flight at once.
    fn fetch(&self, range: Range<u64>) -> Result<Vec<bytes::Bytes>> {
        let mut ranges = Vec::new();
        let mut at = range.start;
        while at < range.end {
            let end = (at + PART).min(range.end);
            ranges.push(at..end);
            at = end;
        }
        let parts = block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for (i, r) in ranges.iter().cloned().enumerate() {
                let (store, path, e_tag) =
                    (self.store.clone(), self.path.clone(), self.e_tag.clone());
                set.spawn(async move {
                    let opts = GetOptions {
                        if_match: e_tag,
                        range: Some(GetRange::Bounded(r)),
                        ..Default::default()
                    };
                    let got = store.get_opts(&path, opts).await?;
                    Ok::<_, object_store::Error>((i, got.bytes().await?))
                });
            }
            let mut parts = vec![bytes::Bytes::new(); ranges.len()];
            while let Some(res) = set.join_next().await {
                let (i, b) = res
                    .context("a remote read task failed")?
                    .map_err(|e| describe(e, &self.url))?;
                parts[i] = b;
            }
            Ok::<_, anyhow::Error>(parts)
        })??;
        for (r, p) in ranges.iter().zip(&parts) {
            if p.len() as u64 != r.end - r.start {
                bail!(
                    "{}: the server returned {} bytes for a range of {} (bytes {}..{}); it may not support range requests",
                    redact(&self.url),
                    p.len(),
                    r.end - r.start,
                    r.start,
                    r.end
                );
            }
        }
        Ok(parts)
    }
}

/// Copies what the cached segments hold at `pos` into `buf`; the number of bytes copied.
fn copy_cached(
    segments: &VecDeque<(u64, bytes::Bytes)>,
    pos: u64,
    buf: &mut [u8],
) -> Option<usize> {
    segments.iter().rev().find_map(|(start, b)| {
        let end = start + b.len() as u64;
        (pos >= *start && pos < end).then(|| {
            let from = (pos - start) as usize;
            let n = buf.len().min(b.len() - from);
            buf[..n].copy_from_slice(&b[from..from + n]);
            n
        })
    })
}

/// True when the object exists.
pub fn exists(url: &str) -> bool {
    let Ok((store, path)) = store_for(url) else {
        return false;
    };
    block_on(store.head(&path)).is_ok_and(|r| r.is_ok())
}

/// When the object was last modified (`Last-Modified` of a `HEAD`).
pub fn modified(url: &str) -> Option<std::time::SystemTime> {
    let (store, path) = store_for(url).ok()?;
    let meta = block_on(store.head(&path)).ok()?.ok()?;
    Some(meta.last_modified.into())
}

/// An object's identity for `--update` and the manifest: its size, ETag and `Last-Modified`.
pub fn identity(url: &str) -> Option<serde_json::Value> {
    let (store, path) = store_for(url).ok()?;
    let meta = block_on(store.head(&path)).ok()?.ok()?;
    Some(serde_json::json!({
        "size": meta.size,
        "etag": meta.e_tag,
        "modified": meta.last_modified.to_rfc3339(),
    }))
}

/// True when objects exist under `url/` (a "directory" of a bucket). HTTP servers cannot be
/// listed: there, a directory is never recognised.
pub fn is_dir(url: &str) -> bool {
    if url.starts_with("http://") || url.starts_with("https://") {
        return false;
    }
    let Ok((store, path)) = store_for(url) else {
        return false;
    };
    block_on(store.list_with_delimiter(Some(&path)))
        .ok()
        .and_then(|r| r.ok())
        .is_some_and(|l| !l.objects.is_empty() || !l.common_prefixes.is_empty())
}

/// The names of the objects directly under `url/` (one level, like a directory listing), sorted;
/// for the members of a model folder in a bucket.
pub fn list(url: &str) -> Result<Vec<String>> {
    let (store, path) = store_for(url)?;
    let listing = runtime()?
        .block_on(store.list_with_delimiter(Some(&path)))
        .with_context(|| format!("cannot list {}", redact(url)))?;
    let mut names: Vec<String> = listing
        .objects
        .iter()
        .filter_map(|o| o.location.filename().map(String::from))
        .collect();
    names.sort();
    Ok(names)
}

/// The names of the "sub-directories" (common prefixes) under `url/`.
pub fn list_dirs(url: &str) -> Result<Vec<String>> {
    let (store, path) = store_for(url)?;
    let listed = runtime()?
        .block_on(store.list_with_delimiter(Some(&path)))
        .with_context(|| format!("cannot list {}", redact(url)))?;
    Ok(listed
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .collect())
}

/// The whole of a small object (a `checkpoint` state file), at most `limit` bytes.
pub fn read_small(url: &str, limit: u64) -> Result<Vec<u8>> {
    let f = RemoteFile::open(url)?;
    if f.size > limit {
        bail!("{}: {} bytes is larger than expected", redact(url), f.size);
    }
    let mut v = vec![0u8; f.size as usize];
    f.read_at(0, &mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_recognised_and_redacted() {
        use crate::input::url_of;
        use std::path::Path;
        assert!(url_of(Path::new("s3://bucket/key")).is_some());
        assert!(url_of(Path::new("https://host/x.safetensors")).is_some());
        assert!(url_of(Path::new("s3://")).is_none());
        assert!(url_of(Path::new("model.safetensors")).is_none());
        assert!(url_of(Path::new("file:///x")).is_none());
        assert_eq!(
            redact("https://user:secret@host/x?X-Amz-Signature=abc"),
            "https://***@host/x?***"
        );
    }
}

//! Connecting to object storage: the I/O runtime, the store serving each URL (one per scheme
//! and host, configured from each cloud's environment variables and, for S3, the AWS CLI's
//! profile), the per-request timeout, the retry policy, and `block_on`, which gives up on
//! SIGINT/SIGTERM. Used by `remote/mod.rs` (reads, listings) and `remote_out.rs` (uploads).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use object_store::path::Path as ObjPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

pub(crate) fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| anyhow!("cannot start the I/O runtime for remote inputs: {e}"))
}

/// A URL for messages, manifests and listings: its user-info (`https://user:secret@host/...`)
/// and its query string (which may hold a presigned URL's signature) become `***`.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if !u.username().is_empty() || u.password().is_some() {
                let _ = u.set_username("***");
                let _ = u.set_password(None);
            }
            if u.query().is_some() {
                u.set_query(Some("***"));
            }
            u.to_string()
        }
        // Not a URL the parser takes: cut what could be user-info or a query.
        Err(_) => match url.split_once("://") {
            Some((scheme, rest)) => {
                let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
                match rest.split_once('?') {
                    Some((r, _)) => format!("{scheme}://{r}?***"),
                    None => format!("{scheme}://{rest}"),
                }
            }
            None => url.to_string(),
        },
    }
}

/// The per-request timeout of remote reads and uploads (`--request-timeout`), set once by the
/// command before the first request; object_store's default (30 s) otherwise.
static REQUEST_TIMEOUT: OnceLock<Duration> = OnceLock::new();

/// Sets the per-request timeout (the first call wins).
pub fn set_request_timeout(t: Duration) {
    let _ = REQUEST_TIMEOUT.set(t);
}

/// The timeout as client settings (`timeout`, `connect_timeout`): set through each builder's
/// configuration keys, so that the settings it takes from the environment stay.
fn timeouts() -> Vec<(&'static str, String)> {
    match REQUEST_TIMEOUT.get() {
        Some(t) => {
            let v = format!("{}ms", t.as_millis().max(1));
            vec![("timeout", v.clone()), ("connect_timeout", v)]
        }
        None => Vec::new(),
    }
}

fn client_options() -> ClientOptions {
    let mut o = ClientOptions::new();
    if let Some(t) = REQUEST_TIMEOUT.get() {
        o = o.with_timeout(*t).with_connect_timeout(*t);
    }
    o
}

/// Runs `fut` on the I/O runtime, giving up within 100 ms of SIGINT / SIGTERM (or of this
/// thread's work being called off), even while a request is blocked on a stalled server.
pub(crate) fn block_on<F: std::future::Future>(fut: F) -> Result<F::Output> {
    let rt = runtime()?;
    rt.block_on(async {
        tokio::select! {
            out = fut => Ok(out),
            e = async {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if let Err(e) = crate::error::check_interrupted() {
                        break e;
                    }
                }
            } => Err(e),
        }
    })
}

fn retry() -> RetryConfig {
    RetryConfig {
        max_retries: 4,
        retry_timeout: Duration::from_secs(60),
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
    }
}

/// The store serving `url` (one per scheme and host, kept for sibling objects such as
/// checkpoint shards) and the object's path in it.
pub(crate) fn store_for(url: &str) -> Result<(Arc<dyn ObjectStore>, ObjPath)> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    let parsed = url::Url::parse(url).with_context(|| format!("invalid URL {}", redact(url)))?;
    let host = parsed.host_str().unwrap_or_default().to_string();
    // A query string (a presigned URL's signature) is sent with every request of the store.
    let query = parsed.query().map(str::to_string);
    let key = format!(
        "{}://{}:{:?}?{}",
        parsed.scheme(),
        host,
        parsed.port(),
        query.as_deref().unwrap_or_default()
    );
    let path = ObjPath::from_url_path(parsed.path())
        .with_context(|| format!("invalid object path in {}", redact(url)))?;
    let mut stores = STORES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(s) = stores.get(&key) {
        return Ok((s.clone(), path));
    }
    // reqwest is built without a crypto provider of its own (Cargo.toml: ring, not aws-lc-rs);
    // ring's is the process default before any client exists. Err: one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store: Arc<dyn ObjectStore> = match parsed.scheme() {
        "s3" | "s3a" => {
            let mut b = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(&host)
                .with_retry(retry());
            for (k, v) in timeouts() {
                b = b.with_config(k.parse()?, v);
            }
            for (k, v) in aws_profile() {
                if std::env::var_os(k.to_ascii_uppercase()).is_none() {
                    if let Ok(key) = k.parse() {
                        b = b.with_config(key, v);
                    }
                }
            }
            Arc::new(b.build().context("cannot set up S3 access")?)
        }
        "gs" => {
            let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(&host)
                .with_retry(retry());
            for (k, v) in timeouts() {
                b = b.with_config(k.parse()?, v);
            }
            Arc::new(
                b.build()
                    .context("cannot set up Google Cloud Storage access")?,
            )
        }
        "az" | "abfs" | "abfss" | "azure" => {
            let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url)
                .with_retry(retry());
            for (k, v) in timeouts() {
                b = b.with_config(k.parse()?, v);
            }
            Arc::new(b.build().context("cannot set up Azure access")?)
        }
        "http" | "https" => {
            let origin = match &query {
                Some(q) => format!("{}/?{q}", parsed.origin().ascii_serialization()),
                None => parsed.origin().ascii_serialization(),
            };
            Arc::new(
                object_store::http::HttpBuilder::new()
                    .with_url(origin)
                    .with_client_options(client_options().with_allow_http(true))
                    .with_retry(retry())
                    .build()
                    .context("cannot set up HTTP access")?,
            )
        }
        other => bail!("unsupported URL scheme {other}://"),
    };
    stores.insert(key, store.clone());
    Ok((store, path))
}

/// `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token` and `region` of the AWS
/// CLI's profile (`AWS_PROFILE`, default `default`) in `AWS_SHARED_CREDENTIALS_FILE` or
/// `~/.aws/credentials`, and `AWS_CONFIG_FILE` or `~/.aws/config`; environment variables win.
pub(super) fn aws_profile() -> Vec<(String, String)> {
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let home = std::env::var("HOME").unwrap_or_default();
    let creds = std::env::var("AWS_SHARED_CREDENTIALS_FILE")
        .unwrap_or_else(|_| format!("{home}/.aws/credentials"));
    let config = std::env::var("AWS_CONFIG_FILE").unwrap_or_else(|_| format!("{home}/.aws/config"));
    let mut out = Vec::new();
    for (file, section) in [
        (creds, profile.clone()),
        (config, format!("profile {profile}")),
        (String::new(), String::new()),
    ] {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let mut inside = false;
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                let name = name.trim();
                inside = name == section || (section.starts_with("profile ") && name == profile);
                continue;
            }
            if !inside {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                let k = k.trim().to_ascii_lowercase();
                let k = if k == "region" {
                    "aws_region".into()
                } else {
                    k
                };
                if matches!(
                    &k[..],
                    "aws_access_key_id"
                        | "aws_secret_access_key"
                        | "aws_session_token"
                        | "aws_region"
                ) {
                    out.push((k, v.trim().to_string()));
                }
            }
        }
    }
    out
}

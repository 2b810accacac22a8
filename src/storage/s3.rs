//! The S3-compatible repository kind (AWS S3, MinIO, Ceph, any S3 gateway) over the
//! Apache Arrow `object_store` client: SigV4 signing, the AWS credential chain, retries
//! with backoff, multipart uploads. The interface is synchronous; every call is driven on
//! one process-wide tokio runtime of its own (never dropped, so a repository may be
//! dropped anywhere). Credentials come from the standard AWS chain only and never appear
//! in a message.

use std::future::Future;
use std::io::{self, Read, Write};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsAuthorizer};
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, PutPayload, RetryConfig, WriteMultipart,
};

use super::config::S3Settings;
use super::{Backend, ObjectInfo, Sink};
use crate::error::Error;

/// The environment variables of the AWS credential chain that opsctl reads (credentials,
/// region, web identity, container and instance credentials). Nothing else of `AWS_*`
/// (endpoints, signing switches) changes what the policy says.
const CHAIN_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_METADATA_ENDPOINT",
    "AWS_IMDSV1_FALLBACK",
];

/// Variables whose values are secrets: removed from every message opsctl prints.
pub const SECRET_VARS: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
];

/// The runtime every S3 call runs on (two workers: parts upload while the caller
/// compresses and encrypts the next one).
fn runtime() -> Result<&'static tokio::runtime::Runtime, Error> {
    static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("opsctl-s3")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| Error::Other(format!("cannot start the S3 client runtime: {e}")))
}

/// Runs `f` to completion on the S3 runtime, from any thread (from inside another
/// runtime's task too: then on a scoped thread, as a runtime cannot block inside one).
fn run<F>(f: F) -> Result<F::Output, Error>
where
    F: Future + Send,
    F::Output: Send,
{
    let rt = runtime()?;
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(|| rt.block_on(f))
                .join()
                .map_err(|_| Error::Other("the S3 client thread panicked".into()))
        })
    } else {
        Ok(rt.block_on(f))
    }
}

/// Static credentials read from a shared credentials file (`AWS_PROFILE`).
struct ProfileCredentials {
    key_id: String,
    secret: String,
    token: Option<String>,
}

fn home_aws_file(env_var: &str, name: &str) -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os(env_var) {
        return Some(p.into());
    }
    std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".aws").join(name))
}

/// The `key = value` pairs of section `section` of an INI-style AWS file.
fn ini_section(text: &str, section: &str) -> Option<Vec<(String, String)>> {
    let mut found = None;
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.trim().to_string());
            if current.as_deref() == Some(section) {
                found.get_or_insert_with(Vec::new);
            }
            continue;
        }
        if current.as_deref() == Some(section) {
            if let Some((k, v)) = line.split_once('=') {
                found
                    .get_or_insert_with(Vec::new)
                    .push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
    }
    found
}

/// The profile's credentials from `AWS_SHARED_CREDENTIALS_FILE` (else
/// `~/.aws/credentials`): `None` when no profile was asked for and the file has no
/// `[default]`; an error when `AWS_PROFILE` names a profile that is not there.
fn profile_credentials() -> Result<Option<ProfileCredentials>, Error> {
    let asked = std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty());
    let profile = asked.clone().unwrap_or_else(|| "default".into());
    let Some(path) = home_aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials") else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if asked.is_none() && e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Config(format!(
                "AWS_PROFILE={profile}: cannot read the credentials file {}: {e}",
                path.display()
            )))
        }
    };
    let Some(pairs) = ini_section(&text, &profile) else {
        if asked.is_some() {
            return Err(Error::Config(format!(
                "AWS_PROFILE={profile}: no [{profile}] section in {}",
                path.display()
            )));
        }
        return Ok(None);
    };
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(key_id), Some(secret)) => Ok(Some(ProfileCredentials {
            key_id,
            secret,
            token: get("aws_session_token"),
        })),
        _ => Err(Error::Config(format!(
            "profile [{profile}] in {} has no aws_access_key_id and aws_secret_access_key (opsctl reads static keys from profiles; for SSO or credential_process profiles export the keys in the environment)",
            path.display()
        ))),
    }
}

/// The region of the profile in `~/.aws/config` (`[default]` or `[profile NAME]`).
fn profile_region() -> Option<String> {
    let path = home_aws_file("AWS_CONFIG_FILE", "config")?;
    let text = std::fs::read_to_string(path).ok()?;
    let section = match std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()) {
        Some(p) if p != "default" => format!("profile {p}"),
        _ => "default".to_string(),
    };
    ini_section(&text, &section)?
        .into_iter()
        .find(|(k, _)| k == "region")
        .map(|(_, v)| v)
}

/// The URL of the bucket itself (requests for a key append `/key`).
fn bucket_endpoint(bucket: &str, region: &str, s: &S3Settings) -> String {
    match (&s.endpoint, s.path_style) {
        (Some(ep), true) => format!("{}/{bucket}", ep.trim_end_matches('/')),
        (Some(ep), false) => match ep.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://{bucket}.{}", rest.trim_end_matches('/')),
            None => format!("{}/{bucket}", ep.trim_end_matches('/')),
        },
        (None, true) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        (None, false) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
    }
}

struct Client {
    store: AmazonS3,
    region: String,
    options: ClientOptions,
}

/// One S3 bucket prefix.
pub struct S3Backend {
    url: String,
    bucket: String,
    prefix: String,
    settings: S3Settings,
    client: OnceLock<Result<Arc<Client>, String>>,
    /// Tests only (feature `test-hooks`): credentials given directly, so tests in one
    /// process can use different ones; production reads the AWS chain alone.
    test_credentials: Option<(String, String)>,
}

impl S3Backend {
    /// A backend for `s3://bucket/prefix`; the client (and the credentials) are set up at
    /// the first request, so a policy naming a repository costs nothing until it is used.
    pub fn new(bucket: &str, prefix: &str, settings: &S3Settings) -> S3Backend {
        let url = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        S3Backend {
            url,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            settings: settings.clone(),
            client: OnceLock::new(),
            test_credentials: None,
        }
    }

    /// A backend with the given credentials instead of the AWS chain (tests only).
    #[cfg(feature = "test-hooks")]
    pub fn with_test_credentials(
        bucket: &str,
        prefix: &str,
        settings: &S3Settings,
        key_id: &str,
        secret: &str,
    ) -> S3Backend {
        let mut b = S3Backend::new(bucket, prefix, settings);
        b.test_credentials = Some((key_id.to_string(), secret.to_string()));
        b
    }

    fn client(&self) -> Result<Arc<Client>, Error> {
        self.client
            .get_or_init(|| self.build().map(Arc::new))
            .clone()
            .map_err(|m| Error::Config(format!("repository {}: {m}", self.url)))
    }

    /// The AWS credential chain: the environment, else the shared credentials file
    /// (`AWS_PROFILE`), else what object_store finds itself (web identity, container and
    /// instance credentials).
    fn chain(mut b: AmazonS3Builder) -> Result<AmazonS3Builder, String> {
        for var in CHAIN_VARS {
            if let Ok(v) = std::env::var(var) {
                if let Ok(key) = var.to_ascii_lowercase().parse() {
                    b = b.with_config(key, v);
                }
            }
        }
        let env_key = std::env::var("AWS_ACCESS_KEY_ID")
            .ok()
            .filter(|v| !v.is_empty());
        let env_secret = std::env::var("AWS_SECRET_ACCESS_KEY")
            .ok()
            .filter(|v| !v.is_empty());
        match (&env_key, &env_secret) {
            (Some(_), None) => {
                return Err("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not: set both (or neither, to use AWS_PROFILE or instance credentials)".into())
            }
            (None, Some(_)) => {
                return Err("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not: set both".into())
            }
            (None, None) => {
                if let Some(p) = profile_credentials().map_err(|e| e.to_string())? {
                    b = b
                        .with_access_key_id(p.key_id)
                        .with_secret_access_key(p.secret);
                    if let Some(t) = p.token {
                        b = b.with_token(t);
                    }
                }
            }
            _ => {}
        }
        Ok(b)
    }

    fn build(&self) -> Result<Client, String> {
        let mut b = AmazonS3Builder::new();
        if let Some((k, s)) = &self.test_credentials {
            b = b.with_access_key_id(k).with_secret_access_key(s);
        } else {
            b = Self::chain(b)?;
        }
        let region = self
            .settings
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
            .or_else(|| {
                std::env::var("AWS_DEFAULT_REGION")
                    .ok()
                    .filter(|r| !r.is_empty())
            })
            .or_else(profile_region)
            .unwrap_or_else(|| "us-east-1".into());
        let options = ClientOptions::new()
            .with_allow_http(self.settings.allow_http)
            .with_connect_timeout(Duration::from_secs(10))
            .with_timeout(Duration::from_secs(120));
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: retry_count(),
            retry_timeout: Duration::from_secs(120),
        };
        let store = b
            .with_bucket_name(&self.bucket)
            .with_region(&region)
            .with_endpoint(bucket_endpoint(&self.bucket, &region, &self.settings))
            .with_virtual_hosted_style_request(true)
            .with_client_options(options.clone())
            .with_retry(retry)
            .build()
            .map_err(|e| format!("cannot set up the S3 client: {}", redact(&e.to_string())))?;
        Ok(Client {
            store,
            region,
            options,
        })
    }

    fn path(&self, key: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(key)
        } else {
            ObjPath::from(format!("{}/{key}", self.prefix))
        }
    }

    /// The repository-relative key of an object path, if it is inside the prefix.
    fn key_of<'a>(&self, location: &'a str) -> Option<&'a str> {
        if self.prefix.is_empty() {
            Some(location)
        } else {
            location
                .strip_prefix(self.prefix.as_str())
                .and_then(|r| r.strip_prefix('/'))
        }
    }

    fn fail(&self, doing: &str, e: &object_store::Error) -> Error {
        Error::Other(describe(&self.url, &self.settings, doing, e))
    }

    /// Incomplete multipart uploads under the prefix: (key, upload id, initiated).
    /// object_store has no ListMultipartUploads, so this one request is built here and
    /// signed by object_store's own [`AwsAuthorizer`].
    async fn list_uploads(
        &self,
        c: &Client,
    ) -> Result<Vec<(String, String, DateTime<Utc>)>, String> {
        use object_store::client::{HttpConnector, HttpRequestBody, ReqwestConnector};
        let cred = c
            .store
            .credentials()
            .get_credential()
            .await
            .map_err(|e| describe(&self.url, &self.settings, "read credentials", &e))?;
        let http = ReqwestConnector::default()
            .connect(&c.options)
            .map_err(|e| describe(&self.url, &self.settings, "connect", &e))?;
        let base = bucket_endpoint(&self.bucket, &c.region, &self.settings);
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = form_query(&[("uploads", ""), ("prefix", &prefix)]);
            if let Some((k, u)) = &markers {
                query.push('&');
                query.push_str(&form_query(&[("key-marker", k), ("upload-id-marker", u)]));
            }
            let uri = format!("{base}?{query}");
            let mut req = http::Request::builder()
                .method(http::Method::GET)
                .uri(&uri)
                .body(HttpRequestBody::from(Vec::new()))
                .map_err(|e| format!("repository {}: bad request URL: {e}", self.url))?;
            AwsAuthorizer::new(&cred, "s3", &c.region).authorize(&mut req, None);
            let resp = http.execute(req).await.map_err(|e| {
                format!(
                    "repository {}: cannot list incomplete uploads: {}",
                    self.url,
                    transport_reason(&self.settings, &e.to_string(), Some(e.kind()))
                )
            })?;
            let status = resp.status();
            let body = resp.into_body().bytes().await.map_err(|e| {
                format!("repository {}: cannot read the upload list: {e}", self.url)
            })?;
            let body = String::from_utf8_lossy(&body).into_owned();
            if !status.is_success() {
                if status.as_u16() == 501 || body.contains("NotImplemented") {
                    return Err(format!(
                        "repository {}: the server does not list incomplete multipart uploads (ListMultipartUploads not implemented); remove them with a bucket lifecycle rule (AbortIncompleteMultipartUpload)",
                        self.url
                    ));
                }
                return Err(format!(
                    "repository {}: cannot list incomplete uploads: {}",
                    self.url,
                    status_reason(&self.settings, status.as_u16(), &body)
                ));
            }
            let page: ListUploads = quick_xml::de::from_str(&body).map_err(|e| {
                format!(
                    "repository {}: unreadable upload list from the server: {e}",
                    self.url
                )
            })?;
            for u in page.uploads {
                let initiated = DateTime::parse_from_rfc3339(&u.initiated)
                    .map(|d| d.with_timezone(&Utc))
                    .unwrap_or_else(|_| Utc::now());
                out.push((u.key, u.upload_id, initiated));
            }
            match (
                page.is_truncated,
                page.next_key_marker,
                page.next_upload_id_marker,
            ) {
                (true, Some(k), Some(u)) if !k.is_empty() => markers = Some((k, u)),
                _ => break,
            }
        }
        Ok(out)
    }
}

/// Retries of a failed request (5xx, 429, resets, refused connections) before it counts
/// as failed; `OPSCTL_S3_RETRIES` changes it (tests make an unreachable endpoint fail
/// fast).
fn retry_count() -> usize {
    std::env::var("OPSCTL_S3_RETRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

fn form_query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                percent_encoding::utf8_percent_encode(k, QUERY),
                percent_encoding::utf8_percent_encode(v, QUERY)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Everything but the unreserved characters, as SigV4 wants query values encoded.
const QUERY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct ListUploads {
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
    #[serde(rename = "Upload")]
    uploads: Vec<UploadEntry>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct UploadEntry {
    key: String,
    upload_id: String,
    initiated: String,
}

/// Removes the values of the AWS secret variables from `s`.
pub fn redact(s: &str) -> String {
    let mut out = s.to_string();
    for var in SECRET_VARS {
        if let Ok(v) = std::env::var(var) {
            if v.len() >= 4 {
                out = out.replace(&v, "****");
            }
        }
    }
    out
}

/// What a status code means to the person running opsctl.
fn status_reason(s: &S3Settings, status: u16, body: &str) -> String {
    let code = xml_tag(body, "Code");
    let code_note = code.as_deref().map(|c| format!(" {c}")).unwrap_or_default();
    match status {
        401 | 403 => {
            let what = match code.as_deref() {
                Some("InvalidAccessKeyId") => "the access key id is not known to the server",
                Some("SignatureDoesNotMatch") => "the secret key does not match the access key id",
                Some("ExpiredToken") | Some("TokenRefreshRequired") => "the session token has expired",
                _ => "access denied",
            };
            format!(
                "{what} (HTTP {status}{code_note}): check the AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, instance role) and that they may list, read, write and delete under this prefix"
            )
        }
        404 if code.as_deref() == Some("NoSuchKey") => {
            format!("the object does not exist (HTTP 404{code_note})")
        }
        404 if code.as_deref() == Some("NoSuchBucket") || code.is_none() => format!(
            "the bucket does not exist at {} (HTTP 404{code_note}): create it, or fix the bucket name or the endpoint",
            s.endpoint.as_deref().unwrap_or("AWS S3")
        ),
        301 | 307 => format!(
            "the bucket is in another region (HTTP {status}{code_note}): set `region` of the repository"
        ),
        s5 if s5 >= 500 => format!(
            "the server failed (HTTP {status}{code_note}) after {} retries; try again later",
            retry_count()
        ),
        _ => format!("the server answered HTTP {status}{code_note}"),
    }
}

/// The text of the first `<tag>` in an XML body.
fn xml_tag(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(body[start..end].trim().to_string())
}

/// What a transport failure means (no status code came back).
fn transport_reason(
    s: &S3Settings,
    text: &str,
    kind: Option<object_store::client::HttpErrorKind>,
) -> String {
    use object_store::client::HttpErrorKind as K;
    let lower = text.to_ascii_lowercase();
    let ep = s.endpoint.as_deref().unwrap_or("AWS S3");
    if lower.contains("certificate")
        || lower.contains("peer certificate")
        || lower.contains("corrupt message")
        || lower.contains("handshake")
        || lower.contains("invalidcertificate")
        || lower.contains("unknownissuer")
    {
        let detail = first_line(text.rsplit(" | ").next().unwrap_or(text));
        return format!(
            "TLS failure talking to {ep} ({detail}): the endpoint's certificate must be signed by a CA in the system store and name the endpoint's host"
        );
    }
    if lower.contains("url scheme is not allowed") {
        return format!("{ep} is plain HTTP and allow_http is not set");
    }
    let retries = retry_count();
    if lower.contains("connection refused") {
        return format!("cannot reach the endpoint {ep} (connection refused) after {retries} retries: is the server running and the endpoint right?");
    }
    if lower.contains("dns error")
        || lower.contains("failed to lookup")
        || lower.contains("name or service not known")
    {
        return format!(
            "cannot reach the endpoint {ep} (its host name does not resolve): check the endpoint"
        );
    }
    if lower.contains("connection reset")
        || lower.contains("broken pipe")
        || lower.contains("connection closed")
    {
        return format!(
            "the connection to {ep} was reset, still after {retries} retries; try again later"
        );
    }
    if lower.contains("timed out") || matches!(kind, Some(K::Timeout)) {
        return format!("{ep} did not answer in time (timeout), still after {retries} retries: is the endpoint reachable from this host?");
    }
    if matches!(kind, Some(K::Connect)) || lower.contains("tcp connect error") {
        return format!("cannot reach the endpoint {ep} after {retries} retries: is the server running and the endpoint right?");
    }
    format!("request to {ep} failed: {}", first_line(text))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// One line naming the repository and saying what went wrong and what to do; never a
/// secret (the AWS secret variables' values are removed, and object_store messages hold
/// no credentials).
pub fn describe(url: &str, s: &S3Settings, doing: &str, e: &object_store::Error) -> String {
    let mut chain = e.to_string();
    let mut kind = None;
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = src {
        if let Some(h) = c.downcast_ref::<object_store::client::HttpError>() {
            kind = Some(h.kind());
        }
        chain.push_str(" | ");
        chain.push_str(&c.to_string());
        src = c.source();
    }
    let denied = match e {
        object_store::Error::PermissionDenied { .. } => Some(403),
        object_store::Error::Unauthenticated { .. } => Some(401),
        _ => None,
    };
    let status = chain
        .find("status code: ")
        .and_then(|i| chain[i + 13..].get(..3))
        .and_then(|c| c.parse::<u16>().ok())
        .or(denied);
    let reason = match status {
        Some(code) => status_reason(s, code, &chain),
        None if matches!(e, object_store::Error::NotFound { .. }) => status_reason(s, 404, &chain),
        None => transport_reason(s, &chain, kind),
    };
    redact(&format!("repository {url}: cannot {doing}: {reason}"))
}

fn io_err(msg: String) -> io::Error {
    io::Error::other(msg)
}

impl Backend for S3Backend {
    fn create(&self, key: &str) -> Result<Box<dyn Sink>, Error> {
        let client = self.client()?;
        Ok(Box::new(S3Sink {
            client,
            path: self.path(key),
            url: self.url.clone(),
            settings: self.settings.clone(),
            buf: Vec::new(),
            upload: None,
            finished: false,
        }))
    }

    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>, Error> {
        let c = self.client()?;
        let path = self.path(key);
        let got = run(async { c.store.get(&path).await })?
            .map_err(|e| self.fail(&format!("read {key}"), &e))?;
        Ok(Box::new(S3Reader {
            stream: got.into_stream(),
            current: Bytes::new(),
            url: self.url.clone(),
            settings: self.settings.clone(),
            key: key.to_string(),
        }))
    }

    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, Error> {
        let c = self.client()?;
        let path = self.path(key);
        match run(async { c.store.head(&path).await })? {
            Ok(m) => Ok(Some(ObjectInfo {
                key: key.to_string(),
                size: m.size,
                modified: m.last_modified,
            })),
            Err(object_store::Error::NotFound { source, .. })
                if !source.to_string().contains("NoSuchBucket") =>
            {
                Ok(None)
            }
            Err(e) => Err(self.fail(&format!("look up {key}"), &e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, Error> {
        let c = self.client()?;
        let dir = prefix.rfind('/').map(|i| &prefix[..i]).unwrap_or("");
        let under = match (self.prefix.is_empty(), dir.is_empty()) {
            (true, true) => None,
            (true, false) => Some(ObjPath::from(dir)),
            (false, true) => Some(ObjPath::from(self.prefix.as_str())),
            (false, false) => Some(ObjPath::from(format!("{}/{dir}", self.prefix))),
        };
        let metas = run(async { c.store.list(under.as_ref()).try_collect::<Vec<_>>().await })?
            .map_err(|e| self.fail("list objects", &e))?;
        let mut out: Vec<ObjectInfo> = metas
            .into_iter()
            .filter_map(|m| {
                let key = self.key_of(m.location.as_ref())?;
                key.starts_with(prefix).then(|| ObjectInfo {
                    key: key.to_string(),
                    size: m.size,
                    modified: m.last_modified,
                })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), Error> {
        let c = self.client()?;
        let path = self.path(key);
        match run(async { c.store.delete(&path).await })? {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { source, .. })
                if !source.to_string().contains("NoSuchBucket") =>
            {
                Ok(())
            }
            Err(e) => Err(self.fail(&format!("delete {key}"), &e)),
        }
    }

    fn local_path(&self, _key: &str) -> Option<std::path::PathBuf> {
        None
    }

    fn clean_incomplete(&self, older_than: Duration) -> Result<Vec<String>, Error> {
        let c = self.client()?;
        let uploads = match run(self.list_uploads(&c))? {
            Ok(u) => u,
            // A server without ListMultipartUploads: warn and go on (prune still prunes).
            Err(m) if m.contains("ListMultipartUploads not implemented") => {
                tracing::warn!("{m}");
                return Ok(Vec::new());
            }
            Err(m) => return Err(Error::Other(m)),
        };
        let cutoff = Utc::now() - chrono::Duration::from_std(older_than).unwrap_or_default();
        let mut removed = Vec::new();
        for (key, id, initiated) in uploads {
            if initiated > cutoff {
                continue;
            }
            let path = ObjPath::from(key.as_str());
            run(async { c.store.abort_multipart(&path, &id).await })?
                .map_err(|e| self.fail(&format!("abort the incomplete upload of {key}"), &e))?;
            let shown = self.key_of(&key).unwrap_or(&key).to_string();
            removed.push(format!(
                "aborted the incomplete upload of {shown} in {} (started {})",
                self.url,
                initiated.format("%Y-%m-%d %H:%M:%SZ")
            ));
        }
        Ok(removed)
    }
}

/// A streamed object: parts of `part_size` go up as they fill, at most `concurrency` at
/// once; nothing is visible until the upload completes on commit. An object smaller than
/// one part is sent in one PUT at commit.
struct S3Sink {
    client: Arc<Client>,
    path: ObjPath,
    url: String,
    settings: S3Settings,
    buf: Vec<u8>,
    upload: Option<WriteMultipart>,
    finished: bool,
}

impl S3Sink {
    fn send_part(&mut self) -> io::Result<()> {
        let part = std::mem::take(&mut self.buf);
        if self.upload.is_none() {
            let c = self.client.clone();
            let path = self.path.clone();
            let up = run(async move { c.store.put_multipart(&path).await })
                .map_err(|e| io_err(e.to_string()))?
                .map_err(|e| io_err(describe(&self.url, &self.settings, "start the upload", &e)))?;
            self.upload = Some(WriteMultipart::new_with_chunk_size(
                up,
                self.settings.part_size as usize,
            ));
        }
        let concurrency = self.settings.concurrency;
        let Some(wm) = self.upload.as_mut() else {
            return Ok(());
        };
        // Wait for a free slot first, so at most `concurrency` parts are in memory.
        run(async move {
            wm.wait_for_capacity(concurrency).await?;
            wm.put(Bytes::from(part));
            Ok::<(), object_store::Error>(())
        })
        .map_err(|e| io_err(e.to_string()))?
        .map_err(|e| io_err(describe(&self.url, &self.settings, "upload a part", &e)))
    }

    fn abort_upload(&mut self) {
        self.finished = true;
        self.buf = Vec::new();
        if let Some(wm) = self.upload.take() {
            let _ = run(async move { wm.abort().await });
        }
    }
}

impl Write for S3Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let part = self.settings.part_size as usize;
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(part);
        }
        let n = data.len().min(part - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == part {
            if let Err(e) = self.send_part() {
                self.abort_upload();
                return Err(e);
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink for S3Sink {
    fn commit(mut self: Box<Self>) -> Result<(), Error> {
        let result = match self.upload.take() {
            None => {
                let c = self.client.clone();
                let path = self.path.clone();
                let body = PutPayload::from(Bytes::from(std::mem::take(&mut self.buf)));
                run(async move { c.store.put(&path, body).await.map(|_| ()) })?
                    .map_err(|e| describe(&self.url, &self.settings, "write the object", &e))
            }
            Some(mut wm) => {
                let last = std::mem::take(&mut self.buf);
                let r = run(async move {
                    if !last.is_empty() {
                        wm.put(Bytes::from(last));
                    }
                    match wm.finish().await {
                        Ok(_) => Ok(()),
                        Err(e) => Err(e),
                    }
                })?;
                r.map_err(|e| describe(&self.url, &self.settings, "complete the upload", &e))
            }
        };
        self.finished = true;
        // A failed completion is aborted by the server's own state: WriteMultipart
        // consumed the upload; the abandoned parts are what `clean_incomplete` removes.
        result.map_err(Error::Other)
    }

    fn abort(mut self: Box<Self>) {
        self.abort_upload();
    }
}

impl Drop for S3Sink {
    fn drop(&mut self) {
        if !self.finished {
            self.abort_upload();
        }
    }
}

/// A streamed GET as a synchronous reader.
struct S3Reader {
    stream: futures_util::stream::BoxStream<'static, object_store::Result<Bytes>>,
    current: Bytes,
    url: String,
    settings: S3Settings,
    key: String,
}

impl Read for S3Reader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            let stream = &mut self.stream;
            match run(async move { stream.next().await }).map_err(|e| io_err(e.to_string()))? {
                None => return Ok(0),
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => {
                    return Err(io_err(describe(
                        &self.url,
                        &self.settings,
                        &format!("read {}", self.key),
                        &e,
                    )))
                }
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_endpoints_follow_the_addressing_style() {
        let mut s = S3Settings {
            endpoint: Some("http://127.0.0.1:9000".into()),
            path_style: true,
            ..Default::default()
        };
        assert_eq!(bucket_endpoint("b", "r", &s), "http://127.0.0.1:9000/b");
        s.path_style = false;
        assert_eq!(bucket_endpoint("b", "r", &s), "http://b.127.0.0.1:9000");
        s.endpoint = None;
        assert_eq!(
            bucket_endpoint("b", "eu-west-1", &s),
            "https://b.s3.eu-west-1.amazonaws.com"
        );
        s.path_style = true;
        assert_eq!(
            bucket_endpoint("b", "eu-west-1", &s),
            "https://s3.eu-west-1.amazonaws.com/b"
        );
    }

    #[test]
    fn profiles_are_read_from_ini_sections() {
        let text = "[default]\naws_access_key_id = A\n\n[profile x]\nregion=eu-west-1\n[ops]\nAWS_SECRET_ACCESS_KEY = s = t\n";
        assert_eq!(
            ini_section(text, "default").unwrap(),
            vec![("aws_access_key_id".into(), "A".into())]
        );
        assert_eq!(ini_section(text, "profile x").unwrap()[0].1, "eu-west-1");
        assert_eq!(
            ini_section(text, "ops").unwrap()[0],
            ("aws_secret_access_key".into(), "s = t".into())
        );
        assert!(ini_section(text, "none").is_none());
    }

    #[test]
    fn upload_lists_parse() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?><ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket><KeyMarker></KeyMarker><NextKeyMarker>p/b</NextKeyMarker><NextUploadIdMarker>2</NextUploadIdMarker><IsTruncated>true</IsTruncated><Upload><Key>p/a</Key><UploadId>1</UploadId><Initiated>2026-12-01T10:00:00.000Z</Initiated></Upload><Upload><Key>p/b</Key><UploadId>2</UploadId><Initiated>2026-12-02T10:00:00.000Z</Initiated></Upload></ListMultipartUploadsResult>"#;
        let l: ListUploads = quick_xml::de::from_str(xml).unwrap();
        assert!(l.is_truncated);
        assert_eq!(l.uploads.len(), 2);
        assert_eq!(
            (l.uploads[1].key.as_str(), l.uploads[1].upload_id.as_str()),
            ("p/b", "2")
        );
        assert_eq!(l.next_key_marker.as_deref(), Some("p/b"));
        let empty: ListUploads = quick_xml::de::from_str("<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>").unwrap();
        assert!(empty.uploads.is_empty());
    }

    #[test]
    fn status_codes_become_advice() {
        let s = S3Settings::default();
        let m = status_reason(&s, 403, "<Error><Code>SignatureDoesNotMatch</Code></Error>");
        assert!(m.starts_with("the secret key does not match"), "{m}");
        let m = status_reason(&s, 404, "<Error><Code>NoSuchBucket</Code></Error>");
        assert!(m.contains("bucket does not exist"), "{m}");
        assert_eq!(
            form_query(&[("uploads", ""), ("prefix", "a b/")]),
            "uploads=&prefix=a%20b%2F"
        );
    }
}

//! `opsctl serve`: a small HTTP/1.1 endpoint for load balancers, Kubernetes probes and
//! Prometheus. `GET /db/health` answers "can the application use the database" (connect,
//! `SELECT 1`, and writable where the policy asks for it): 200 healthy or 500 unhealthy,
//! never for a performance number; `GET /metrics` → the Prometheus form of the health
//! checks; anything else 404. The full health report in `/db/health` needs `--details` or
//! a bearer token. Results are cached for a few seconds so a scrape storm cannot load the
//! database, and concurrent connections are capped so idle clients cannot exhaust the
//! process's file descriptors.
//!
//! A hand-written server on tokio's TcpListener: two fixed routes, `Connection: close`,
//! bounded request heads and timeouts. No HTTP framework is needed for that.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;
use zeroize::Zeroizing;

use crate::db::ConnSettings;
use crate::policy::Policy;
use crate::report::health::{self, HealthReport, Selection};
use crate::report::{render, State};

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Time a client gets to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client over the connection cap gets to send its head before its 503.
const REJECT_READ_TIMEOUT: Duration = Duration::from_millis(500);
/// The whole answer to a client over the connection cap.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 36\r\nRetry-After: 1\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n\
too many connections, retry shortly\n";
/// Default cap on concurrent connections (`--max-connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

pub struct Config {
    pub settings: ConnSettings,
    pub policy: Policy,
    /// How long one health run answers requests.
    pub cache: Duration,
    /// Every client gets the full report in `/db/health`.
    pub details: bool,
    /// A client sending `Authorization: Bearer <token>` gets the full report.
    pub token: Option<Zeroizing<String>>,
    /// Connections served at once; more get 503.
    pub max_connections: usize,
}

/// One value computed at most once per `ttl`; concurrent callers wait for the same run.
struct Cached<T>(Mutex<Option<(Instant, Arc<T>)>>);

impl<T> Cached<T> {
    fn new() -> Self {
        Cached(Mutex::new(None))
    }

    async fn get(&self, ttl: Duration, compute: impl Future<Output = T>) -> Arc<T> {
        let mut guard = self.0.lock().await;
        if let Some((at, v)) = guard.as_ref() {
            if at.elapsed() < ttl {
                return v.clone();
            }
        }
        let v = Arc::new(compute.await);
        *guard = Some((Instant::now(), v.clone()));
        v
    }
}

struct Shared {
    cfg: Config,
    report: Cached<HealthReport>,
    usable: Cached<Result<(), String>>,
}

impl Shared {
    /// The cached health report, or a fresh one.
    async fn report(&self) -> Arc<HealthReport> {
        let cfg = &self.cfg;
        self.report
            .get(
                cfg.cache,
                health::run(&cfg.settings, &cfg.policy, &Selection::default()),
            )
            .await
    }

    /// The cached usability probe, or a fresh one.
    async fn usable(&self) -> Arc<Result<(), String>> {
        let cfg = &self.cfg;
        let r = &cfg.policy.reports;
        self.usable
            .get(
                cfg.cache,
                health::usable(
                    &cfg.settings,
                    r.serve_require_writable,
                    r.statement_timeout_ms,
                ),
            )
            .await
    }

    /// Whether a request with these headers gets the full report; `Err` for a wrong token.
    fn wants_details(&self, head: &str) -> Result<bool, ()> {
        let presented = bearer(head);
        match (&self.cfg.token, presented) {
            (Some(token), Some(p)) => {
                if same_secret(token.as_bytes(), p.as_bytes()) {
                    Ok(true)
                } else {
                    Err(())
                }
            }
            _ => Ok(self.cfg.details),
        }
    }
}

/// The `/db/health` body: the seed's shape, plus the full report when allowed.
#[derive(Serialize)]
struct HealthBody<'a> {
    status: &'static str,
    database: String,
    state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<&'a HealthReport>,
}

/// Serves until `shutdown` completes, then stops accepting and lets requests in flight
/// finish (at most a few seconds).
pub async fn serve(
    listener: TcpListener,
    cfg: Config,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let cap = cfg.max_connections.max(1);
    // Served connections, and (half as many) over-cap ones being told 503 after their
    // request is read; beyond both a connection gets its 503 at once and is closed, so
    // descriptors stay bounded.
    let served = Arc::new(Semaphore::new(cap));
    let rejecting = Arc::new(Semaphore::new((cap / 2).max(8)));
    let shared = Arc::new(Shared {
        cfg,
        report: Cached::new(),
        usable: Cached::new(),
    });
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, peer)) => {
                        if let Ok(permit) = served.clone().try_acquire_owned() {
                            let shared = shared.clone();
                            tasks.spawn(async move {
                                if let Err(e) = handle(stream, &shared).await {
                                    tracing::debug!("request from {peer}: {e}");
                                }
                                drop(permit);
                            });
                        } else if let Ok(permit) = rejecting.clone().try_acquire_owned() {
                            tasks.spawn(async move {
                                let _ = reject_busy(stream).await;
                                drop(permit);
                            });
                        } else {
                            // No room even to read its request: answer without waiting.
                            tracing::debug!("over the connection cap: 503 to {peer}");
                            let _ = stream.try_write(BUSY);
                            drop(stream);
                        }
                    }
                    // Out of file descriptors and the like: wait a moment, go on.
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                while tasks.try_join_next().is_some() {}
            }
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    Ok(())
}

/// 503 to a client over the connection cap. Its request is read first (briefly), so
/// closing does not reset the connection before the client reads the answer.
async fn reject_busy(mut stream: TcpStream) -> std::io::Result<()> {
    let mut chunk = [0u8; 1024];
    let _ = tokio::time::timeout(REJECT_READ_TIMEOUT, async {
        let mut seen = Vec::new();
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
            if head_complete(&seen) || seen.len() > MAX_HEAD {
                return;
            }
        }
    })
    .await;
    stream.write_all(BUSY).await?;
    stream.shutdown().await
}

/// The token of an `Authorization: Bearer <token>` header, if the request has one.
fn bearer(head: &str) -> Option<&str> {
    head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("authorization") {
            return None;
        }
        let (scheme, token) = value.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    })
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn head_complete(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")
}

/// Method and path of a request head, if it is one.
fn parse_head(head: &str) -> Option<(&str, &str)> {
    let line = head.lines().next()?;
    let mut it = line.split(' ');
    let method = it.next()?;
    let target = it.next()?;
    let version = it.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    Some((method, target.split('?').next().unwrap_or(target)))
}

async fn handle(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            buf.extend_from_slice(&chunk[..n]);
            if head_complete(&buf) {
                return Ok(true);
            }
            if buf.len() > MAX_HEAD {
                return Ok(true);
            }
        }
    })
    .await;
    let complete = match read {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return respond(&mut stream, 408, "text/plain", b"request timeout\n", false).await;
        }
    };
    if !complete {
        return Ok(());
    }
    if buf.len() > MAX_HEAD {
        return respond(
            &mut stream,
            431,
            "text/plain",
            b"request header too large\n",
            false,
        )
        .await;
    }
    let head = String::from_utf8_lossy(&buf);
    let Some((method, path)) = parse_head(&head) else {
        return respond(&mut stream, 400, "text/plain", b"bad request\n", false).await;
    };
    let head_only = method == "HEAD";
    let known = matches!(path, "/db/health" | "/metrics");
    if !known {
        return respond(
            &mut stream,
            404,
            "text/plain",
            b"not found: try /db/health or /metrics\n",
            head_only,
        )
        .await;
    }
    if method != "GET" && method != "HEAD" {
        return respond(
            &mut stream,
            405,
            "text/plain",
            b"method not allowed\n",
            false,
        )
        .await;
    }
    match path {
        "/db/health" => {
            let Ok(details) = shared.wants_details(&head) else {
                return respond(
                    &mut stream,
                    401,
                    "text/plain",
                    b"wrong bearer token\n",
                    head_only,
                )
                .await;
            };
            let usable = shared.usable().await;
            let report = if details {
                Some(shared.report().await)
            } else {
                None
            };
            let body = match usable.as_ref() {
                Ok(()) => HealthBody {
                    status: "healthy",
                    database: "connected".into(),
                    state: State::Ok,
                    report: report.as_deref(),
                },
                Err(reason) => HealthBody {
                    status: "unhealthy",
                    database: reason.lines().next().unwrap_or_default().to_string(),
                    state: State::Critical,
                    report: report.as_deref(),
                },
            };
            let code = if usable.is_ok() { 200 } else { 500 };
            let body = serde_json::to_vec(&body).unwrap_or_default();
            respond(&mut stream, code, "application/json", &body, head_only).await
        }
        _ => {
            let report = shared.report().await;
            let body = render::prometheus(&report.checks);
            respond(
                &mut stream,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                body.as_bytes(),
                head_only,
            )
            .await
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    code: u16,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        401 => "Unauthorized",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    );
    match code {
        401 => out.push_str("WWW-Authenticate: Bearer\r\n"),
        405 => out.push_str("Allow: GET, HEAD\r\n"),
        _ => {}
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(body);
    }
    stream.write_all(&bytes).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_lines() {
        assert_eq!(
            parse_head("GET /db/health?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(("GET", "/db/health"))
        );
        assert_eq!(parse_head("garbage"), None);
    }

    #[test]
    fn busy_answer_is_well_formed() {
        let text = std::str::from_utf8(BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }

    #[test]
    fn finds_bearer_tokens() {
        let head = "GET /db/health HTTP/1.1\r\nHost: a\r\nauthorization: Bearer s3cret \r\n\r\n";
        assert_eq!(bearer(head), Some("s3cret"));
        assert_eq!(
            bearer("GET / HTTP/1.1\r\nAuthorization: Basic x\r\n\r\n"),
            None
        );
        assert_eq!(bearer("GET / HTTP/1.1\r\n\r\n"), None);
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }
}

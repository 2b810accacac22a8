//! `opsctl serve`: a small HTTP/1.1 endpoint over the health checks for load balancers,
//! Kubernetes probes and Prometheus. `GET /db/health` → 200 healthy (WARNING included)
//! or 500 unhealthy; `GET /metrics` → Prometheus text; anything else 404. Results are
//! cached for a few seconds so a scrape storm cannot load the database.
//!
//! A hand-written server on tokio's TcpListener: two fixed routes, `Connection: close`,
//! bounded request heads and timeouts. No HTTP framework is needed for that.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::db::ConnSettings;
use crate::policy::Policy;
use crate::report::health::{self, HealthReport, Selection};
use crate::report::render;

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Time a client gets to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Config {
    pub settings: ConnSettings,
    pub policy: Policy,
    /// How long one health run answers requests.
    pub cache: Duration,
}

type Cache = Mutex<Option<(Instant, Arc<HealthReport>)>>;

struct Shared {
    cfg: Config,
    cache: Cache,
}

impl Shared {
    /// The cached report, or a fresh one. Concurrent requests wait for one run.
    async fn report(&self) -> Arc<HealthReport> {
        let mut guard = self.cache.lock().await;
        if let Some((at, r)) = guard.as_ref() {
            if at.elapsed() < self.cfg.cache {
                return r.clone();
            }
        }
        let r = Arc::new(
            health::run(&self.cfg.settings, &self.cfg.policy, &Selection::default()).await,
        );
        *guard = Some((Instant::now(), r.clone()));
        r
    }
}

/// Serves until `shutdown` completes, then stops accepting and lets requests in flight
/// finish (at most a few seconds).
pub async fn serve(
    listener: TcpListener,
    cfg: Config,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared {
        cfg,
        cache: Mutex::new(None),
    });
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, peer)) => {
                        let shared = shared.clone();
                        tasks.spawn(async move {
                            if let Err(e) = handle(stream, &shared).await {
                                tracing::debug!("request from {peer}: {e}");
                            }
                        });
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
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
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
    let report = shared.report().await;
    match path {
        "/db/health" => {
            let code = if report.status == "healthy" { 200 } else { 500 };
            let body = serde_json::to_vec(&*report).unwrap_or_default();
            respond(&mut stream, code, "application/json", &body, head_only).await
        }
        _ => {
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
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    );
    if code == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
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
}

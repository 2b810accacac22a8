//! `opsctl serve`: a small HTTP/1.1 endpoint for load balancers, Kubernetes probes and
//! Prometheus. `GET /db/health` answers "can the application use the database" (connect,
//! `SELECT 1`, and writable where the policy asks for it): 200 healthy or 500 unhealthy,
//! never for a performance number; `GET /metrics` → the Prometheus form of the health
//! checks; anything else 404. The full health report in `/db/health` needs `--details` or
//! a bearer token. Results are cached for a few seconds so a scrape storm cannot load the
//! database, and concurrent connections are capped so idle clients cannot exhaust the
//! process's file descriptors.
//!
//! Since issue 18 it also serves the on-call dashboard (HTML pages and their `/api/` JSON,
//! see [`pages`]), so the hand-written server gave way to axum on hyper: many routes,
//! forms, cookies and HTML are what a maintained HTTP stack is for, while the connection
//! cap, the timeouts and the size limits stay here around hyper's connection handling.

mod auth;
mod pages;
mod svg;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State as AxState;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;
use zeroize::Zeroizing;

use crate::db::ConnSettings;
use crate::policy::Policy;
use crate::report::dashboard;
use crate::report::health::{self, HealthReport, Selection};
use crate::report::{render, State};

/// Largest request head accepted (hyper's read buffer; it answers 431 beyond it).
const MAX_HEAD: usize = 16 * 1024;
/// Largest request body accepted (the login form).
const MAX_BODY: usize = 4 * 1024;
/// Time a client gets to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a whole connection may take (slow bodies, slow readers).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);
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
    /// How long one health run (and one load of each page) answers requests.
    pub cache: Duration,
    /// Every client gets the full report in `/db/health`.
    pub details: bool,
    /// A client sending `Authorization: Bearer <token>` gets the full report, and the
    /// dashboard pages (also through the login form's cookie).
    pub token: Option<Zeroizing<String>>,
    /// Connections served at once; more get 503.
    pub max_connections: usize,
}

/// One value computed at most once per `ttl`; concurrent callers wait for the same run.
struct Cached<T> {
    slot: Mutex<Option<(Instant, Arc<T>)>>,
    /// A background refresh is under way ([`Cached::fresh_or_stale`]).
    refreshing: AtomicBool,
}

impl<T: Send + Sync + 'static> Cached<T> {
    fn new() -> Arc<Self> {
        Arc::new(Cached {
            slot: Mutex::new(None),
            refreshing: AtomicBool::new(false),
        })
    }

    async fn get(&self, ttl: Duration, compute: impl Future<Output = T>) -> Arc<T> {
        let mut guard = self.slot.lock().await;
        if let Some((at, v)) = guard.as_ref() {
            if at.elapsed() < ttl {
                return v.clone();
            }
        }
        let v = Arc::new(compute.await);
        *guard = Some((Instant::now(), v.clone()));
        v
    }

    /// For pages: the value at once whenever there is one. A value older than `ttl` is
    /// still answered, and replaced by one background run (whatever the number of
    /// viewers); only the very first caller waits for a load.
    async fn fresh_or_stale<Fut>(
        self: &Arc<Self>,
        ttl: Duration,
        make: impl FnOnce() -> Fut,
    ) -> Arc<T>
    where
        Fut: Future<Output = T> + Send + 'static,
    {
        {
            let guard = self.slot.lock().await;
            if let Some((at, v)) = guard.as_ref() {
                if at.elapsed() >= ttl && !self.refreshing.swap(true, Ordering::SeqCst) {
                    let me = self.clone();
                    let fut = make();
                    tokio::spawn(async move {
                        let v = Arc::new(fut.await);
                        *me.slot.lock().await = Some((Instant::now(), v));
                        me.refreshing.store(false, Ordering::SeqCst);
                    });
                }
                return v.clone();
            }
        }
        self.get(ttl, make()).await
    }
}

type Loaded<T> = Arc<Cached<Result<T, String>>>;

struct Shared {
    cfg: Config,
    /// The listener is on a loopback address (pages without a token only there).
    loopback: bool,
    report: Arc<Cached<HealthReport>>,
    usable: Arc<Cached<Result<(), String>>>,
    overview: Loaded<dashboard::Overview>,
    backups: Loaded<dashboard::Backups>,
    partitions: Loaded<dashboard::Partitions>,
    size: Loaded<dashboard::Size>,
    activity: Loaded<dashboard::Activity>,
    audit: [Loaded<dashboard::Audit>; dashboard::AUDIT_WINDOWS.len()],
    jobs: Loaded<dashboard::Jobs>,
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

    /// The cached health report at once for pages (see [`Cached::fresh_or_stale`]).
    async fn report_for_page(self: &Arc<Self>) -> Arc<HealthReport> {
        let me = self.clone();
        self.report
            .fresh_or_stale(self.cfg.cache, move || async move {
                let cfg = &me.cfg;
                health::run(&cfg.settings, &cfg.policy, &Selection::default()).await
            })
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
    fn wants_details(&self, headers: &HeaderMap) -> Result<bool, ()> {
        match (&self.cfg.token, auth::bearer(headers)) {
            (Some(token), Some(p)) => {
                if auth::same_secret(token.as_bytes(), p.as_bytes()) {
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

type App = Arc<Shared>;

/// Every route. Pages and their JSON go through [`auth::guard`].
fn router(shared: App) -> Router {
    let pages = Router::new()
        .route("/", get(pages::overview))
        .route("/backups", get(pages::backups))
        .route("/partitions", get(pages::partitions))
        .route("/size", get(pages::size))
        .route("/activity", get(pages::activity))
        .route("/audit", get(pages::audit))
        .route("/jobs", get(pages::jobs))
        .route("/api/", get(pages::api_overview))
        .route("/api/overview", get(pages::api_overview))
        .route("/api/backups", get(pages::api_backups))
        .route("/api/partitions", get(pages::api_partitions))
        .route("/api/size", get(pages::api_size))
        .route("/api/activity", get(pages::api_activity))
        .route("/api/audit", get(pages::api_audit))
        .route("/api/jobs", get(pages::api_jobs))
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            auth::guard,
        ));
    Router::new()
        .route("/db/health", get(db_health))
        .route("/metrics", get(metrics))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", axum::routing::post(auth::logout))
        .merge(pages)
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(common_headers))
        .with_state(shared)
}

/// Headers every answer carries: nothing is cached, nothing loads from elsewhere, no
/// framing by other sites.
async fn common_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

async fn not_found(method: Method) -> Response {
    let _ = method;
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain")],
        "not found: try /, /db/health or /metrics\n",
    )
        .into_response()
}

async fn db_health(AxState(shared): AxState<App>, headers: HeaderMap) -> Response {
    let Ok(details) = shared.wants_details(&headers) else {
        return (
            StatusCode::UNAUTHORIZED,
            [
                (header::CONTENT_TYPE, "text/plain"),
                (header::WWW_AUTHENTICATE, "Bearer"),
            ],
            "wrong bearer token\n",
        )
            .into_response();
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
    let code = if usable.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn metrics(AxState(shared): AxState<App>) -> Response {
    let report = shared.report().await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render::prometheus(&report.checks),
    )
        .into_response()
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
    let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    let shared = Arc::new(Shared {
        cfg,
        loopback,
        report: Cached::new(),
        usable: Cached::new(),
        overview: Cached::new(),
        backups: Cached::new(),
        partitions: Cached::new(),
        size: Cached::new(),
        activity: Cached::new(),
        audit: std::array::from_fn(|_| Cached::new()),
        jobs: Cached::new(),
    });
    let app = router(shared);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, peer)) => {
                        if let Ok(permit) = served.clone().try_acquire_owned() {
                            let app = app.clone();
                            tasks.spawn(async move {
                                if let Err(e) = handle(stream, app).await {
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

/// One connection through hyper: one request (`Connection: close`, as before), its head
/// within [`READ_TIMEOUT`] and [`MAX_HEAD`], the whole exchange within
/// [`CONNECTION_TIMEOUT`].
async fn handle(stream: TcpStream, app: Router) -> Result<(), String> {
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("connection timed out".into()),
    }
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

fn head_complete(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_answer_is_well_formed() {
        let text = std::str::from_utf8(BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }
}

//! `opsctl serve --listen ADDR`: binds, serves /db/health, /metrics and the dashboard
//! pages until SIGTERM or SIGINT, then shuts down cleanly (exit 0). Exit 1 when it cannot
//! listen, 2 on bad settings.

use std::path::Path;
use std::time::Duration;

use zeroize::Zeroizing;

use super::{conn_settings, load_policy, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use crate::cli::ServeArgs;
use crate::serve::{self, Config};

pub async fn run(args: ServeArgs) -> u8 {
    let setup = conn_settings(&args.connect)
        .and_then(|s| load_policy(&args.policy).map(|p| (s, p)))
        .and_then(|sp| crate::report::validate_thresholds(&sp.1.reports).map(|_| sp));
    let token = match args.token_file.as_deref().map(load_token).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let (settings, policy) = match setup {
        Ok(sp) => sp,
        Err(e) => {
            crate::logging::error(e);
            return EXIT_USAGE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            crate::logging::error(format_args!(
                "cannot listen on {}: {e} (give --listen HOST:PORT, e.g. 127.0.0.1:8080)",
                args.listen
            ));
            return EXIT_FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or(args.listen.clone());
    if args.details && listener.local_addr().is_ok_and(|a| !a.ip().is_loopback()) {
        crate::logging::warn(format_args!("listening on {addr}, which is not a loopback address, with --details: sessions and query text are visible to anyone who can reach it"));
    }
    crate::logging::info(format_args!(
        "opsctl serve: listening on http://{addr} (GET /db/health, GET /metrics, dashboard at /)"
    ));
    let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    if token.is_none() && !loopback {
        crate::logging::warn(format_args!("listening on {addr}, which is not a loopback address, without --token-file: the dashboard pages answer 403 (give --token-file to see them)"));
    }
    let shutdown = async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                crate::logging::warn(format_args!("cannot watch SIGTERM: {e}"));
                std::future::pending::<()>().await;
                unreachable!()
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        crate::logging::info("opsctl serve: shutting down");
    };
    let cfg = Config {
        settings,
        policy,
        cache: Duration::from_secs(args.cache_seconds),
        details: args.details,
        token,
        max_connections: usize::try_from(args.max_connections)
            .unwrap_or(serve::DEFAULT_MAX_CONNECTIONS),
    };
    match serve::serve(listener, cfg, shutdown).await {
        Ok(()) => EXIT_OK,
        Err(e) => {
            crate::logging::error(e);
            EXIT_FAILURE
        }
    }
}

/// The bearer token: the first line of a private file, at least 16 characters.
fn load_token(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    let bytes = crate::backup::keys::read_secret_file(path, "token file", 4096)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| anyhow::anyhow!("token file {} is not UTF-8 text", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.len() < 16 || token.contains(char::is_whitespace) {
        anyhow::bail!(
            "token file {}: the first line must be a token of at least 16 characters without \
             spaces (e.g. `openssl rand -hex 32 > {}`)",
            path.display(),
            path.display()
        );
    }
    Ok(Zeroizing::new(token.to_string()))
}

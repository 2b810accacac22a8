//! `opsctl serve --listen ADDR`: binds, serves /db/health and /metrics until SIGTERM or
//! SIGINT, then shuts down cleanly (exit 0). Exit 1 when it cannot listen, 2 on bad settings.

use std::time::Duration;

use super::{conn_settings, load_policy, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use crate::cli::ServeArgs;
use crate::serve::{self, Config};

pub async fn run(args: ServeArgs) -> u8 {
    let setup = conn_settings(&args.connect)
        .and_then(|s| load_policy(&args.policy).map(|p| (s, p)))
        .and_then(|sp| crate::report::validate_thresholds(&sp.1.reports).map(|_| sp));
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
    if listener.local_addr().is_ok_and(|a| !a.ip().is_loopback()) {
        crate::logging::warn(format_args!("listening on {addr}, which is not a loopback address: the health details are visible to anyone who can reach it"));
    }
    crate::logging::info(format_args!(
        "opsctl serve: listening on http://{addr} (GET /db/health, GET /metrics)"
    ));
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
    };
    match serve::serve(listener, cfg, shutdown).await {
        Ok(()) => EXIT_OK,
        Err(e) => {
            crate::logging::error(e);
            EXIT_FAILURE
        }
    }
}

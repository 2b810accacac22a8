//! `opsctl report pool|size`: runs a report and renders it as text, JSON, Prometheus or
//! Nagios; the exit code is the worst state (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).

use serde::Serialize;

use super::{conn_settings, load_policy, print, stdout_is_terminal};
use crate::cli::{ReportArgs, ReportFormat, ReportKind, ReportOutputArgs};
use crate::report::{pool, render, size, Check, Metric, State};

pub async fn run(args: ReportArgs) -> u8 {
    match args.report {
        ReportKind::Pool(a) => {
            let (settings, policy) =
                match setup("opsctl report pool", &a.connect, &a.policy, &a.output) {
                    Ok(sp) => sp,
                    Err(code) => return code,
                };
            match pool::run(&settings, &policy).await {
                Ok(r) => emit(
                    "opsctl report pool",
                    &r.database,
                    &r,
                    &r.checks,
                    &[],
                    pool::text_details(&r),
                    &a.output,
                    r.state,
                ),
                Err(e) => failed("opsctl report pool", &e, &a.output),
            }
        }
        ReportKind::Size(a) => {
            let (settings, policy) =
                match setup("opsctl report size", &a.connect, &a.policy, &a.output) {
                    Ok(sp) => sp,
                    Err(code) => return code,
                };
            match size::run(&settings, &policy, a.limit, a.snapshot).await {
                Ok(r) => emit(
                    "opsctl report size",
                    &r.database,
                    &r,
                    &r.checks,
                    &size::metrics(&r),
                    size::text_details(&r),
                    &a.output,
                    r.state,
                ),
                Err(e) => failed("opsctl report size", &e, &a.output),
            }
        }
    }
}

fn setup(
    title: &str,
    connect: &crate::cli::ConnectArgs,
    policy: &crate::cli::PolicyArgs,
    out: &ReportOutputArgs,
) -> Result<(crate::db::ConnSettings, crate::policy::Policy), u8> {
    if out.textfile.is_some() && out.format != ReportFormat::Prometheus {
        let e =
            crate::error::Error::Config("--textfile works only with --format prometheus".into());
        return Err(failed(title, &e, out));
    }
    conn_settings(connect)
        .and_then(|s| load_policy(policy).map(|p| (s, p)))
        .and_then(|sp| crate::report::validate_thresholds(&sp.1.reports).map(|_| sp))
        .map_err(|e| failed(title, &e, out))
}

/// A report that could not run: CRITICAL when the database cannot be reached, UNKNOWN
/// otherwise (a configuration error). The reason goes to stderr and, in the asked-for
/// form, to stdout: `OPSCTL UNKNOWN: reason` for Nagios (the monitoring-plugin rule for a
/// check that could not run; `TITLE CRITICAL: reason` when the database is unreachable), a
/// JSON object for JSON.
pub(super) fn failed(title: &str, e: &crate::error::Error, out: &ReportOutputArgs) -> u8 {
    let state = if e.is_connect() {
        State::Critical
    } else {
        State::Unknown
    };
    crate::logging::error(e);
    match out.format {
        ReportFormat::Nagios => {
            let reason = crate::db::redact(&e.to_string()).replace(['\n', '|'], " ");
            if state == State::Unknown {
                print(&format!("OPSCTL UNKNOWN: {reason}\n"));
            } else {
                print(&format!(
                    "{} {}: {reason}\n",
                    title.to_uppercase(),
                    state.as_str()
                ));
            }
        }
        ReportFormat::Json => {
            print(&(serde_json::json!({"state": state, "error": e.to_string()}).to_string() + "\n"))
        }
        _ => {}
    }
    state.exit_code()
}

#[allow(clippy::too_many_arguments)]
fn emit<T: Serialize>(
    title: &str,
    database: &str,
    report: &T,
    checks: &[Check],
    extra: &[Metric],
    details: String,
    out: &ReportOutputArgs,
    state: State,
) -> u8 {
    let text = match out.format {
        ReportFormat::Text => {
            render::text(
                &format!("{title} ({database})"),
                checks,
                stdout_is_terminal(),
            ) + &details
        }
        ReportFormat::Json => match serde_json::to_string_pretty(report) {
            Ok(s) => s + "\n",
            Err(e) => {
                crate::logging::error(e);
                return State::Unknown.exit_code();
            }
        },
        ReportFormat::Prometheus => render::prometheus_with(checks, extra),
        ReportFormat::Nagios => render::nagios(title, checks),
    };
    match (&out.textfile, out.format) {
        (Some(path), ReportFormat::Prometheus) => {
            if let Err(e) = crate::fsutil::write_atomic(path, text.as_bytes(), 0o644) {
                crate::logging::error(e);
                return State::Unknown.exit_code();
            }
        }
        _ => print(&text),
    }
    state.exit_code()
}

//! `opsctl health`: runs the checks and renders them in the asked-for form.

use super::{conn_settings, load_policy, print, stdout_is_terminal};
use crate::cli::{HealthArgs, ReportFormat, ReportOutputArgs};
use crate::report::health::{self, HealthReport, Selection};
use crate::report::{render, State};

pub async fn run(args: HealthArgs) -> u8 {
    let sel = Selection {
        only: args.checks.clone(),
        skip: args.skips.clone(),
    };
    let setup = conn_settings(&args.connect)
        .and_then(|s| load_policy(&args.policy).map(|p| (s, p)))
        .and_then(|sp| crate::report::validate_thresholds(&sp.1.reports).map(|_| sp))
        .and_then(|sp| sel.validate().map(|_| sp));
    let (settings, policy) = match setup {
        Ok(sp) => sp,
        Err(e) => return super::report::failed("opsctl health", &e, &args.output),
    };
    let report = health::run(&settings, &policy, &sel).await;
    if report.database != "connected" && args.output.format == ReportFormat::Prometheus {
        crate::logging::error(&report.database);
    }
    if let Err(e) = emit(&report, &args.output) {
        crate::logging::error(e);
        return State::Unknown.exit_code();
    }
    report.state.exit_code()
}

fn emit(report: &HealthReport, out: &ReportOutputArgs) -> anyhow::Result<()> {
    let text = match out.format {
        ReportFormat::Text => {
            let mut t = render::text("opsctl health", &report.checks, stdout_is_terminal());
            if let Some(db) = &report.database_name {
                t = t.replacen("opsctl health:", &format!("opsctl health ({db}):"), 1);
            }
            t
        }
        ReportFormat::Json => serde_json::to_string_pretty(report)? + "\n",
        ReportFormat::Prometheus => render::prometheus(&report.checks),
        ReportFormat::Nagios => render::nagios("opsctl health", &report.checks),
    };
    match (&out.textfile, out.format) {
        (Some(path), ReportFormat::Prometheus) => {
            crate::fsutil::write_atomic(path, text.as_bytes(), 0o644)?
        }
        (Some(_), _) => anyhow::bail!("--textfile works only with --format prometheus"),
        (None, _) => print(&text),
    }
    Ok(())
}

//! `opsctl migrate up|status|verify|baseline|resolve`: loads the migration files, calls
//! the runner, renders the outcome.

use super::{conn_settings, print, print_error, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use crate::cli::{Format, MigrateArgs, MigrateCommand, MigrationsArgs};
use crate::error::Error;
use crate::migrate::{self, EntryState, Migration, Resolution, Status, UpOptions, UpReport};

pub async fn run(args: MigrateArgs) -> u8 {
    match args.command {
        MigrateCommand::Up(a) => {
            let setup = (|| -> anyhow::Result<_> {
                let opts = UpOptions {
                    to: a.to,
                    dry_run: a.dry_run,
                    allow_out_of_order: a.allow_out_of_order,
                    lock_wait: a.lock_wait,
                };
                Ok((conn_settings(&a.connect)?, load(&a.migrations)?, opts))
            })();
            let (settings, files, opts) = match setup {
                Ok(x) => x,
                Err(e) => return usage(e),
            };
            match migrate::up(&settings, &files, &opts).await {
                Ok(report) => {
                    render_up(&report, a.output.format);
                    EXIT_OK
                }
                Err(e) => fail(e),
            }
        }
        MigrateCommand::Status(a) => {
            let (settings, files) = match setup(&a.connect, &a.migrations) {
                Ok(x) => x,
                Err(e) => return usage(e),
            };
            match migrate::status(&settings, &files).await {
                Ok(st) => {
                    render_status(&st, a.output.format);
                    if st.up_to_date {
                        EXIT_OK
                    } else {
                        EXIT_FAILURE
                    }
                }
                Err(e) => fail(e),
            }
        }
        MigrateCommand::Verify(a) => {
            let (settings, files) = match setup(&a.connect, &a.migrations) {
                Ok(x) => x,
                Err(e) => return usage(e),
            };
            match migrate::verify(&settings, &files).await {
                Ok(st) => {
                    let n = st
                        .migrations
                        .iter()
                        .filter(|e| matches!(e.state, EntryState::Applied | EntryState::Baseline))
                        .count();
                    match a.output.format {
                        Format::Json => print(
                            &(serde_json::json!({"database": st.database, "ok": true, "verified": n, "drift": []})
                                .to_string()
                                + "\n"),
                        ),
                        Format::Text => print(&format!(
                            "ok: {} of {} {} their files\n",
                            if n == 1 {
                                "the 1 applied migration".to_string()
                            } else {
                                format!("the {} applied migrations", crate::text::count(n))
                            },
                            st.database,
                            if n == 1 { "matches" } else { "match" }
                        )),
                    }
                    EXIT_OK
                }
                Err(Error::Verify(msg)) => {
                    match a.output.format {
                        Format::Json => print(
                            &(serde_json::json!({"ok": false, "drift": msg.lines().collect::<Vec<_>>()})
                                .to_string()
                                + "\n"),
                        ),
                        Format::Text => {}
                    }
                    super::report_error(&format!(
                        "drift between applied migrations and files:\n{msg}"
                    ));
                    EXIT_FAILURE
                }
                Err(e) => fail(e),
            }
        }
        MigrateCommand::Baseline(a) => {
            let setup = (|| -> anyhow::Result<_> {
                let wait = a.lock_wait;
                Ok((conn_settings(&a.connect)?, load(&a.migrations)?, wait))
            })();
            let (settings, files, wait) = match setup {
                Ok(x) => x,
                Err(e) => return usage(e),
            };
            match migrate::baseline(&settings, &files, a.baseline_version, wait).await {
                Ok(versions) => {
                    match a.output.format {
                        Format::Json => print(
                            &(serde_json::json!({"baseline": a.baseline_version, "recorded": versions})
                                .to_string()
                                + "\n"),
                        ),
                        Format::Text => print(&format!(
                            "baseline at V{}: recorded {} as applied without running them\n",
                            a.baseline_version,
                            versions
                                .iter()
                                .map(|v| format!("V{v}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    }
                    EXIT_OK
                }
                Err(e) => fail(e),
            }
        }
        MigrateCommand::Resolve(a) => {
            let setup = (|| -> anyhow::Result<_> {
                let wait = a.lock_wait;
                Ok((conn_settings(&a.connect)?, load(&a.migrations)?, wait))
            })();
            let (settings, files, wait) = match setup {
                Ok(x) => x,
                Err(e) => return usage(e),
            };
            let how = if a.applied {
                Resolution::Applied
            } else {
                Resolution::RolledBack
            };
            match migrate::resolve(&settings, &files, a.target_version, how, wait).await {
                Ok(()) => {
                    let what = match how {
                        Resolution::Applied => "marked applied",
                        Resolution::RolledBack => {
                            "forgotten; `opsctl migrate up` will run it again"
                        }
                    };
                    match a.output.format {
                        Format::Json => print(
                            &(serde_json::json!({"version": a.target_version, "resolution": how})
                                .to_string()
                                + "\n"),
                        ),
                        Format::Text => print(&format!("V{}: {what}\n", a.target_version)),
                    }
                    EXIT_OK
                }
                Err(e) => fail(e),
            }
        }
    }
}

fn setup(
    connect: &crate::cli::ConnectArgs,
    migrations: &MigrationsArgs,
) -> anyhow::Result<(crate::db::ConnSettings, Vec<Migration>)> {
    Ok((conn_settings(connect)?, load(migrations)?))
}

fn load(args: &MigrationsArgs) -> Result<Vec<Migration>, Error> {
    migrate::files::load(args.migrations_dir.as_deref())
}

fn usage(e: anyhow::Error) -> u8 {
    print_error(&e);
    match e.downcast_ref::<Error>() {
        Some(Error::Config(_)) | None => EXIT_USAGE,
        Some(_) => EXIT_FAILURE,
    }
}

fn fail(e: Error) -> u8 {
    super::report_error(&e.to_string());
    EXIT_FAILURE
}

fn render_up(r: &UpReport, format: Format) {
    if r.waited_ms >= 200 {
        crate::logging::info(format_args!(
            "waited {:.1}s for the migration lock held by another `opsctl migrate`",
            r.waited_ms as f64 / 1000.0
        ));
    }
    match format {
        Format::Json => print(&(serde_json::to_string_pretty(r).unwrap_or_default() + "\n")),
        Format::Text => {
            let mut out = String::new();
            let verb = if r.dry_run { "would apply" } else { "applied" };
            for s in &r.applied {
                out.push_str(&format!(
                    "{verb} V{} {} ({}{}{})\n",
                    s.version,
                    s.name,
                    crate::text::plural(s.statements, "statement"),
                    if s.no_transaction {
                        ", no transaction"
                    } else {
                        ""
                    },
                    s.execution_ms
                        .map(|ms| format!(", {ms} ms"))
                        .unwrap_or_default()
                ));
            }
            let cur = r
                .current_version
                .map(|v| format!("V{v}"))
                .unwrap_or_else(|| "none".into());
            if r.applied.is_empty() {
                out.push_str(&format!(
                    "{}: up to date at {cur}; nothing to apply\n",
                    r.database
                ));
            } else if r.dry_run {
                out.push_str(&format!(
                    "dry run: {} pending on {} (now at {cur}); nothing changed\n",
                    crate::text::plural(r.applied.len(), "migration"),
                    r.database
                ));
            } else {
                out.push_str(&format!("{}: now at {cur}\n", r.database));
            }
            print(&out);
        }
    }
}

fn render_status(st: &Status, format: Format) {
    match format {
        Format::Json => print(&(serde_json::to_string_pretty(st).unwrap_or_default() + "\n")),
        Format::Text => {
            let mut out = format!(
                "{}: at {}, latest file {}, {} pending\n",
                st.database,
                st.current_version
                    .map(|v| format!("V{v}"))
                    .unwrap_or_else(|| "none".into()),
                st.latest_version
                    .map(|v| format!("V{v}"))
                    .unwrap_or_else(|| "none".into()),
                st.pending
            );
            out.push_str(&format!(
                "{:<8} {:<32} {:<13} {}\n",
                "VERSION", "NAME", "STATE", "APPLIED"
            ));
            for e in &st.migrations {
                out.push_str(&format!(
                    "{:<8} {:<32} {:<13} {}\n",
                    format!("V{}", e.version),
                    e.name,
                    e.state.as_str(),
                    e.applied_at
                        .map(|t| format!(
                            "{} by {} ({} ms)",
                            crate::text::ts(&t),
                            e.applied_by.as_deref().unwrap_or("?"),
                            e.execution_ms.unwrap_or(0)
                        ))
                        .unwrap_or_default()
                ));
            }
            for p in &st.problems {
                out.push_str(&format!("problem: {p}\n"));
            }
            out.push_str(if st.up_to_date {
                "up to date\n"
            } else {
                "NOT up to date\n"
            });
            print(&out);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        crate::cli::Cli::command().debug_assert();
    }
}

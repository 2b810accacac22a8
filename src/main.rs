//! The opsctl binary: parse, set up logging, run, map the exit status.

use std::process::ExitCode;

use opsctl::cli::{hoist_common_flags, Cli, Command};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::parse_anywhere(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(usage_exit_code(&e, &hoist_common_flags(&args)));
        }
    };
    let default_log = match &cli.command {
        Command::Schedule(opsctl::cli::ScheduleCommand::Run(_)) => "info",
        _ => "warn",
    };
    opsctl::logging::init(cli.log_format, default_log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            opsctl::logging::error(format_args!("cannot start the async runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    ExitCode::from(runtime.block_on(opsctl::commands::run(cli)))
}

/// `--help`/`--version` exit 0; usage errors exit 3 for monitoring commands (UNKNOWN), 2 otherwise.
fn usage_exit_code(e: &clap::Error, args: &[std::ffi::OsString]) -> u8 {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        return 0;
    }
    // The first word that is neither a flag nor the value of the global --log-format.
    let mut words = args.iter().skip(1).map(|a| a.to_string_lossy());
    let mut sub = None;
    while let Some(a) = words.next() {
        if a == "--log-format" {
            words.next();
        } else if !a.starts_with('-') {
            sub = Some(a);
            break;
        }
    }
    // `wal fetch` is restore_command: PostgreSQL reads exit 2 as "not archived" and could
    // end recovery early on a mistyped command, so a usage error stops recovery instead.
    if sub.as_deref() == Some("wal") && words.any(|a| a == "fetch") {
        return opsctl::commands::wal::EXIT_RECOVERY_STOP;
    }
    match sub {
        Some(s) if Command::MONITORING.contains(&s.as_ref()) => 3,
        _ => 2,
    }
}

//! The opsctl binary: parse, set up logging, run, map the exit status.

use std::process::ExitCode;

use clap::Parser;
use opsctl::cli::{Cli, Command};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(usage_exit_code(&e, &args));
        }
    };
    opsctl::logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
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
    let sub = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy())
        .find(|a| !a.starts_with('-'));
    match sub {
        Some(s) if Command::MONITORING.contains(&s.as_ref()) => 3,
        _ => 2,
    }
}

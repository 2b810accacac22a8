//! `opsctl import`: validates a JSON array or NDJSON file and loads it into one table,
//! with a progress bar on a terminal and a summary (text or JSON).

use std::io::Read;

use super::{conn_settings, print, stderr_is_terminal, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use crate::cli::{Format, ImportArgs, ImportTable};
use crate::import::{self, Options, Progress, Summary, Table};

pub async fn run(args: ImportArgs) -> u8 {
    let settings = match conn_settings(&args.connect) {
        Ok(s) => s,
        Err(e) => {
            super::report_error(&e.to_string());
            return EXIT_USAGE;
        }
    };
    let table = match args.table {
        ImportTable::Users => Table::Users,
        ImportTable::Trades => Table::Trades,
        ImportTable::Positions => Table::Positions,
        ImportTable::AccountTotals => Table::AccountTotals,
    };
    let stdin = args.file.as_os_str() == "-";
    if let Some(r) = &args.reject_file {
        if !stdin && same_file(r, &args.file) {
            super::report_error("--reject-file must not be the input file");
            return EXIT_USAGE;
        }
        if !args.force && r.symlink_metadata().is_ok() {
            super::report_error(&import::reject_file_exists(r).to_string());
            return EXIT_USAGE;
        }
    }
    let (input, source, size): (Box<dyn Read + Send>, String, Option<u64>) = if stdin {
        (Box::new(std::io::stdin()), "<stdin>".to_string(), None)
    } else {
        match std::fs::File::open(&args.file) {
            Ok(f) => {
                let size = f.metadata().ok().map(|m| m.len());
                (Box::new(f), args.file.display().to_string(), size)
            }
            Err(e) => {
                super::report_error(&format!("cannot open {}: {e}", args.file.display()));
                return EXIT_FAILURE;
            }
        }
    };
    let opts = Options {
        table,
        upsert: args.upsert,
        batch_size: args.batch_size as usize,
        reject_file: args.reject_file.clone(),
        overwrite_reject_file: args.force,
    };
    let bar = stderr_is_terminal().then(|| {
        let bar = match size {
            Some(n) => indicatif::ProgressBar::new(n).with_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} importing {msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} ({eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
            None => indicatif::ProgressBar::new_spinner(),
        };
        bar.set_message(format!("into {}", table.name()));
        bar
    });
    let progress: Option<Progress> = bar.clone().map(|b| {
        Box::new(move |bytes: u64, rows: u64| {
            b.set_position(bytes);
            b.set_message(format!("{rows} rows"));
        }) as Progress
    });
    // On Ctrl-C or SIGTERM the import is dropped: its transaction rolls back with the
    // connection and the unfinished reject file (a temporary file) is removed.
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot install the SIGTERM handler: {e}");
            return EXIT_FAILURE;
        }
    };
    let interrupted =
        |what: &str| format!("{what}: nothing was imported and no reject file was written");
    let result = tokio::select! {
        r = import::import(&settings, input, &source, &opts, progress) => r,
        _ = tokio::signal::ctrl_c() => Err(crate::error::Error::Other(interrupted("interrupted"))),
        _ = term.recv() => Err(crate::error::Error::Other(interrupted("terminated"))),
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    match result {
        Ok(s) => {
            super::note_result(format!(
                "{} into {}: {} inserted, {} updated, {} duplicate, {} rejected",
                s.source,
                s.table,
                crate::text::count(s.inserted),
                crate::text::count(s.updated),
                crate::text::count(s.duplicate),
                crate::text::count(s.rejected)
            ));
            render(&s, args.output.format);
            EXIT_OK
        }
        Err(e) => {
            if args.output.format == Format::Json {
                print(
                    &(serde_json::json!({"ok": false, "table": table.name(), "source": source, "error": e.to_string()})
                        .to_string()
                        + "\n"),
                );
            }
            super::report_error(&e.to_string());
            EXIT_FAILURE
        }
    }
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn render(s: &Summary, format: Format) {
    match format {
        Format::Json => print(&(serde_json::to_string_pretty(s).unwrap_or_default() + "\n")),
        Format::Text => {
            let mut out = format!(
                "imported {} into {}: {} inserted, {} duplicate, {} updated, {} unchanged, \
                 {} rejected ({} in {}, {})\n",
                s.source,
                s.table,
                crate::text::count(s.inserted),
                crate::text::count(s.duplicate),
                crate::text::count(s.updated),
                crate::text::count(s.unchanged),
                crate::text::count(s.rejected),
                crate::text::plural(s.rows, "row"),
                crate::text::duration_short(s.elapsed_ms as f64 / 1000.0),
                crate::text::rate(s.rows as f64, s.elapsed_ms as f64 / 1000.0, "rows")
            );
            if let (Some(p), true) = (&s.reject_file, s.rejected > 0) {
                out.push_str(&format!("rejected rows are in {p}\n"));
            }
            print(&out);
        }
    }
}

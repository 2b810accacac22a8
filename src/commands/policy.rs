//! `opsctl policy check`: lists every problem of a policy file, then the effective policy.

use crate::cli::{Format, PolicyCheckArgs, PolicyCommand};
use crate::commands::{print, EXIT_FAILURE, EXIT_OK};
use crate::policy::Policy;
use crate::policy_check;

pub fn run(cmd: PolicyCommand) -> u8 {
    match cmd {
        PolicyCommand::Check(args) => check(args),
    }
}

fn check(args: PolicyCheckArgs) -> u8 {
    let path = args.file.or(args.policy.policy);
    let (origin, outcome) = match &path {
        None => (
            "(built-in defaults)".to_string(),
            policy_check::CheckOutcome {
                problems: vec![],
                policy: Some(Policy::default()),
            },
        ),
        Some(p) => match std::fs::read_to_string(p) {
            Ok(text) => (
                p.display().to_string(),
                policy_check::check(&text, &p.display().to_string()),
            ),
            Err(e) => {
                super::report_error(&format!("cannot read policy file {}: {e}", p.display()));
                return EXIT_FAILURE;
            }
        },
    };
    let ok = outcome.problems.is_empty();
    match args.output.format {
        Format::Json => {
            let v = serde_json::json!({
                "file": origin,
                "ok": ok,
                "problems": outcome.problems,
                "effective": outcome.policy,
            });
            print(&format!(
                "{}\n",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            ));
        }
        Format::Text => {
            for p in &outcome.problems {
                let line = format!("{origin}:{}:{}: {}", p.line, p.column, p.message);
                if crate::logging::json() {
                    crate::logging::error(line);
                } else {
                    eprintln!("{line}");
                }
            }
            if ok {
                let effective = outcome
                    .policy
                    .as_ref()
                    .and_then(|p| toml::to_string_pretty(p).ok())
                    .unwrap_or_default();
                print(&format!(
                    "# {origin}: OK. Effective policy (defaults filled in):\n{effective}"
                ));
            } else {
                crate::logging::info(format_args!(
                    "{origin}: {} problem(s)",
                    outcome.problems.len()
                ));
            }
        }
    }
    if ok {
        EXIT_OK
    } else {
        EXIT_FAILURE
    }
}

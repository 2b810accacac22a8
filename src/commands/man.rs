//! `opsctl man [--dir DIR]`: the manual page opsctl(1) on stdout, or opsctl.1 and one
//! page per command (`opsctl-backup-create.1`, …) written into DIR (clap_mangen).

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use super::{print_error, EXIT_FAILURE, EXIT_OK};
use crate::cli::{Cli, ManArgs};

pub fn run(args: ManArgs) -> u8 {
    let cmd = Cli::command();
    let result = match &args.dir {
        None => page(&cmd).map(|roff| super::print(&String::from_utf8_lossy(&roff))),
        Some(dir) => write_all(&cmd, dir)
            .map(|n| super::print(&format!("wrote {n} manual pages into {}\n", dir.display()))),
    };
    match result {
        Ok(()) => EXIT_OK,
        Err(e) => {
            print_error(&e);
            EXIT_FAILURE
        }
    }
}

fn page(cmd: &clap::Command) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    Ok(out)
}

/// opsctl.1, then one page per (sub)command, named after its path (`opsctl-migrate-up.1`,
/// the display name clap gives it when the command is built).
fn write_all(cmd: &clap::Command, dir: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cmd = cmd.clone();
    cmd.build();
    let mut n = 0;
    write_tree(&cmd, dir, &mut n)?;
    Ok(n)
}

fn write_tree(cmd: &clap::Command, dir: &Path, n: &mut usize) -> anyhow::Result<()> {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name());
    let path = dir.join(format!("{name}.1"));
    crate::fsutil::write_atomic(&path, &page(cmd)?, 0o644)
        .with_context(|| format!("cannot write {}", path.display()))?;
    *n += 1;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_tree(sub, dir, n)?;
    }
    Ok(())
}

//! `opsctl completions bash|zsh|fish`: the shell completion script on stdout (clap_complete).

use clap::CommandFactory;

use super::EXIT_OK;
use crate::cli::{Cli, CompletionsArgs};

pub fn run(args: CompletionsArgs) -> u8 {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "opsctl", &mut out);
    super::print(&String::from_utf8_lossy(&out));
    EXIT_OK
}

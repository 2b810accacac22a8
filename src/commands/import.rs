//! `opsctl import`: validates a JSON file and loads it into one table.

use crate::cli::ImportArgs;

pub async fn run(_args: ImportArgs) -> u8 {
    eprintln!("error: not yet");
    1
}

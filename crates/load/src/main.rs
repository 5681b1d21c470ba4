//! `playground-load`: the load generator on its own, without the servers and
//! without librdkafka (`cargo install --path crates/load`).

use clap::Parser;
use playground_load::{Cli, run, runtime};

fn main() -> std::process::ExitCode {
    let command = Cli::parse().command;
    let result = runtime(&command).map_err(anyhow::Error::from).and_then(|rt| rt.block_on(run(command)));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! The `playground` binary: one executable, one role per subcommand.

use clap::Parser;
use playground::config::{Cli, Command};
use playground::{load, serve, telemetry};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match &cli.command {
        Command::Load(args) => load::runtime(args),
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Tcp(args) => {
                telemetry::init(&args.common)?;
                serve::run_tcp(args).await
            }
            Command::Serve(args) => {
                telemetry::init(&args.common)?;
                serve::run_serve(args).await
            }
            Command::Load(args) => load::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

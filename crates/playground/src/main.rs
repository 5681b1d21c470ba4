//! The `playground` binary: one executable, one role per subcommand. It only
//! dispatches; each role lives in its own crate (`playground-server`,
//! `playground-logger`, `playground-load`).

mod cli;

use clap::Parser;
use cli::{Cli, Command};
use playground_server::serve;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match &cli.command {
        Command::Load(args) => playground_load::runtime(args),
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
        let done = |r: anyhow::Result<()>| r.map(|()| std::process::ExitCode::SUCCESS);
        match cli.command {
            Command::Tcp(args) => {
                let shipper = serve::init_logging(&args.common, &args.backends)?;
                done(serve::run_tcp(args, shipper).await)
            }
            Command::Udp(args) => {
                let shipper = serve::init_logging(&args.common, &args.backends)?;
                done(serve::run_udp(args, shipper).await)
            }
            Command::Serve(args) => {
                let shipper = serve::init_logging(&args.common, &args.backends)?;
                done(serve::run_serve(args, shipper).await)
            }
            // The load's exit code tells whether its results passed their checks.
            Command::Load(command) => playground_load::run(command).await,
            Command::Logger(args) => done(playground_logger::run(*args).await),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

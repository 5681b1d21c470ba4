//! The `playground` binary: one executable, one role per subcommand. It only
//! dispatches; each role lives in its own crate (`playground-server`,
//! `playground-logger`, `playground-load`, `playground-scale`).

mod cli;

use clap::Parser;
use cli::{Cli, Command};
use playground_server::config::{ServeArgs, TcpArgs, UdpArgs};
use playground_server::runtime::{RuntimeMode, Runtimes};
use playground_server::serve;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtimes = match &cli.command {
        Command::Load(args) => playground_load::runtime(args).map(Runtimes::single),
        Command::Logger(_) | Command::Scale(_) => Runtimes::build(RuntimeMode::Multi, 1),
        Command::Tcp(TcpArgs { common, .. })
        | Command::Udp(UdpArgs { common, .. })
        | Command::Serve(ServeArgs { common, .. }) => Runtimes::build(common.runtime, Runtimes::cores()),
    };
    let runtimes = match runtimes {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let spread = runtimes.spread();
    let result = runtimes.block_on(async {
        let done = |r: anyhow::Result<()>| r.map(|()| std::process::ExitCode::SUCCESS);
        match cli.command {
            Command::Tcp(args) => {
                let shipper = serve::init_logging(&args.common)?;
                done(serve::run_tcp(args, shipper, spread).await)
            }
            Command::Udp(args) => {
                let shipper = serve::init_logging(&args.common)?;
                done(serve::run_udp(args, shipper, spread).await)
            }
            Command::Serve(args) => {
                let shipper = serve::init_logging(&args.common)?;
                done(serve::run_serve(args, shipper, spread).await)
            }
            // The load's exit code tells whether its results passed their checks.
            Command::Load(command) => playground_load::run(command).await,
            Command::Logger(args) => done(playground_logger::run(*args).await),
            Command::Scale(args) => done(playground_scale::run(args).await),
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

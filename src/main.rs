//! `wakeline`: the desktop binary testers script against. `wakeline --help` lists the commands.

mod cli;

use clap::Parser;
use cli::args::{Cli, Cmd};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn init_logging(sip_trace: bool) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if sip_trace {
        if let Ok(d) = "wakeline::sip_trace=info".parse() {
            filter = filter.add_directive(d);
        }
    } else if let Ok(d) = "wakeline::sip_trace=off".parse() {
        filter = filter.add_directive(d);
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let sip_trace = match &cli.cmd {
        Cmd::Listen(a) => a.common.sip_trace,
        Cmd::Call(a) => a.common.sip_trace,
        Cmd::Register(a) => a.common.sip_trace,
        Cmd::Demo(a) => a.common.sip_trace,
    };
    init_logging(sip_trace);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.cmd {
            Cmd::Listen(a) => cli::run::listen(a).await,
            Cmd::Call(a) => cli::run::call(a).await,
            Cmd::Register(a) => cli::run::register(a).await,
            Cmd::Demo(a) => cli::run::demo(a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(cli::run::Fail(msg)) => {
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

//! `wakeline`: the desktop binary testers script against. `wakeline --help` lists the commands.

mod cli;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
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
    let ansi = colour_wanted(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR"),
    );
    cli::logline::set_ansi(ansi);
    tracing_subscriber::util::SubscriberInitExt::init(log_subscriber(
        filter,
        ansi,
        cli::clock::LogClock,
        || cli::status::LogWriter,
    ));
}

/// The log's formatter: `2026-12-07T05:06:57.305527Z  INFO message`, colour when `ansi`.
/// `cli::logline` makes the lines of every call itself, the same text (its tests hold the two
/// together through this function).
fn log_subscriber<T, W>(
    filter: EnvFilter,
    ansi: bool,
    timer: T,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    T: tracing_subscriber::fmt::time::FormatTime + Send + Sync + 'static,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_timer(timer)
        .with_writer(writer)
        .with_target(false)
        .finish()
}

/// ANSI colour only on a terminal, and never when `NO_COLOR` is set to anything non-empty
/// (no-color.org).
fn colour_wanted(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Whether the subcommand's flag `id` was given (not a default).
fn given(matches: &ArgMatches, id: &str) -> bool {
    matches
        .subcommand()
        .and_then(|(_, m)| match m.try_contains_id(id) {
            Ok(true) => m.value_source(id),
            _ => None,
        })
        .is_some_and(|s| s != ValueSource::DefaultValue)
}

/// Reads the configuration file and fills in what the flags left out.
fn apply_config(cli: &mut Cli, matches: &ArgMatches) -> Result<(), cli::run::Fail> {
    if matches!(cli.cmd, Cmd::Config(_) | Cmd::Demo(_)) {
        return Ok(());
    }
    let file = cli::config::load(cli.config.as_deref())?;
    let codecs_given = given(matches, "codecs");
    match &mut cli.cmd {
        Cmd::Listen(a) => {
            cli::config::merge_account(&mut a.account, &file.account)?;
            cli::config::merge_media(&mut a.media, &file, codecs_given);
            cli::config::merge_answer(
                &mut a.answer,
                &mut a.answer_after,
                &file.answer,
                given(matches, "answer"),
                given(matches, "answer_after"),
            );
        }
        Cmd::Call(a) => {
            cli::config::merge_account(&mut a.account, &file.account)?;
            cli::config::merge_media(&mut a.media, &file, codecs_given);
        }
        Cmd::Register(a) => cli::config::merge_account(&mut a.account, &file.account)?,
        Cmd::Load(a) => cli::config::merge_account(&mut a.account, &file.account)?,
        Cmd::Demo(_) | Cmd::Config(_) => {}
    }
    if let Cmd::Listen(cli::args::ListenArgs { account, .. })
    | Cmd::Call(cli::args::CallArgs { account, .. })
    | Cmd::Register(cli::args::RegisterArgs { account, .. }) = &mut cli.cmd
    {
        cli::tls::merge(&mut account.tls, &file.tls);
    }
    cli::run::set_transport(file.transport);
    cli::run::set_network(file.network);
    Ok(())
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let sip_trace = match &cli.cmd {
        Cmd::Listen(a) => a.common.sip_trace,
        Cmd::Call(a) => a.common.sip_trace,
        Cmd::Register(a) => a.common.sip_trace,
        Cmd::Demo(a) => a.common.sip_trace,
        Cmd::Load(a) => a.common.sip_trace,
        Cmd::Config(_) => false,
    };
    init_logging(sip_trace);
    if let Err(f) = apply_config(&mut cli, &matches) {
        eprintln!("{}", f.msg);
        return f.exit.code();
    }
    if let Cmd::Config(a) = &cli.cmd {
        return cli::run::config_cmd(a);
    }
    // One thread for signaling and the CLI (the driver is one task; media has its own
    // workers, `driver/media_rt.rs`): no hand-offs between workers, so an idle keep-alive
    // round or a call set-up wakes one thread, not two (issue 12 §3).
    // Log and event lines are written when this thread goes idle, spaced under load
    // (`cli/out.rs`).
    cli::out::gather_on_this_thread();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(cli::out::park_hook)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The command runs as a spawned task, not as `block_on`'s own future: when that future
    // is woken the runtime checks the reactor once more (an `epoll_wait` with no timeout)
    // before it polls it, on every wake-up; a task is polled with the others.
    let command = async move {
        match cli.cmd {
            Cmd::Listen(a) => cli::run::listen(a).await,
            Cmd::Call(a) => cli::run::call(a).await,
            Cmd::Register(a) => cli::run::register(a).await,
            Cmd::Demo(a) => cli::run::demo(a).await,
            Cmd::Load(a) => cli::load::run(a).await,
            Cmd::Config(a) => Ok(cli::run::config_cmd(&a)),
        }
    };
    let joined = rt.block_on(async {
        tokio::spawn(cli::out::flusher());
        tokio::spawn(command).await
    });
    // What is gathered goes out now (before a panic goes on unwinding, too), and lines from
    // here on (the runtime's drop, the error below) directly.
    cli::out::stop_gathering();
    let result = match joined {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(cli::exit::Fail::new(
            cli::exit::Exit::Interrupted,
            format!("stopped: {e}"),
        )),
    };
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("{}", f.msg);
            f.exit.code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_wanted(true, None));
        assert!(!colour_wanted(false, None));
        assert!(!colour_wanted(true, Some("1".into())));
        assert!(colour_wanted(true, Some("".into())));
    }

    #[test]
    fn given_tells_flags_from_defaults_and_missing_ids() {
        let m = Cli::command()
            .try_get_matches_from(["wakeline", "call", "sip:a@b", "--codecs", "pcmu"])
            .unwrap();
        assert!(given(&m, "codecs"));
        let m = Cli::command()
            .try_get_matches_from(["wakeline", "listen"])
            .unwrap();
        assert!(!given(&m, "codecs"));
        assert!(!given(&m, "answer"));
        // `register` has no --codecs: no panic, just "not given".
        let m = Cli::command()
            .try_get_matches_from(["wakeline", "--config", "x.toml", "register"])
            .unwrap();
        assert!(!given(&m, "codecs"));
        let cli = Cli::from_arg_matches(&m).unwrap();
        assert_eq!(cli.config.as_deref(), Some(std::path::Path::new("x.toml")));
    }
}

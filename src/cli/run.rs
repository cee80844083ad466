//! The commands: listen, call, register, demo.

use super::args::{
    AccountArgs, CallArgs, ConfigArgs, DemoArgs, ListenArgs, MediaArgs, RegisterArgs,
};
use super::config::TransportSection;
use super::events::{outcome_name, state_name, EventLog};
use super::exit::Exit;
use super::media;
use super::pcap::PcapWriter;
use super::report::{self, Sample};
use super::status::{self, KeyAction, Live};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use wakeline::driver::{io_cause, MediaOptions};
use wakeline::media::audio::{AudioSink, AudioSource};
use wakeline::signaling::message::{Host, Uri};
use wakeline::{Account, AnswerPolicy, CallOutcome, Config, Event, UserAgent};

pub use super::exit::Fail;

fn account(args: &AccountArgs) -> Result<Option<Account>, Fail> {
    let Some(registrar) = &args.registrar else {
        if args.user.is_some() || args.password.is_some() || args.proxy.is_some() {
            return Err(Fail::usage("--user/--password/--proxy need --registrar"));
        }
        return Ok(None);
    };
    let registrar = Uri::parse(registrar).map_err(|e| Fail::usage(format!("--registrar: {e}")))?;
    let user = args
        .user
        .clone()
        .ok_or_else(|| Fail::usage("--registrar needs --user"))?;
    let domain = match &args.domain {
        Some(d) => d.clone(),
        None => match &registrar.host {
            Host::Domain(d) => d.clone(),
            other => other.to_string(),
        },
    };
    let proxy = match &args.proxy {
        Some(p) => Some(Uri::parse(p).map_err(|e| Fail::usage(format!("--proxy: {e}")))?),
        None => None,
    };
    Ok(Some(Account {
        registrar,
        user,
        domain,
        password: args.password.clone(),
        auth_user: None,
        proxy,
    }))
}

static TRANSPORT: OnceLock<TransportSection> = OnceLock::new();

/// The configuration file's `[transport]` section, applied to every user agent started here.
pub fn set_transport(t: TransportSection) {
    let _ = TRANSPORT.set(t);
}

static NETWORK: OnceLock<super::config::NetworkSection> = OnceLock::new();

/// The configuration file's `[network]` section, applied to every user agent started here.
pub fn set_network(n: super::config::NetworkSection) {
    let _ = NETWORK.set(n);
}

/// `--dns`, else `[network] dns`, else empty (the system's servers).
pub(super) fn dns_servers(acct: &AccountArgs) -> Vec<std::net::SocketAddr> {
    if acct.dns.is_empty() {
        NETWORK.get().map(|n| n.dns_servers()).unwrap_or_default()
    } else {
        acct.dns.clone()
    }
}

/// `wakeline config`
pub fn config_cmd(args: &ConfigArgs) -> ExitCode {
    if args.path || !args.example {
        match super::config::default_path() {
            Some(p) => println!("{}", p.display()),
            None => {
                eprintln!("no configuration folder on this system (HOME unset?)");
                return ExitCode::FAILURE;
            }
        }
    }
    if args.example {
        print!("{}", super::config::EXAMPLE);
    }
    ExitCode::SUCCESS
}

/// `--pcap`: the capture file, installed as the user agent's packet tap.
fn pcap_writer(
    media: &MediaArgs,
) -> Result<Option<Arc<PcapWriter<std::io::BufWriter<std::fs::File>>>>, Fail> {
    match &media.pcap {
        Some(p) => PcapWriter::create(p)
            .map(|w| Some(Arc::new(w)))
            .map_err(|e| Fail::usage(format!("--pcap {}: {e}", p.display()))),
        None => Ok(None),
    }
}

fn write_report(
    path: &std::path::Path,
    title: &str,
    samples: &[Sample],
    media: Option<&wakeline::media::MediaReport>,
) {
    match report::write(path, title, samples, &report::table(media)) {
        Ok(()) => tracing::info!("quality report: {}", path.display()),
        Err(e) => tracing::warn!("--report: {e}"),
    }
}

pub(super) fn config(acct: &AccountArgs) -> Result<Config, Fail> {
    let account = account(acct)?;
    let mut config = Config::default();
    if let Some(t) = TRANSPORT.get() {
        super::config::apply_transport(&mut config, t);
    }
    if let Some(t) = &acct.transport {
        config.default_transport = t
            .parse()
            .map_err(|e| Fail::usage(format!("--transport: {e}")))?;
        config.transport_by_dns = false;
    }
    if let Some(a) = &account {
        config.local_user = a.user.clone();
        for (flag, uri) in [
            ("--registrar", Some(&a.registrar)),
            ("--proxy", a.proxy.as_ref()),
        ] {
            if let Some(uri) = uri {
                wakeline::Transport::for_uri(uri, config.default_transport)
                    .map_err(|e| Fail::usage(format!("{flag} {uri}: {e}")))?;
            }
        }
    }
    // The instance-id (RFC 5626) names this device to a registrar: only an account needs it,
    // and only then is it worth holding its lock.
    if account.is_some() {
        config.instance_id = Some(super::instance::instance_id());
    }
    config.account = account;
    Ok(config)
}

/// Resolves on SIGINT (`Exit::Interrupted`) or SIGTERM (`Exit::Terminated`). The signals are
/// awaited by a task of their own: a command's loop polls this on every event, and a finished-
/// or-not check of a task is cheaper than polling both signal streams again.
pub(super) fn stop_signal() -> impl std::future::Future<Output = Exit> {
    let waiting = tokio::spawn(wait_for_stop_signal());
    async move { waiting.await.unwrap_or(Exit::Interrupted) }
}

async fn wait_for_stop_signal() -> Exit {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => Exit::Interrupted,
                    _ = term.recv() => Exit::Terminated,
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                Exit::Interrupted
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        Exit::Interrupted
    }
}

/// Opens `--events` (`-` is stdout).
pub(super) fn event_log(common: &super::args::CommonArgs) -> Result<EventLog, Fail> {
    EventLog::open(common.events.as_deref()).map_err(|e| {
        let path = common.events.as_deref().unwrap_or(std::path::Path::new(""));
        Fail::usage(format!("--events {}: {}", path.display(), io_cause(&e)))
    })
}

fn log_event(ev: &Event) {
    // The lines of every call are made by `logline` (the text `tracing::info!` would give,
    // for a fraction of the cost), when INFO is on for this module.
    let info_on = || tracing::enabled!(tracing::Level::INFO);
    match ev {
        Event::Incoming { call_id, from, .. } => {
            if info_on() {
                super::logline::info(&["incoming call ", call_id, " from ", from])
            }
        }
        Event::State { call_id, state, .. } => {
            if info_on() {
                super::logline::info(&["call ", call_id, ": ", state_name(*state)])
            }
        }
        Event::Ended {
            call_id,
            status,
            reason,
            outcome,
            ..
        } => {
            if info_on() {
                // `200`, or `-` when there was none (`events::status_text`).
                let mut digits = itoa::Buffer::new();
                let status = status.map_or("-", |s| digits.format(s));
                super::logline::info(&[
                    "call ",
                    call_id,
                    " ended: ",
                    status,
                    " ",
                    reason,
                    " (",
                    outcome_name(*outcome),
                    ")",
                ])
            }
        }
        Event::Registered { expires, .. } => tracing::info!("registered for {expires} s"),
        // The core logs each failed attempt itself.
        Event::RegistrationFailed { .. } => {}
        Event::FlowDown { flow, cause } => tracing::debug!("flow {} down: {cause}", flow.0),
        other => tracing::debug!("{other:?}"),
    }
}

/// `wakeline listen`
pub async fn listen(args: ListenArgs) -> Result<ExitCode, Fail> {
    if args.media.list_devices {
        media::list_devices()?;
        return Ok(ExitCode::SUCCESS);
    }
    super::check::listen_args(&args)?;
    super::load::raise_fd_limit();
    let mut config = config(&args.account)?;
    config.codecs = media::codecs(&args.media.codecs)?;
    let tls_run = super::srtp::account_is_tls(&args.account) || args.tls_bind.is_some();
    (config.srtp, config.srtp_tls) =
        super::srtp::policies(&args.media, tls_run).map(|(plain, tls)| (plain, Some(tls)))?;
    let max_concurrent = args.max_concurrent.max(1);
    config.busy_policy = wakeline::BusyPolicy::Limit {
        calls: max_concurrent,
        code: 486,
    };
    let mut media_options = media::options(&args.media)?;
    media_options.record_per_call = max_concurrent > 1;
    let has_account = config.account.is_some();
    let mut builder = UserAgent::builder(config)
        .listen(args.bind)
        .listener_limits(super::config::listener_limits(TRANSPORT.get()))
        .media(media_options)
        .dns_servers(dns_servers(&args.account));
    builder = super::tls::apply(builder, &args.account.tls, args.tls_bind)?;
    if let Some(ip) = args.media.media_ip {
        builder = builder.media_ip(ip);
    }
    if let Some(server) = &args.media.stun {
        builder = builder.stun_server(server.clone());
    }
    if let Some(p) = pcap_writer(&args.media)? {
        builder = builder.tap(p);
    }
    let (ua, mut events) = builder
        .start()
        .await
        .map_err(|e| Fail::from(e).context("listen"))?;
    let mut log = event_log(&args.common)?;
    if has_account {
        ua.register().await?;
    }
    tracing::info!("listening on {}", args.bind);
    if let Some(tls) = ua.tls_local_addr() {
        tracing::info!("listening for TLS on {tls}");
    }
    let policy = match args.answer.0 {
        AnswerPolicy::Ring(_) => {
            AnswerPolicy::Ring(Duration::from_secs_f64(args.answer_after.max(0.0)))
        }
        p => p,
    };
    let mut ended = 0u64;
    let mut summaries = media::Summaries::new(args.media.summary.clone(), true);
    let hang_up_after = args.duration.map(|s| Duration::from_secs_f64(s.max(0.0)));
    let mut stopped = None;
    let mut live = Live::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut kept = ReportInputs::new(args.media.report.is_some());
    let mut reports = 0u64;
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            ev = events.next() => {
                let Some(ev) = ev else { return Err(Fail::usage("user agent stopped")) };
                log_event(&ev);
                log.write(&ev);
                live.on_event(&ev);
                summaries.note(&ev);
                if let Some((call_id, s, media)) = kept.note(&ev) {
                    if let Some(path) = &args.media.report {
                        reports += 1;
                        write_report(&report::numbered(path, reports), &format!("wakeline call {call_id}"), &s, media.as_deref());
                    }
                }
                match &ev {
                    Event::Incoming { call, .. } => {
                        let call = ua.call_handle(*call);
                        if let AnswerPolicy::Auto = policy {
                            // The outcome shows in the events: no task per call to await it.
                            if let Err(e) = call.answer_detached() {
                                tracing::debug!("answering policy: {e}");
                            }
                            continue;
                        }
                        tokio::spawn(async move {
                            let r = match policy {
                                AnswerPolicy::Auto => call.answer().await,
                                AnswerPolicy::Reject(code) => call.reject(code).await,
                                AnswerPolicy::Ring(after) => match call.ring().await {
                                    Ok(()) => {
                                        tokio::time::sleep(after).await;
                                        call.answer().await
                                    }
                                    Err(e) => Err(e),
                                },
                            };
                            if let Err(e) = r {
                                // Usual when the caller cancelled while we were ringing.
                                tracing::debug!("answering policy: {e}");
                            }
                        });
                    }
                    Event::State { call, state: wakeline::CallState::Connected, .. } => {
                        if let Some(after) = hang_up_after {
                            let call = ua.call_handle(*call);
                            tokio::spawn(async move {
                                tokio::time::sleep(after).await;
                                if let Err(e) = call.hangup().await {
                                    tracing::debug!("--duration: {e}");
                                }
                            });
                        }
                    }
                    Event::Ended { .. } => {
                        ended += 1;
                        if args.max_calls.is_some_and(|n| ended >= n) {
                            break;
                        }
                    }
                    _ => {}
                }
            }
            _ = tick.tick(), if live.is_tty() => live.tick(),
            k = live.key() => match (k, live.call) {
                (KeyAction::Interrupt, _) => {
                    stopped = Some(Exit::Interrupted);
                    break;
                }
                (k, Some(h)) => {
                    let call = ua.call_handle(h);
                    status::act(&call, k, &mut live.view).await;
                }
                (_, None) => {}
            },
            why = &mut stop => {
                stopped = Some(why);
                break;
            }
        }
    }
    live.finish();
    ua.shutdown().await?;
    // Calls hung up by the shutdown end here: their reports and summaries still count.
    while let Some(ev) = events.try_next() {
        log_event(&ev);
        log.write(&ev);
        summaries.note(&ev);
    }
    match stopped {
        Some(why) => Err(Fail::new(why, "listen interrupted")),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// What `listen --report` draws for each call (its `MediaStats` samples and `MediaReport`),
/// kept from the call's first sample to its end and only when a report was asked for: a
/// listener serves calls without end, so nothing of a call may stay once it has ended.
struct ReportInputs {
    keep: bool,
    samples: HashMap<wakeline::CallHandle, Vec<Sample>>,
    media: HashMap<wakeline::CallHandle, Box<wakeline::MediaReport>>,
}

impl ReportInputs {
    fn new(keep: bool) -> Self {
        ReportInputs {
            keep,
            samples: HashMap::new(),
            media: HashMap::new(),
        }
    }

    /// Notes `ev`; at a call's `Ended`, gives back its Call-ID and what was kept of it (when a
    /// report was asked for).
    #[allow(clippy::type_complexity)]
    fn note(
        &mut self,
        ev: &Event,
    ) -> Option<(String, Vec<Sample>, Option<Box<wakeline::MediaReport>>)> {
        match ev {
            Event::MediaReport { call, report, .. } if self.keep => {
                self.media.insert(*call, report.clone());
            }
            Event::MediaStats { .. } if self.keep => note_samples(&mut self.samples, ev),
            // Without `--report` there is nothing to give back (nor a Call-ID to copy).
            Event::Ended { call, call_id, .. } if self.keep => {
                let samples = self.samples.remove(call).unwrap_or_default();
                return Some((call_id.clone(), samples, self.media.remove(call)));
            }
            _ => {}
        }
        None
    }

    /// How many calls have something kept.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.samples.len().max(self.media.len())
    }
}

/// Keeps each call's `MediaStats` samples for `--report`.
fn note_samples(samples: &mut HashMap<wakeline::CallHandle, Vec<Sample>>, ev: &Event) {
    if let Event::MediaStats { call, snapshot, .. } = ev {
        samples
            .entry(*call)
            .or_default()
            .push(Sample::from_snapshot(snapshot));
    }
}

/// Writes whatever events are already queued (the un-REGISTER result, final hang-ups).
fn drain(events: &mut wakeline::driver::Events, log: &mut EventLog) {
    while let Some(ev) = events.try_next() {
        log_event(&ev);
        log.write(&ev);
    }
}

/// `wakeline call`
pub async fn call(args: CallArgs) -> Result<ExitCode, Fail> {
    if args.media.list_devices {
        media::list_devices()?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(uri) = args.uri.clone() else {
        return Err(Fail::usage("call needs a URI"));
    };
    super::check::call_args(&args)?;
    let mut config = config(&args.account)?;
    config.codecs = media::codecs(&args.media.codecs)?;
    let tls = super::srtp::uri_is_tls(&uri) || super::srtp::account_is_tls(&args.account);
    (config.srtp, config.srtp_tls) =
        super::srtp::policies(&args.media, tls).map(|(plain, tls)| (plain, Some(tls)))?;
    let media_options = media::options(&args.media)?;
    let has_account = config.account.is_some();
    let mut builder = UserAgent::builder(config)
        .media(media_options)
        .dns_servers(dns_servers(&args.account));
    builder = super::tls::apply(builder, &args.account.tls, None)?;
    if let Some(ip) = args.media.media_ip {
        builder = builder.media_ip(ip);
    }
    if let Some(server) = &args.media.stun {
        builder = builder.stun_server(server.clone());
    }
    if let Some(bind) = args.bind {
        builder = builder
            .listen(bind)
            .listener_limits(super::config::listener_limits(TRANSPORT.get()));
    }
    if let Some(p) = pcap_writer(&args.media)? {
        builder = builder.tap(p);
    }
    let (ua, mut events) = builder
        .start()
        .await
        .map_err(|e| Fail::from(e).context("call"))?;
    let mut log = event_log(&args.common)?;
    if has_account {
        ua.register().await?;
        if let Err(f) = wait_registered_for_call(&args.account, &mut events, &mut log).await {
            ua.shutdown().await?;
            drain(&mut events, &mut log);
            return Err(f.context("call"));
        }
    }
    let call = ua
        .call(&uri)
        .await
        .map_err(|e| Fail::from(e).context("call"))?;
    let mut summaries = media::Summaries::new(args.media.summary.clone(), false);
    summaries.begin(call.handle(), &uri);
    let mut report = None;
    let duration = Duration::from_secs_f64(args.duration.max(0.0));
    let stop = stop_signal();
    tokio::pin!(stop);
    let never = Duration::from_secs(86_400 * 365);
    let hangup_at = tokio::time::sleep(never);
    tokio::pin!(hangup_at);
    // --ring-timeout: CANCEL when no answer came in time.
    let give_up_at = tokio::time::sleep(
        args.ring_timeout
            .map(|s| Duration::from_secs_f64(s.max(0.0)))
            .unwrap_or(never),
    );
    tokio::pin!(give_up_at);
    let mut gave_up = false;
    let mut dtmf_sent: Option<tokio::task::JoinHandle<Result<(), wakeline::Error>>> = None;
    let mut dtmf_error: Option<String> = None;
    let mut stopped: Option<Exit> = None;
    let mut live = Live::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut samples: HashMap<wakeline::CallHandle, Vec<Sample>> = HashMap::new();
    let result = loop {
        tokio::select! {
            ev = events.next() => {
                let Some(ev) = ev else { break Err(Fail::new(Exit::Sip, "call failed: the user agent stopped")) };
                log_event(&ev);
                log.write(&ev);
                live.on_event(&ev);
                note_samples(&mut samples, &ev);
                match ev {
                    Event::State { call: c, state: wakeline::CallState::Connected, .. } if c == call.handle() => {
                        give_up_at.as_mut().reset(tokio::time::Instant::now() + never);
                        hangup_at.as_mut().reset(tokio::time::Instant::now() + duration);
                        if let Some(digits) = args.dtmf.clone() {
                            let c = call.clone();
                            let info = args.dtmf_mode == "info";
                            dtmf_sent = Some(tokio::spawn(async move {
                                // Let media start and the far end's jitter buffer settle first.
                                tokio::time::sleep(Duration::from_millis(500)).await;
                                if info {
                                    c.send_dtmf_info(&digits).await
                                } else {
                                    c.send_dtmf(&digits).await
                                }
                            }));
                        }
                    }
                    Event::MediaReport { call: c, report: r, call_id } if c == call.handle() => {
                        summaries.note(&Event::MediaReport { call: c, call_id, report: r.clone() });
                        report = Some(r);
                    }
                    Event::Ended { call: c, call_id, status, reason, outcome, .. } if c == call.handle() => {
                        if let Some(path) = &args.media.report {
                            let s = samples.remove(&c).unwrap_or_default();
                            write_report(path, &format!("wakeline call {call_id}"), &s, report.as_deref());
                        }
                        let reason = match stopped {
                            Some(_) => "interrupted".to_string(),
                            None if gave_up => format!("no answer within {} s (CANCEL sent)", args.ring_timeout.unwrap_or(0.0)),
                            None => reason,
                        };
                        summaries.note(&Event::Ended { call: c, call_id, status, reason: reason.clone(), outcome });
                        let media_error = report
                            .as_ref()
                            .and_then(|r| r.error.clone())
                            .or(dtmf_error.take().map(|e| format!("--dtmf: {e}")));
                        break call_result(outcome, status, &reason, stopped, media_error);
                    }
                    _ => {}
                }
            }
            _ = &mut hangup_at => {
                // The digits go out before the BYE (bounded: the call may lose its media).
                if let Some(task) = dtmf_sent.take() {
                    match tokio::time::timeout(DTMF_WAIT, task).await {
                        Ok(Ok(Ok(()))) => {}
                        Ok(Ok(Err(e))) => dtmf_error = Some(e.to_string()),
                        Ok(Err(e)) => dtmf_error = Some(e.to_string()),
                        Err(_) => dtmf_error = Some(format!("not sent within {} s", DTMF_WAIT.as_secs())),
                    }
                }
                call.hangup().await?;
                hangup_at.as_mut().reset(tokio::time::Instant::now() + never);
            }
            _ = &mut give_up_at => {
                gave_up = true;
                give_up_at.as_mut().reset(tokio::time::Instant::now() + never);
                tracing::info!("no answer within --ring-timeout: cancelling");
                call.hangup().await?;
            }
            why = &mut stop, if stopped.is_none() => {
                stopped = Some(why);
                call.hangup().await?;
            }
            _ = tick.tick(), if live.is_tty() => live.tick(),
            k = live.key() => match k {
                KeyAction::Interrupt if stopped.is_none() => {
                    stopped = Some(Exit::Interrupted);
                    call.hangup().await?;
                }
                KeyAction::Interrupt => {}
                k => status::act(&call, k, &mut live.view).await,
            },
        }
    };
    live.finish();
    ua.shutdown().await?;
    drain(&mut events, &mut log);
    result.map(|()| ExitCode::SUCCESS)
}

/// How a call that ended this way ends the program.
fn call_result(
    outcome: CallOutcome,
    status: Option<u16>,
    reason: &str,
    stopped: Option<Exit>,
    media_error: Option<String>,
) -> Result<(), Fail> {
    if let Some(why) = stopped {
        return Err(Fail::new(why, "call interrupted"));
    }
    if let Some(exit) = Exit::for_outcome(outcome, status) {
        let msg = match status {
            None => format!("call failed: {reason}"),
            Some(status) => format!("call failed: {status} {reason}"),
        };
        return Err(Fail::new(exit, msg));
    }
    match media_error {
        Some(e) => Err(Fail::media(format!("call media failed: {e}"))),
        None => Ok(()),
    }
}

/// How long the hang-up waits for `--dtmf` digits still on their way.
const DTMF_WAIT: Duration = Duration::from_secs(20);

/// How long `call` and `register` (without `--for`) wait for the registrar.
const REGISTER_WAIT: Duration = Duration::from_secs(40);

/// The bounds of waiting for a registration.
#[derive(Clone, Copy)]
struct Registering<'a> {
    /// The registrar (or proxy) the REGISTER goes to, for messages.
    registrar: &'a str,
    /// Give up after this long.
    within: Duration,
    /// Give up on the first attempt that failed without a SIP answer (refused, unreachable,
    /// timed out) instead of letting the core retry.
    give_up_on_network: bool,
}

/// Before placing calls: waits for the registration, giving up on the first network failure.
pub(super) async fn wait_registered_for_call(
    account: &AccountArgs,
    events: &mut wakeline::driver::Events,
    log: &mut EventLog,
) -> Result<(), Fail> {
    let target = account.proxy.as_ref().or(account.registrar.as_ref());
    let bound = Registering {
        registrar: target.map_or("the registrar", String::as_str),
        within: REGISTER_WAIT,
        give_up_on_network: true,
    };
    wait_registered(events, log, bound).await
}

async fn wait_registered(
    events: &mut wakeline::driver::Events,
    log: &mut EventLog,
    bound: Registering<'_>,
) -> Result<(), Fail> {
    let deadline = tokio::time::sleep(bound.within);
    tokio::pin!(deadline);
    let mut last: Option<(u16, String)> = None;
    let mut attempts = 0u32;
    loop {
        tokio::select! {
            ev = events.next() => {
                let Some(ev) = ev else { return Err(Fail::new(Exit::Sip, "registration failed: the user agent stopped")) };
                log_event(&ev);
                log.write(&ev);
                match ev {
                    Event::Registered { .. } => return Ok(()),
                    Event::RegistrationFailed { status, reason, .. } => {
                        attempts += 1;
                        let final_answer = (400..700).contains(&status) && status != 408;
                        // A refused certificate will not change by retrying: say so now.
                        let bad_certificate = status == 0 && reason.contains(" TLS: certificate ");
                        if final_answer || bad_certificate || (status == 0 && bound.give_up_on_network) {
                            let msg = match status {
                                // The REGISTER itself got no answer (Timer F): say where it went.
                                0 if reason == "timeout" => format!("registration failed: REGISTER to {}: timeout", bound.registrar),
                                0 => format!("registration failed: {reason}"),
                                _ => format!("registration failed: {status} {reason}"),
                            };
                            return Err(Fail::new(Exit::for_status(status), msg));
                        }
                        last = Some((status, reason));
                    }
                    _ => {}
                }
            }
            _ = &mut deadline => {
                let secs = bound.within.as_secs_f64();
                return Err(match last {
                    Some((status, reason)) => Fail::new(
                        Exit::for_status(status),
                        format!("registration failed: {}{reason} ({attempts} attempts in {secs} s)",
                            if status == 0 { String::new() } else { format!("{status} ") }),
                    ),
                    None => Fail::new(Exit::Network, format!("registration failed: no answer from the registrar within {secs} s")),
                });
            }
        }
    }
}

/// `wakeline register`
pub async fn register(args: RegisterArgs) -> Result<ExitCode, Fail> {
    let config = config(&args.account)?;
    if config.account.is_none() {
        return Err(Fail::usage("register needs --registrar and --user"));
    }
    let builder = UserAgent::builder(config).dns_servers(dns_servers(&args.account));
    let (ua, mut events) = super::tls::apply(builder, &args.account.tls, None)?
        .start()
        .await?;
    let mut log = event_log(&args.common)?;
    ua.register().await?;
    let stay = args.for_secs.map(|s| Duration::from_secs_f64(s.max(0.0)));
    let started = tokio::time::Instant::now();
    let stop = stop_signal();
    tokio::pin!(stop);
    let target = args
        .account
        .proxy
        .as_ref()
        .or(args.account.registrar.as_ref());
    let bound = Registering {
        registrar: target.map_or("the registrar", String::as_str),
        within: stay.unwrap_or(REGISTER_WAIT),
        give_up_on_network: false,
    };
    let mut registered = tokio::select! {
        r = wait_registered(&mut events, &mut log, bound) => r,
        why = &mut stop => Err(Fail::new(why, "register interrupted")),
    };
    if registered.is_ok() {
        let until = tokio::time::sleep_until(
            started + stay.unwrap_or(Duration::from_secs(u64::from(u32::MAX))),
        );
        tokio::pin!(until);
        loop {
            tokio::select! {
                ev = events.next() => {
                    let Some(ev) = ev else { break };
                    log_event(&ev);
                    log.write(&ev);
                }
                _ = &mut until => break,
                why = &mut stop => {
                    // Ctrl-C ends a `register` without --for: that is how it is meant to end.
                    if stay.is_some() {
                        registered = Err(Fail::new(why, "register interrupted"));
                    }
                    break;
                }
            }
        }
    }
    ua.shutdown().await?;
    drain(&mut events, &mut log);
    registered.map(|()| ExitCode::SUCCESS)
}

/// `wakeline demo`: two user agents in this process, a real call over TCP on 127.0.0.1.
pub async fn demo(args: DemoArgs) -> Result<ExitCode, Fail> {
    let mut log = event_log(&args.common)?;
    let speaker = match &args.speaker {
        Some(s) => {
            let sink: AudioSink = s
                .parse()
                .map_err(|e| Fail::usage(format!("--speaker: {e}")))?;
            media::probe_sink(&sink).map_err(|e| Fail::media(format!("--speaker {s}: {e}")))?;
            sink
        }
        None => match media::probe_sink(&AudioSink::Default) {
            Ok(()) => AudioSink::Default,
            Err(_) => {
                println!(
                    "demo: no sound card here: alice's audio goes to {} only",
                    args.record.display()
                );
                AudioSink::Null
            }
        },
    };
    let chime = media::write_chime(&std::env::temp_dir().join("wakeline-demo-chime.wav"))
        .map_err(|e| Fail::media(format!("demo: cannot write the chime: {e}")))?;
    let tone = |hz| MediaOptions {
        source: AudioSource::Tone(hz),
        sink: AudioSink::Null,
        ..MediaOptions::default()
    };
    let media_ip = |b: wakeline::driver::UserAgentBuilder| match args.media_ip {
        Some(ip) => b.media_ip(ip),
        None => b,
    };
    let (bob, mut bob_events) = media_ip(UserAgent::builder(Config {
        local_user: "bob".into(),
        ..Config::default()
    }))
    .media(MediaOptions {
        source: AudioSource::Wav(chime),
        ..tone(1000.0)
    })
    .listen(
        "127.0.0.1:0"
            .parse()
            .map_err(|e| Fail::usage(format!("{e}")))?,
    )
    .start()
    .await?;
    let bob_addr = bob
        .local_addr()
        .ok_or_else(|| Fail::usage("demo: callee has no listener"))?;
    let bob_task = {
        let bob = bob.clone();
        tokio::spawn(async move {
            while let Some(ev) = bob_events.next().await {
                if let Event::Incoming { call, .. } = ev {
                    let c = bob.call_handle(call);
                    let _ = c.ring().await;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let _ = c.answer().await;
                }
            }
        })
    };
    let (alice, mut alice_events) = media_ip(UserAgent::builder(Config {
        local_user: "alice".into(),
        ..Config::default()
    }))
    .media(MediaOptions {
        sink: speaker,
        record: Some(args.record.clone()),
        ..tone(440.0)
    })
    .start()
    .await?;
    let target = format!("sip:bob@{bob_addr};transport=tcp");
    let mut live = Live::new();
    live.say(&format!(
        "demo: alice calls {target} (SIP over TCP on loopback; RTP over UDP)"
    ));
    live.say("demo: alice sends a 440 Hz tone, bob answers with a three-note chime (C5 E5 G5)");
    let call = alice.call(&target).await?;
    let duration = Duration::from_secs_f64(args.duration.max(0.0));
    let mut answered = false;
    let mut samples = Vec::new();
    let mut alice_report = None;
    let report_path = args.record.with_extension("svg");
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let outcome = loop {
        let ev = tokio::select! {
            ev = alice_events.next() => ev,
            _ = tick.tick(), if live.is_tty() => {
                live.tick();
                continue;
            }
            k = live.key() => {
                match k {
                    KeyAction::Interrupt => status::act(&call, KeyAction::Hangup, &mut live.view).await,
                    k => status::act(&call, k, &mut live.view).await,
                }
                continue;
            }
        };
        let Some(ev) = ev else {
            return Err(Fail::usage("demo: user agent stopped"));
        };
        log.write(&ev);
        live.on_event(&ev);
        if let Event::MediaReport { report, .. } = &ev {
            alice_report = Some(report.clone());
        }
        match &ev {
            Event::State { state, .. } => {
                live.say(&format!("demo: call {}", state_name(*state)));
                if *state == wakeline::CallState::Connected && !answered {
                    answered = true;
                    let c = call.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(duration).await;
                        let _ = c.hangup().await;
                    });
                }
            }
            Event::Media { media, .. } => live.say(&format!(
                "demo: media negotiated: {:?} (PT {}) to {}",
                media.codec, media.payload_type, media.remote_rtp
            )),
            Event::MediaStats { snapshot, .. } => samples.push(Sample::from_snapshot(snapshot)),
            Event::MediaReport { report, .. } => match (&report.stats, &report.error) {
                (Some(s), _) => live.say(&format!(
                    "demo: media: {} — sent {} / received {} RTP packets, lost {}, jitter {:.1} ms, \
                     concealed {:.0} ms, estimated MOS {}",
                    s.codec, s.rtp_sent, s.rtp_received, s.lost, s.jitter_ms, s.concealed_ms,
                    s.mos.map_or("- (no audio)".to_string(), |m| format!("{m:.2}"))
                )),
                (None, Some(e)) => live.say(&format!("demo: media did not run: {e}")),
                (None, None) => {}
            },
            Event::Ended {
                status,
                reason,
                outcome,
                ..
            } => {
                live.finish();
                println!(
                    "demo: call ended: {} {reason} ({})",
                    super::events::status_text(*status),
                    outcome_name(*outcome)
                );
                println!("demo: what alice heard is in {}", args.record.display());
                let rows = report::table(alice_report.as_deref());
                match report::write(&report_path, "wakeline demo: alice's side", &samples, &rows) {
                    Ok(()) => println!(
                        "demo: quality report (jitter, loss, concealment, levels) in {}",
                        report_path.display()
                    ),
                    Err(e) => println!("demo: no quality report: {e}"),
                }
                break *outcome;
            }
            _ => {}
        }
    };
    alice.shutdown().await?;
    bob.shutdown().await?;
    bob_task.abort();
    if outcome == CallOutcome::Answered {
        println!("demo: OK — the call was answered and hung up cleanly");
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Fail::usage("demo: the call was not answered"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wakeline::{CallHandle, CallOutcome, MediaReport};

    fn report(n: u64) -> Event {
        Event::MediaReport {
            call: CallHandle::testing(n),
            call_id: format!("c{n}"),
            report: Box::new(MediaReport {
                stats: None,
                capture: Default::default(),
                playback: Default::default(),
                duration: Duration::from_secs(1),
                error: None,
                srtp: None,
            }),
        }
    }

    fn ended(n: u64) -> Event {
        Event::Ended {
            call: CallHandle::testing(n),
            call_id: format!("c{n}"),
            status: Some(200),
            reason: "BYE".into(),
            outcome: CallOutcome::Answered,
        }
    }

    #[test]
    fn nothing_of_an_ended_call_stays_whether_or_not_a_report_was_asked_for() {
        let mut without = ReportInputs::new(false);
        let mut with = ReportInputs::new(true);
        for n in 1..=100 {
            assert!(without.note(&report(n)).is_none());
            assert!(with.note(&report(n)).is_none());
        }
        assert_eq!(without.held(), 0, "without --report nothing is kept");
        assert_eq!(with.held(), 100);
        for n in 1..=100 {
            let (call_id, _, media) = with.note(&ended(n)).unwrap();
            assert_eq!(call_id, format!("c{n}"));
            assert!(media.is_some(), "the report goes to the call's drawing");
            assert!(without.note(&ended(n)).is_none());
        }
        assert_eq!(with.held(), 0, "an ended call leaves nothing behind");
    }
}

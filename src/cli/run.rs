//! The commands: listen, call, register, demo.

use super::args::{
    AccountArgs, CallArgs, ConfigArgs, DemoArgs, ListenArgs, MediaArgs, RegisterArgs,
};
use super::config::TransportSection;
use super::events::{outcome_name, state_name, EventLog};
use super::media;
use super::pcap::PcapWriter;
use super::report::{self, Sample};
use super::status::{self, KeyAction, Live};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use wakeline::driver::MediaOptions;
use wakeline::media::audio::{AudioSink, AudioSource};
use wakeline::signaling::message::{Host, Uri};
use wakeline::{Account, AnswerPolicy, CallOutcome, Config, Event, UserAgent};

/// A failure that ends the program with one line on stderr.
#[derive(Debug)]
pub struct Fail(pub String);

impl<E: std::fmt::Display> From<E> for Fail {
    fn from(e: E) -> Self {
        Fail(e.to_string())
    }
}

fn account(args: &AccountArgs) -> Result<Option<Account>, Fail> {
    let Some(registrar) = &args.registrar else {
        if args.user.is_some() || args.password.is_some() || args.proxy.is_some() {
            return Err(Fail("--user/--password/--proxy need --registrar".into()));
        }
        return Ok(None);
    };
    let registrar = Uri::parse(registrar).map_err(|e| Fail(format!("--registrar: {e}")))?;
    let user = args
        .user
        .clone()
        .ok_or_else(|| Fail("--registrar needs --user".into()))?;
    let domain = match &args.domain {
        Some(d) => d.clone(),
        None => match &registrar.host {
            Host::Domain(d) => d.clone(),
            other => other.to_string(),
        },
    };
    let proxy = match &args.proxy {
        Some(p) => Some(Uri::parse(p).map_err(|e| Fail(format!("--proxy: {e}")))?),
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
fn dns_servers(acct: &AccountArgs) -> Vec<std::net::SocketAddr> {
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
            .map_err(|e| Fail(format!("--pcap {}: {e}", p.display()))),
        None => Ok(None),
    }
}

fn write_report(path: &std::path::Path, title: &str, samples: &[Sample]) {
    match report::write(path, title, samples) {
        Ok(()) => tracing::info!("quality report: {}", path.display()),
        Err(e) => tracing::warn!("--report: {e}"),
    }
}

fn config(acct: &AccountArgs) -> Result<Config, Fail> {
    let account = account(acct)?;
    let mut config = Config::default();
    if let Some(t) = TRANSPORT.get() {
        super::config::apply_transport(&mut config, t);
    }
    if let Some(t) = &acct.transport {
        config.default_transport = t.parse().map_err(|e| Fail(format!("--transport: {e}")))?;
    }
    if let Some(a) = &account {
        config.local_user = a.user.clone();
        for (flag, uri) in [
            ("--registrar", Some(&a.registrar)),
            ("--proxy", a.proxy.as_ref()),
        ] {
            if let Some(uri) = uri {
                wakeline::Transport::for_uri(uri, config.default_transport)
                    .map_err(|e| Fail(format!("{flag} {uri}: {e}")))?;
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

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn log_event(ev: &Event) {
    match ev {
        Event::Incoming { call_id, from, .. } => {
            tracing::info!("incoming call {call_id} from {from}")
        }
        Event::State { call_id, state, .. } => {
            tracing::info!("call {call_id}: {}", state_name(*state))
        }
        Event::Ended {
            call_id,
            status,
            reason,
            outcome,
            ..
        } => tracing::info!(
            "call {call_id} ended: {status} {reason} ({})",
            outcome_name(*outcome)
        ),
        Event::Registered { expires } => tracing::info!("registered for {expires} s"),
        Event::RegistrationFailed { status, reason } => {
            tracing::warn!("registration failed: {status} {reason}")
        }
        other => tracing::debug!("{other:?}"),
    }
}

/// `wakeline listen`
pub async fn listen(args: ListenArgs) -> Result<ExitCode, Fail> {
    if args.media.list_devices {
        media::list_devices()?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut config = config(&args.account)?;
    config.codecs = media::codecs(&args.media.codecs)?;
    config.srtp = super::srtp::policy(&args.media, super::srtp::account_is_tls(&args.account))?;
    let media_options = media::options(&args.media)?;
    let has_account = config.account.is_some();
    let mut builder = UserAgent::builder(config)
        .listen(args.bind)
        .listener_limits(super::config::listener_limits(TRANSPORT.get()))
        .media(media_options)
        .dns_servers(dns_servers(&args.account));
    if let Some(ip) = args.media.media_ip {
        builder = builder.media_ip(ip);
    }
    if let Some(p) = pcap_writer(&args.media)? {
        builder = builder.tap(p);
    }
    let (ua, mut events) = builder.start().await?;
    let mut log = EventLog::open(args.common.events.as_deref())?;
    if has_account {
        ua.register().await?;
    }
    tracing::info!("listening on {}", args.bind);
    let policy = match args.answer.0 {
        AnswerPolicy::Ring(_) => {
            AnswerPolicy::Ring(Duration::from_secs_f64(args.answer_after.max(0.0)))
        }
        p => p,
    };
    let mut ended = 0u64;
    let mut summaries = media::Summaries::new(args.media.summary.clone());
    let mut live = Live::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut samples: HashMap<wakeline::CallHandle, Vec<Sample>> = HashMap::new();
    let mut reports = 0u64;
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            ev = events.next() => {
                let Some(ev) = ev else { return Err(Fail("user agent stopped".into())) };
                log_event(&ev);
                log.write(&ev);
                live.on_event(&ev);
                note_samples(&mut samples, &ev);
                if let (Some(path), Event::Ended { call, call_id, .. }) = (&args.media.report, &ev) {
                    reports += 1;
                    let s = samples.remove(call).unwrap_or_default();
                    write_report(&report::numbered(path, reports), &format!("wakeline call {call_id}"), &s);
                }
                match &ev {
                    Event::Incoming { call, .. } => {
                        let call = ua.call_handle(*call);
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
                    Event::Ended { .. } => {
                        summaries.note(&ev);
                        ended += 1;
                        if args.max_calls.is_some_and(|n| ended >= n) {
                            break;
                        }
                    }
                    _ => summaries.note(&ev),
                }
            }
            _ = tick.tick(), if live.is_tty() => live.tick(),
            k = live.key() => match (k, live.call) {
                (KeyAction::Interrupt, _) => break,
                (k, Some(h)) => {
                    let call = ua.call_handle(h);
                    status::act(&call, k, &mut live.view).await;
                }
                (_, None) => {}
            },
            _ = &mut stop => break,
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
    Ok(ExitCode::SUCCESS)
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
        return Err(Fail("call needs a URI".into()));
    };
    let mut config = config(&args.account)?;
    config.codecs = media::codecs(&args.media.codecs)?;
    let tls = super::srtp::uri_is_tls(&uri) || super::srtp::account_is_tls(&args.account);
    config.srtp = super::srtp::policy(&args.media, tls)?;
    let media_options = media::options(&args.media)?;
    let has_account = config.account.is_some();
    let mut builder = UserAgent::builder(config)
        .media(media_options)
        .dns_servers(dns_servers(&args.account));
    if let Some(ip) = args.media.media_ip {
        builder = builder.media_ip(ip);
    }
    if let Some(bind) = args.bind {
        builder = builder
            .listen(bind)
            .listener_limits(super::config::listener_limits(TRANSPORT.get()));
    }
    if let Some(p) = pcap_writer(&args.media)? {
        builder = builder.tap(p);
    }
    let (ua, mut events) = builder.start().await?;
    let mut log = EventLog::open(args.common.events.as_deref())?;
    if has_account {
        ua.register().await?;
        wait_registered(&mut events, &mut log).await?;
    }
    let call = ua.call(&uri).await?;
    let mut report = None;
    let duration = Duration::from_secs_f64(args.duration.max(0.0));
    let stop = stop_signal();
    tokio::pin!(stop);
    let hangup_at = tokio::time::sleep(Duration::from_secs(86_400 * 365));
    tokio::pin!(hangup_at);
    let mut stopped = false;
    let mut live = Live::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut samples: HashMap<wakeline::CallHandle, Vec<Sample>> = HashMap::new();
    let result = loop {
        tokio::select! {
            ev = events.next() => {
                let Some(ev) = ev else { break Err(Fail("user agent stopped".into())) };
                log_event(&ev);
                log.write(&ev);
                live.on_event(&ev);
                note_samples(&mut samples, &ev);
                match ev {
                    Event::State { call: c, state: wakeline::CallState::Connected, .. } if c == call.handle() => {
                        hangup_at.as_mut().reset(tokio::time::Instant::now() + duration);
                        if let Some(digits) = args.dtmf.clone() {
                            let c = call.clone();
                            tokio::spawn(async move {
                                // Let media start and the far end's jitter buffer settle first.
                                tokio::time::sleep(Duration::from_millis(500)).await;
                                if let Err(e) = c.send_dtmf(&digits).await {
                                    tracing::warn!("--dtmf: {e}");
                                }
                            });
                        }
                    }
                    Event::MediaReport { call: c, report: r, .. } if c == call.handle() => {
                        report = Some(r);
                    }
                    Event::Ended { call: c, call_id, status, reason, outcome, .. } if c == call.handle() => {
                        if let Some(path) = &args.media.report {
                            let s = samples.remove(&c).unwrap_or_default();
                            write_report(path, &format!("wakeline call {call_id}"), &s);
                        }
                        if let Some(path) = &args.media.summary {
                            let v = media::summary(status, &reason, outcome_name(outcome), report.as_deref());
                            media::write_summary(path, &v, false);
                        }
                        break if outcome == CallOutcome::Answered {
                            Ok(())
                        } else {
                            Err(Fail(format!("call failed: {status} {reason}")))
                        };
                    }
                    _ => {}
                }
            }
            _ = &mut hangup_at => {
                call.hangup().await?;
                hangup_at.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(86_400 * 365));
            }
            _ = &mut stop, if !stopped => {
                stopped = true;
                call.hangup().await?;
            }
            _ = tick.tick(), if live.is_tty() => live.tick(),
            k = live.key() => match k {
                KeyAction::Interrupt if !stopped => {
                    stopped = true;
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

async fn wait_registered(
    events: &mut wakeline::driver::Events,
    log: &mut EventLog,
) -> Result<(), Fail> {
    let deadline = tokio::time::sleep(Duration::from_secs(40));
    tokio::pin!(deadline);
    // The last retryable failure, to say why at the deadline.
    let mut last = String::new();
    loop {
        tokio::select! {
            ev = events.next() => {
                let Some(ev) = ev else { return Err(Fail("user agent stopped".into())) };
                log_event(&ev);
                log.write(&ev);
                match ev {
                    Event::Registered { .. } => return Ok(()),
                    Event::RegistrationFailed { status, reason } if (400..700).contains(&status) && status != 408 => {
                        return Err(Fail(format!("registration failed: {status} {reason}")));
                    }
                    Event::RegistrationFailed { reason, .. } => last = format!("; last error: {reason}"),
                    _ => {}
                }
            }
            _ = &mut deadline => return Err(Fail(format!("registration failed: timeout{last}"))),
        }
    }
}

/// `wakeline register`
pub async fn register(args: RegisterArgs) -> Result<ExitCode, Fail> {
    let config = config(&args.account)?;
    if config.account.is_none() {
        return Err(Fail("register needs --registrar and --user".into()));
    }
    let (ua, mut events) = UserAgent::builder(config)
        .dns_servers(dns_servers(&args.account))
        .start()
        .await?;
    let mut log = EventLog::open(args.common.events.as_deref())?;
    ua.register().await?;
    let registered = wait_registered(&mut events, &mut log).await;
    if registered.is_ok() {
        let stay = args
            .for_secs
            .map(|s| Duration::from_secs_f64(s.max(0.0)))
            .unwrap_or(Duration::from_secs(u64::from(u32::MAX)));
        let until = tokio::time::sleep(stay);
        tokio::pin!(until);
        let stop = stop_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                ev = events.next() => {
                    let Some(ev) = ev else { break };
                    log_event(&ev);
                    log.write(&ev);
                }
                _ = &mut until => break,
                _ = &mut stop => break,
            }
        }
    }
    ua.shutdown().await?;
    drain(&mut events, &mut log);
    registered.map(|()| ExitCode::SUCCESS)
}

/// `wakeline demo`: two user agents in this process, a real call over TCP on 127.0.0.1.
pub async fn demo(args: DemoArgs) -> Result<ExitCode, Fail> {
    let mut log = EventLog::open(args.common.events.as_deref())?;
    let speaker = match &args.speaker {
        Some(s) => {
            let sink: AudioSink = s.parse().map_err(|e| Fail(format!("--speaker: {e}")))?;
            media::probe_sink(&sink).map_err(|e| Fail(format!("--speaker {s}: {e}")))?;
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
        .map_err(|e| Fail(format!("demo: cannot write the chime: {e}")))?;
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
    .listen("127.0.0.1:0".parse().map_err(|e| Fail(format!("{e}")))?)
    .start()
    .await?;
    let bob_addr = bob
        .local_addr()
        .ok_or_else(|| Fail("demo: callee has no listener".into()))?;
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
            return Err(Fail("demo: user agent stopped".into()));
        };
        log.write(&ev);
        live.on_event(&ev);
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
                     concealed {:.0} ms, estimated MOS {:.2}",
                    s.codec, s.rtp_sent, s.rtp_received, s.lost, s.jitter_ms, s.concealed_ms, s.mos
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
                    "demo: call ended: {status} {reason} ({})",
                    outcome_name(*outcome)
                );
                println!("demo: what alice heard is in {}", args.record.display());
                match report::write(&report_path, "wakeline demo: alice's side", &samples) {
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
        Err(Fail("demo: the call was not answered".into()))
    }
}

//! `wakeline load`: one user agent places N calls at R calls/s, at most C up at once, each
//! with real media (Opus/PCMU as negotiated), held S seconds then hung up; every call is
//! judged (answered? audio each way?) and the run is summed up (`stats.rs`), live on stderr
//! (`live.rs`) and in a table at the end (`table.rs`).

mod args;
mod judge;
mod live;
mod stats;
mod table;

pub use args::{LoadArgs, LOAD_HELP};

use super::args::MediaArgs;
use super::exit::{Exit, Fail};
use judge::{PeerLine, Rules, Seen};
use stats::{CallResult, Summary};
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;
use tokio::time::Instant;
use wakeline::media::audio::AudioSource;
use wakeline::{CallHandle, CallOutcome, CallState, Event, UserAgent};

/// How long a call may take to end once we hung up (Timer B/F are 32 s).
const END_WAIT: Duration = Duration::from_secs(40);
/// How long the answering side gets to write its `--peer-summary` lines after our last call.
const PEER_WAIT: Duration = Duration::from_secs(5);
/// How often the per-call deadlines are checked.
const CHECK_EVERY: Duration = Duration::from_millis(20);

/// One call while it runs.
struct Running {
    call_id: String,
    invited: Instant,
    ringing: Option<Duration>,
    connected: Option<Instant>,
    /// When we sent BYE or CANCEL.
    hung_up: Option<Instant>,
    gave_up: bool,
    seen: Seen,
    stats: Option<wakeline::media::pipeline::CallStats>,
}

impl Running {
    fn new(invited: Instant) -> Self {
        Running {
            call_id: String::new(),
            invited,
            ringing: None,
            connected: None,
            hung_up: None,
            gave_up: false,
            seen: Seen::default(),
            stats: None,
        }
    }

    fn note_stats(&mut self, s: &wakeline::media::pipeline::CallStats) {
        self.seen.rtp_sent = s.rtp_sent;
        self.seen.rtp_received = s.rtp_received;
        self.seen.tone = s.tone;
        self.seen.rtcp_about_us |= s.remote_reports > 0;
        self.stats = Some(*s);
    }

    /// The result, but for `audio_sent` (decided once the peer's summary is read).
    fn finish(
        self,
        status: Option<u16>,
        reason: &str,
        outcome: CallOutcome,
    ) -> (String, Seen, CallResult) {
        let answered = outcome == CallOutcome::Answered;
        let failure = (!answered).then(|| match status {
            _ if self.gave_up => "setup timeout".to_string(),
            None => reason.to_string(),
            Some(s) if (200..300).contains(&s) => format!("{s} then {reason}"),
            Some(s) => s.to_string(),
        });
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let s = self.stats.filter(|_| answered);
        let result = CallResult {
            answered,
            failure,
            ringing_ms: self.ringing.map(ms),
            setup_ms: self.connected.map(|c| ms(c - self.invited)),
            loss_percent: s.map(|s| super::status::loss_percent(s.rtp_received, s.lost)),
            jitter_ms: s.map(|s| s.jitter_ms),
            mos: s.and_then(|s| s.mos),
            audio_received: answered && judge::received(&self.seen),
            audio_sent: None,
        };
        (self.call_id, self.seen, result)
    }
}

/// The tone the far end is expected to play: `--expect-tone`, else our `--mic tone:HZ`.
fn expected_tone(args: &LoadArgs, source: &AudioSource) -> Option<f32> {
    match (args.expect_tone, source) {
        (Some(hz), _) if hz > 0.0 => Some(hz),
        (Some(_), _) => None,
        (None, AudioSource::Tone(hz)) => Some(*hz),
        (None, _) => None,
    }
}

fn check(args: &LoadArgs) -> Result<(), Fail> {
    super::check::uri("load", &args.uri)?;
    if !(args.rate.is_finite() && args.rate > 0.0) {
        return Err(Fail::usage("--rate must be above 0"));
    }
    if args.calls == 0 || args.concurrent == 0 {
        return Err(Fail::usage("--calls and --concurrent must be at least 1"));
    }
    for (flag, v) in [
        ("--duration", args.duration),
        ("--setup-timeout", args.setup_timeout),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(Fail::usage(format!("{flag} must be 0 or more seconds")));
        }
    }
    for (flag, p) in [("--summary", &args.summary), ("--report", &args.report)] {
        if let Some(p) = p {
            super::check::writable(flag, p)?;
        }
    }
    Ok(())
}

/// The media flags of `load`, as `call` and `listen` take them.
fn media_args(args: &LoadArgs) -> MediaArgs {
    MediaArgs {
        mic: Some(args.mic.clone()),
        speaker: Some(args.speaker.clone()),
        codecs: args.codecs.clone(),
        encoder: args.encoder.clone(),
        media_ip: args.media_ip,
        ..MediaArgs::default()
    }
}

/// `wakeline load`
pub async fn run(args: LoadArgs) -> Result<ExitCode, Fail> {
    check(&args)?;
    raise_fd_limit();
    let media_args = media_args(&args);
    let mut config = super::run::config(&args.account)?;
    config.codecs = super::media::codecs(&args.codecs)?;
    let tls = super::srtp::uri_is_tls(&args.uri) || super::srtp::account_is_tls(&args.account);
    (config.srtp, config.srtp_tls) =
        super::srtp::policies(&media_args, tls).map(|(plain, tls)| (plain, Some(tls)))?;
    let mut media_options = super::media::options(&media_args)?;
    media_options.expect_tone = expected_tone(&args, &media_options.source);
    if args.echo && media_options.expect_tone.is_none() {
        return Err(Fail::usage(
            "--echo needs --mic tone:HZ (the tone that comes back)",
        ));
    }
    let has_account = config.account.is_some();
    let mut builder = UserAgent::builder(config)
        .media(media_options)
        .dns_servers(super::run::dns_servers(&args.account));
    builder = super::tls::apply(builder, &args.account.tls, None)?;
    if let Some(ip) = args.media_ip {
        builder = builder.media_ip(ip);
    }
    let (ua, mut events) = builder
        .start()
        .await
        .map_err(|e| Fail::from(e).context("load"))?;
    let mut log = super::run::event_log(&args.common)?;
    if has_account {
        ua.register().await?;
        if let Err(f) =
            super::run::wait_registered_for_call(&args.account, &mut events, &mut log).await
        {
            ua.shutdown().await?;
            return Err(f.context("load"));
        }
    }
    let mut run = Run::new(&args);
    let stopped = run.drive(&ua, &mut events, &mut log, &args).await;
    ua.shutdown().await?;
    while let Some(ev) = events.try_next() {
        log.write(&ev);
    }
    let summary = run.summary(&args).await;
    print!("{}", table::render(&summary, &args));
    if let Some(path) = &args.summary {
        super::media::write_summary(path, &summary.json(), false);
    }
    if let Some(path) = &args.report {
        match table::histogram(path, &run.setup_times()) {
            Ok(()) => tracing::info!("set-up time histogram: {}", path.display()),
            Err(e) => tracing::warn!("--report: {e}"),
        }
    }
    if let Some(why) = stopped {
        return Err(Fail::new(why, "load interrupted"));
    }
    match summary.failure_line() {
        Some(line) => Err(Fail::new(Exit::Sip, line)),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// The state of a run.
struct Run {
    started: Instant,
    running: HashMap<CallHandle, Running>,
    /// Calls that ended: Call-ID, what we saw, the result.
    done: Vec<(String, Seen, CallResult)>,
    attempted: usize,
    max_up: usize,
    duration: Duration,
    setup_timeout: Duration,
    live: live::Line,
}

impl Run {
    fn new(args: &LoadArgs) -> Self {
        Run {
            started: Instant::now(),
            running: HashMap::new(),
            done: Vec::new(),
            attempted: 0,
            max_up: 0,
            duration: Duration::from_secs_f64(args.duration),
            setup_timeout: Duration::from_secs_f64(args.setup_timeout),
            live: live::Line::default(),
        }
    }

    /// Places the calls and follows them until every one ended; `Some` when interrupted.
    async fn drive(
        &mut self,
        ua: &UserAgent,
        events: &mut wakeline::driver::Events,
        log: &mut super::events::EventLog,
        args: &LoadArgs,
    ) -> Option<Exit> {
        let mut place = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
        place.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut checks = tokio::time::interval(CHECK_EVERY);
        let mut live_tick = tokio::time::interval(Duration::from_secs(1));
        live_tick.tick().await;
        let stop = super::run::stop_signal();
        tokio::pin!(stop);
        let mut stopped = None;
        loop {
            let placing = stopped.is_none() && self.attempted < args.calls;
            if !placing && self.running.is_empty() {
                break;
            }
            tokio::select! {
                _ = place.tick(), if placing && self.running.len() < args.concurrent => {
                    self.place(ua, &args.uri).await;
                }
                ev = events.next() => {
                    let Some(ev) = ev else { break };
                    log.write(&ev);
                    self.on_event(ev);
                }
                _ = checks.tick() => self.check_deadlines(ua),
                _ = live_tick.tick() => self.live.print(self.started.elapsed(), &self.running_view(args)),
                why = &mut stop, if stopped.is_none() => {
                    tracing::info!("load: interrupted, hanging up {} calls", self.running.len());
                    stopped = Some(why);
                    let now = Instant::now();
                    for (h, r) in self.running.iter_mut().filter(|(_, r)| r.hung_up.is_none()) {
                        r.hung_up = Some(now);
                        hang_up(ua, *h);
                    }
                }
            }
        }
        stopped
    }

    async fn place(&mut self, ua: &UserAgent, uri: &str) {
        self.attempted += 1;
        let invited = Instant::now();
        match ua.call(uri).await {
            Ok(call) => {
                self.running.insert(call.handle(), Running::new(invited));
                self.max_up = self.max_up.max(self.running.len());
            }
            Err(e) => {
                tracing::debug!("load: call {}: {e}", self.attempted);
                self.done.push((
                    String::new(),
                    Seen::default(),
                    CallResult {
                        failure: Some(e.to_string()),
                        ..CallResult::default()
                    },
                ));
            }
        }
    }

    fn on_event(&mut self, ev: Event) {
        let now = Instant::now();
        match ev {
            Event::State {
                call,
                call_id,
                state,
            } => {
                let Some(r) = self.running.get_mut(&call) else {
                    return;
                };
                r.call_id = call_id;
                match state {
                    CallState::Ringing if r.ringing.is_none() => r.ringing = Some(now - r.invited),
                    CallState::Connected if r.connected.is_none() => r.connected = Some(now),
                    _ => {}
                }
            }
            Event::MediaStats { call, snapshot, .. } => {
                if let Some(r) = self.running.get_mut(&call) {
                    r.seen.max_level = r.seen.max_level.max(snapshot.output_level);
                    r.note_stats(&snapshot.stats);
                }
            }
            Event::MediaReport { call, report, .. } => {
                if let (Some(r), Some(s)) = (self.running.get_mut(&call), &report.stats) {
                    r.note_stats(s);
                }
            }
            Event::Ended {
                call,
                call_id,
                status,
                reason,
                outcome,
            } => {
                if let Some(mut r) = self.running.remove(&call) {
                    r.call_id = call_id;
                    let done = r.finish(status, &reason, outcome);
                    self.live.ended(&done.2);
                    self.done.push(done);
                }
            }
            _ => {}
        }
    }

    /// Hangs up calls held long enough, gives up on calls not answered in time, and counts
    /// calls that never ended as failed.
    fn check_deadlines(&mut self, ua: &UserAgent) {
        let now = Instant::now();
        let mut lost = Vec::new();
        for (h, r) in &mut self.running {
            match (r.connected, r.hung_up) {
                (_, Some(at)) if now - at > END_WAIT => lost.push(*h),
                (Some(c), None) if now - c >= self.duration => {
                    r.hung_up = Some(now);
                    hang_up(ua, *h);
                }
                (None, None) if now - r.invited >= self.setup_timeout => {
                    r.hung_up = Some(now);
                    r.gave_up = true;
                    hang_up(ua, *h);
                }
                _ => {}
            }
        }
        for h in lost {
            if let Some(r) = self.running.remove(&h) {
                let done = r.finish(None, "no end after hang-up", CallOutcome::Failed);
                self.live.ended(&done.2);
                self.done.push(done);
            }
        }
    }

    fn running_view(&self, args: &LoadArgs) -> live::View {
        live::View {
            up: self
                .running
                .values()
                .filter(|r| r.connected.is_some())
                .count(),
            attempted: self.attempted,
            calls: args.calls,
            setup_ms: self
                .done
                .iter()
                .filter_map(|d| d.2.setup_ms)
                .chain(
                    self.running.values().filter_map(|r| {
                        r.connected.map(|c| (c - r.invited).as_secs_f64() * 1000.0)
                    }),
                )
                .collect(),
            mos: self
                .done
                .iter()
                .filter_map(|d| d.2.mos)
                .chain(
                    self.running
                        .values()
                        .filter_map(|r| r.stats.and_then(|s| s.mos)),
                )
                .collect(),
        }
    }

    fn setup_times(&self) -> Vec<f64> {
        self.done.iter().filter_map(|d| d.2.setup_ms).collect()
    }

    /// Decides `audio_sent` for every call (reading the peer's summary when given) and sums up.
    async fn summary(&mut self, args: &LoadArgs) -> Summary {
        let peer = match &args.peer_summary {
            Some(path) => self.peer_lines(path).await,
            None => HashMap::new(),
        };
        let rules = Rules { echo: args.echo };
        for (id, seen, result) in &mut self.done {
            if result.answered {
                result.audio_sent = judge::sent(seen, rules, peer.get(id.as_str()));
            }
        }
        let results: Vec<CallResult> = self.done.iter().map(|d| d.2.clone()).collect();
        let mut s = Summary::of(&results);
        s.max_up = self.max_up;
        s.elapsed_s = self.started.elapsed().as_secs_f64();
        s
    }

    /// The peer's summary lines, waiting (bounded) until every answered call has one.
    async fn peer_lines(&self, path: &std::path::Path) -> HashMap<String, PeerLine> {
        let until = Instant::now() + PEER_WAIT;
        loop {
            let lines = judge::read_peer_summary(path);
            let all = self
                .done
                .iter()
                .filter(|d| d.2.answered)
                .all(|d| lines.contains_key(&d.0));
            if all || Instant::now() >= until {
                if !all {
                    tracing::warn!(
                        "--peer-summary {}: some calls have no line after {} s",
                        path.display(),
                        PEER_WAIT.as_secs()
                    );
                }
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn hang_up(ua: &UserAgent, h: CallHandle) {
    let call = ua.call_handle(h);
    tokio::spawn(async move {
        if let Err(e) = call.hangup().await {
            tracing::debug!("load: hang-up: {e}");
        }
    });
}

/// Many calls need many sockets (two per call, and the listener's): raise the soft limit on
/// open files to the hard one. Best effort; says what it did at debug level.
pub fn raise_fd_limit() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let mut l = getrlimit(Resource::Nofile);
        if l.current < l.maximum {
            let was = l.current;
            l.current = l.maximum;
            match setrlimit(Resource::Nofile, l) {
                Ok(()) => tracing::debug!("open-files limit: {was:?} -> {:?}", l.maximum),
                Err(e) => tracing::debug!("open-files limit stays {was:?}: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> LoadArgs {
        let mut argv = vec!["wakeline", "load", "sip:x@127.0.0.1:5070;transport=tcp"];
        argv.extend_from_slice(extra);
        match crate::cli::args::Cli::try_parse_from(argv).unwrap().cmd {
            crate::cli::args::Cmd::Load(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn opus_complexity_reaches_the_encoder_settings() {
        let set = media_args(&args(&["--opus-complexity", "3"]))
            .encoder
            .config();
        assert_eq!(set.complexity, 3);
        let unset = media_args(&args(&[])).encoder.config();
        assert_eq!(unset, wakeline::media::codec::EncoderConfig::default());
        let listen = ["wakeline", "listen", "--opus-complexity", "10"];
        match crate::cli::args::Cli::try_parse_from(listen).unwrap().cmd {
            crate::cli::args::Cmd::Listen(a) => assert_eq!(a.media.encoder.config().complexity, 10),
            other => panic!("{other:?}"),
        }
        let too_high = ["wakeline", "listen", "--opus-complexity", "11"];
        assert!(crate::cli::args::Cli::try_parse_from(too_high).is_err());
    }

    #[test]
    fn opus_signal_reaches_the_encoder_settings() {
        use wakeline::media::codec::OpusSignal;
        let set = |flag: &str| media_args(&args(&["--opus-signal", flag])).encoder.config();
        assert_eq!(set("voice").signal, OpusSignal::Voice);
        assert_eq!(set("music").signal, OpusSignal::Music);
        assert_eq!(set("auto").signal, OpusSignal::Auto);
        let listen = ["wakeline", "listen", "--opus-signal", "speech"];
        assert!(crate::cli::args::Cli::try_parse_from(listen).is_err());
    }

    #[test]
    fn the_expected_tone_is_ours_unless_told() {
        let a = args(&[]);
        assert_eq!(expected_tone(&a, &AudioSource::Tone(440.0)), Some(440.0));
        assert_eq!(expected_tone(&a, &AudioSource::Silence), None);
        let a = args(&["--expect-tone", "660"]);
        assert_eq!(expected_tone(&a, &AudioSource::Tone(440.0)), Some(660.0));
        let a = args(&["--expect-tone", "0"]);
        assert_eq!(expected_tone(&a, &AudioSource::Tone(440.0)), None);
    }

    #[test]
    fn bad_numbers_are_usage_errors() {
        for bad in [
            &["--rate", "0"][..],
            &["--calls", "0"],
            &["--concurrent", "0"],
            &["--duration=-1"],
            &["--setup-timeout", "NaN"],
        ] {
            let e = check(&args(bad)).unwrap_err();
            assert_eq!(e.exit, Exit::Usage, "{bad:?}: {}", e.msg);
        }
        assert!(check(&args(&[])).is_ok());
    }

    #[test]
    fn a_call_ends_with_its_code_or_its_cause() {
        let t0 = Instant::now();
        let mut r = Running::new(t0);
        r.connected = Some(t0 + Duration::from_millis(12));
        let (_, _, ok) = r.finish(Some(200), "BYE", CallOutcome::Answered);
        assert!(ok.answered && ok.failure.is_none());
        assert!(
            ok.setup_ms.is_some_and(|ms| (ms - 12.0).abs() < 1e-6),
            "{ok:?}"
        );
        let (_, _, busy) = Running::new(t0).finish(Some(486), "Busy Here", CallOutcome::Busy);
        assert_eq!(busy.failure.as_deref(), Some("486"));
        let (_, _, down) = Running::new(t0).finish(None, "connect: refused", CallOutcome::Failed);
        assert_eq!(down.failure.as_deref(), Some("connect: refused"));
        let mut late = Running::new(t0);
        late.gave_up = true;
        let (_, _, late) = late.finish(Some(487), "Request Terminated", CallOutcome::Cancelled);
        assert_eq!(late.failure.as_deref(), Some("setup timeout"));
    }
}

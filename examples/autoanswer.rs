//! An auto-answer bot: accepts direct SIP over TCP, answers every call, plays a tone (or a WAV
//! file), records what the caller sends to `call-<n>.wav`, hangs up after a few seconds and
//! prints each call's media report.
//!
//! ```text
//! cargo run --example autoanswer -- [--listen ADDR] [--seconds N] [--calls N] [--dir DIR] [FILE.wav]
//! # in another terminal:
//! cargo run -- call 'sip:bot@127.0.0.1:5090;transport=tcp' --mic tone:1000 --speaker null
//! ```
//!
//! Defaults: listen on `127.0.0.1:5090`, hang up 5 s after answering, serve until Ctrl-C,
//! write recordings to the current directory, play a 440 Hz tone.
//!
//! One call at a time: while a call is up, a second INVITE gets 486 Busy Here from the core's
//! default [`BusyPolicy`](wakeline::BusyPolicy). The media options (and so the recording path)
//! belong to the user agent, not to one call, so the bot records into one working file and
//! renames it to `call-<n>.wav` when the call's `MediaReport` says media has stopped.
//!
//! The bot's logic is [`serve`], a plain async function, so `tests/examples_run.rs` can run
//! it against the `wakeline` binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use wakeline::driver::MediaOptions;
use wakeline::media::audio::{self, AudioConfig, AudioSink, AudioSource};
use wakeline::media::MediaReport;
use wakeline::{Call, CallHandle, CallOutcome, CallState, Config, Error, Event, UserAgent};

/// What the bot does.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to accept SIP over TCP (port 0: any free port).
    pub listen: SocketAddr,
    /// Hang up this long after answering.
    pub hangup_after: Duration,
    /// Stop after this many calls have ended (`None`: serve until Ctrl-C).
    pub max_calls: Option<u64>,
    /// Where `call-<n>.wav` files go.
    pub dir: PathBuf,
    /// What callers hear.
    pub source: AudioSource,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 5090)),
            hangup_after: Duration::from_secs(5),
            max_calls: None,
            dir: PathBuf::from("."),
            source: AudioSource::Tone(440.0),
        }
    }
}

/// What happened to one call.
#[derive(Debug, Clone)]
pub struct CallSummary {
    /// 1 for the first call, 2 for the next, ...
    pub n: u64,
    /// The SIP Call-ID.
    pub call_id: String,
    /// How it ended.
    pub outcome: CallOutcome,
    /// The final status of the INVITE.
    pub status: Option<u16>,
    /// The caller's audio, if media ran.
    pub recording: Option<PathBuf>,
    /// The media report, if media ran.
    pub report: Option<MediaReport>,
}

/// The call being served.
struct Current {
    call: Call,
    n: u64,
    hangup_at: Option<tokio::time::Instant>,
    report: Option<MediaReport>,
    recording: Option<PathBuf>,
}

/// Runs the bot until `max_calls` calls have ended or Ctrl-C. `on_ready` gets the bound
/// address once the listener is up (useful with port 0). Returns one summary per call.
pub async fn serve(
    options: Options,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<Vec<CallSummary>, Error> {
    std::fs::create_dir_all(&options.dir)?;
    // Open the source once now, so a missing WAV file is an error here and not in every call.
    audio::start(&options.source, &AudioSink::Null, &AudioConfig::default())
        .map_err(|e| Error::Config(format!("audio source: {e}")))?;
    let working = options.dir.join("call-recording.part.wav");
    let media = MediaOptions {
        source: options.source.clone(),
        // The bot has no speaker; what the caller sends is recorded instead.
        sink: AudioSink::Null,
        record: Some(working.clone()),
        ..MediaOptions::default()
    };
    let config = Config {
        local_user: "bot".into(),
        ..Config::default()
    };
    let (ua, mut events) = UserAgent::builder(config)
        .listen(options.listen)
        .media(media)
        .start()
        .await?;
    let addr = ua.local_addr().unwrap_or(options.listen);
    println!("autoanswer: listening on sip:bot@{addr};transport=tcp");
    on_ready(addr);

    let mut summaries = Vec::new();
    let mut current: Option<Current> = None;
    let mut next_n = 1;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let hangup_at = current.as_ref().and_then(|c| c.hangup_at);
        tokio::select! {
            ev = events.next() => {
                let Some(ev) = ev else { return Err(Error::Stopped) };
                if let Some(summary) = on_event(&ua, ev, &mut current, &mut next_n, &options, &working).await {
                    summaries.push(summary);
                    if options.max_calls.is_some_and(|max| summaries.len() as u64 >= max) {
                        break;
                    }
                }
            }
            _ = sleep_until(hangup_at) => {
                if let Some(c) = current.as_mut() {
                    c.hangup_at = None;
                    println!("autoanswer: call {}: hanging up", c.n);
                    if let Err(e) = c.call.hangup().await {
                        // The caller may have hung up at the same moment.
                        println!("autoanswer: call {}: hangup: {e}", c.n);
                    }
                }
            }
            _ = &mut ctrl_c => {
                println!("autoanswer: stopping");
                break;
            }
        }
    }
    ua.shutdown().await?;
    Ok(summaries)
}

/// Handles one event; returns the summary of a call that ended.
async fn on_event(
    ua: &UserAgent,
    ev: Event,
    current: &mut Option<Current>,
    next_n: &mut u64,
    options: &Options,
    working: &std::path::Path,
) -> Option<CallSummary> {
    let is_current = |h: CallHandle| current.as_ref().is_some_and(|c| c.call.handle() == h);
    match ev {
        Event::Incoming {
            call, from, pushed, ..
        } => {
            if current.is_some() {
                // Only with `BusyPolicy::Allow`; the default policy already sent 486.
                if let Err(e) = ua.call_handle(call).reject(486).await {
                    println!("autoanswer: reject: {e}");
                }
                return None;
            }
            let n = *next_n;
            *next_n += 1;
            println!("autoanswer: call {n} from {from} (pushed: {pushed}): answering");
            let c = ua.call_handle(call);
            if let Err(e) = c.answer().await {
                println!("autoanswer: call {n}: answer: {e}");
            }
            *current = Some(Current {
                call: c,
                n,
                hangup_at: None,
                report: None,
                recording: None,
            });
        }
        Event::State { call, state, .. } if is_current(call) => {
            if let Some(c) = current.as_mut() {
                println!("autoanswer: call {}: {state:?}", c.n);
                if state == CallState::Connected && c.hangup_at.is_none() {
                    c.hangup_at = Some(tokio::time::Instant::now() + options.hangup_after);
                }
            }
        }
        Event::Media { call, media, .. } if is_current(call) => {
            println!(
                "autoanswer: media: {:?} with {} (rtcp-mux: {})",
                media.codec, media.remote_rtp, media.rtcp_mux
            );
        }
        Event::Dtmf { digit, .. } => println!("autoanswer: DTMF {digit}"),
        Event::MediaReport { call, report, .. } if is_current(call) => {
            if let Some(c) = current.as_mut() {
                print_report(c.n, &report);
                // The media task has finalised the WAV file before this event.
                let target = options.dir.join(format!("call-{}.wav", c.n));
                match std::fs::rename(working, &target) {
                    Ok(()) => c.recording = Some(target),
                    Err(e) => println!("autoanswer: call {}: no recording: {e}", c.n),
                }
                c.report = Some(*report);
            }
        }
        Event::Ended {
            call,
            call_id,
            status,
            reason,
            outcome,
        } if is_current(call) => {
            let c = current.take()?;
            println!(
                "autoanswer: call {} ended: {} {reason} ({outcome:?})",
                c.n,
                status_text(status)
            );
            return Some(CallSummary {
                n: c.n,
                call_id,
                outcome,
                status,
                recording: c.recording,
                report: c.report,
            });
        }
        Event::Ended { status, reason, .. } => {
            println!(
                "autoanswer: another call ended: {} {reason}",
                status_text(status)
            )
        }
        _ => {}
    }
    None
}

fn print_report(n: u64, report: &MediaReport) {
    match (&report.stats, &report.error) {
        (Some(s), _) => println!(
            "autoanswer: call {n} media over {:.1} s: {} | sent {} / received {} RTP packets, \
             lost {}, jitter {:.1} ms, concealed {:.0} ms, jitter buffer {:.0} ms (mean), \
             RTT {}, playback underruns {}",
            report.duration.as_secs_f64(),
            s.codec,
            s.rtp_sent,
            s.rtp_received,
            s.lost,
            s.jitter_ms,
            s.concealed_ms,
            s.jitter_buffer_mean_ms,
            s.rtt_ms
                .map_or_else(|| "n/a".to_string(), |r| format!("{r:.1} ms")),
            report.playback.underruns,
        ),
        (None, Some(e)) => println!("autoanswer: call {n}: media did not run: {e}"),
        (None, None) => println!("autoanswer: call {n}: no media"),
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A final status for a log line: `200`, or `-` when there was none.
fn status_text(status: Option<u16>) -> String {
    status.map_or_else(|| "-".to_string(), |s| s.to_string())
}

fn usage() -> ! {
    eprintln!("usage: autoanswer [--listen ADDR] [--seconds N] [--calls N] [--dir DIR] [FILE.wav]");
    std::process::exit(2)
}

fn parse_args() -> Options {
    let mut options = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--listen" => options.listen = value().parse().unwrap_or_else(|_| usage()),
            "--seconds" => {
                let s: f64 = value().parse().unwrap_or_else(|_| usage());
                options.hangup_after = Duration::from_secs_f64(s.max(0.0));
            }
            "--calls" => options.max_calls = Some(value().parse().unwrap_or_else(|_| usage())),
            "--dir" => options.dir = PathBuf::from(value()),
            "-h" | "--help" => usage(),
            wav if !wav.starts_with('-') => options.source = AudioSource::Wav(PathBuf::from(wav)),
            _ => usage(),
        }
    }
    options
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let options = parse_args();
    let summaries = serve(options, |_| {}).await?;
    let answered = summaries
        .iter()
        .filter(|s| s.outcome == CallOutcome::Answered)
        .count();
    println!(
        "autoanswer: {} call(s), {answered} answered",
        summaries.len()
    );
    Ok(())
}

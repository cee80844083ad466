//! A minimal softphone: registers (optionally), prints every event, answers an incoming call
//! when you press Enter, places a call to a URI given on the command line, and hangs up on
//! Ctrl-C (a second Ctrl-C, or one with no call up, quits).
//!
//! ```text
//! # Direct calls only: accept SIP over TCP on 127.0.0.1:5070 and wait for a call.
//! cargo run --example softphone
//! # Register first (flags or WAKELINE_* environment variables), then call someone.
//! WAKELINE_PASSWORD=secret cargo run --example softphone -- \
//!     --registrar 'sip:127.0.0.1:5060;transport=tcp' --user alice --domain example.org \
//!     'sip:bob@example.org'
//! ```
//!
//! | flag | environment | meaning |
//! |------|-------------|---------|
//! | `--registrar URI` | `WAKELINE_REGISTRAR` | registrar; with it the phone registers |
//! | `--user USER` | `WAKELINE_USER` | user part of the address of record (default `alice`) |
//! | `--domain DOMAIN` | `WAKELINE_DOMAIN` | domain (default: the registrar's host) |
//! | `--password PW` | `WAKELINE_PASSWORD` | digest password |
//! | `--listen ADDR` | `WAKELINE_LISTEN` | also accept direct SIP over TCP (default `127.0.0.1:5070`) |
//!
//! Audio uses the system's default input and output devices. When there is none (a server, a
//! container, CI), the phone says so and sends a 440 Hz tone and discards what it receives.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use wakeline::driver::MediaOptions;
use wakeline::media::audio::{self, AudioConfig, AudioSink, AudioSource};
use wakeline::signaling::message::Uri;
use wakeline::{Account, Call, CallOutcome, CallState, Config, Error, Event, UserAgent};

/// The command line, after flags and environment.
struct Args {
    account: Option<Account>,
    listen: SocketAddr,
    target: Option<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: softphone [--registrar URI] [--user USER] [--domain DOMAIN] [--password PW] \
         [--listen ADDR] [TARGET-URI]"
    );
    std::process::exit(2)
}

fn parse_args() -> Result<Args, Error> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut registrar = env("WAKELINE_REGISTRAR");
    let mut user = env("WAKELINE_USER");
    let mut domain = env("WAKELINE_DOMAIN");
    let mut password = env("WAKELINE_PASSWORD");
    let mut listen = env("WAKELINE_LISTEN");
    let mut target = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--registrar" => registrar = Some(value()),
            "--user" => user = Some(value()),
            "--domain" => domain = Some(value()),
            "--password" => password = Some(value()),
            "--listen" => listen = Some(value()),
            "-h" | "--help" => usage(),
            t if !t.starts_with('-') && target.is_none() => target = Some(t.to_string()),
            _ => usage(),
        }
    }
    let account = match registrar {
        Some(r) => {
            let registrar = Uri::parse(&r)?;
            let domain = domain.unwrap_or_else(|| registrar.host.to_string());
            Some(Account {
                registrar,
                user: user.unwrap_or_else(|| "alice".into()),
                domain,
                password,
                auth_user: None,
                proxy: None,
            })
        }
        None => None,
    };
    let listen = listen.unwrap_or_else(|| "127.0.0.1:5070".into());
    let listen = listen
        .parse()
        .map_err(|_| Error::Config(format!("--listen: not an address: {listen:?}")))?;
    Ok(Args {
        account,
        listen,
        target,
    })
}

/// The default devices when they open; a tone and a null sink when they do not.
fn media_options() -> MediaOptions {
    let cfg = AudioConfig::default();
    // Opening each side once here reports a missing device before any call.
    let source = match audio::start(&AudioSource::Default, &AudioSink::Null, &cfg) {
        Ok(_) => AudioSource::Default,
        Err(e) => {
            println!("softphone: no input device ({e}); sending a 440 Hz tone");
            AudioSource::Tone(440.0)
        }
    };
    let sink = match audio::start(&AudioSource::Silence, &AudioSink::Default, &cfg) {
        Ok(_) => AudioSink::Default,
        Err(e) => {
            println!("softphone: no output device ({e}); discarding received audio");
            AudioSink::Null
        }
    };
    MediaOptions {
        source,
        sink,
        ..MediaOptions::default()
    }
}

/// Reads lines from stdin on a plain thread (stdin is blocking) and forwards them.
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
            if tx.send(line.trim().to_string()).is_err() {
                break;
            }
            line.clear();
        }
    });
    rx
}

fn print_event(ev: &Event) {
    match ev {
        Event::Incoming { from, call_id, .. } => {
            println!("incoming call from {from} ({call_id}) — press Enter to answer")
        }
        Event::State { state, .. } => println!("call: {state:?}"),
        Event::Media { media, .. } => println!(
            "media: {:?} with {} (rtcp-mux: {})",
            media.codec, media.remote_rtp, media.rtcp_mux
        ),
        Event::MediaStats { snapshot, .. } => println!(
            "  {:>4.0} s  {} sent {} recv {} lost {} jitter {:.1} ms  in {:.2} out {:.2}",
            snapshot.elapsed.as_secs_f64(),
            snapshot.stats.codec,
            snapshot.stats.rtp_sent,
            snapshot.stats.rtp_received,
            snapshot.stats.lost,
            snapshot.stats.jitter_ms,
            snapshot.input_level,
            snapshot.output_level,
        ),
        Event::MediaReport { report, .. } => match (&report.stats, &report.error) {
            (Some(s), _) => println!(
                "media report: {} over {:.1} s, {} packets received, {:.0} ms concealed",
                s.codec,
                report.duration.as_secs_f64(),
                s.rtp_received,
                s.concealed_ms
            ),
            (None, Some(e)) => println!("media did not run: {e}"),
            (None, None) => {}
        },
        Event::Ended {
            status,
            reason,
            outcome,
            ..
        } => println!(
            "call ended: {} {reason} ({outcome:?})",
            status.map_or("-".to_string(), |s| s.to_string())
        ),
        Event::Registered { expires, .. } => println!("registered for {expires} s"),
        Event::RegistrationFailed { status, reason, .. } => {
            println!("registration failed: {status} {reason}")
        }
        Event::Unregistered => println!("unregistered"),
        Event::FlowUp { remote, .. } => println!("control flow up to {remote}"),
        Event::FlowDown { cause, .. } => println!("a flow went down: {cause}"),
        Event::Dtmf { digit, .. } => println!("DTMF {digit}"),
        _ => {}
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = parse_args()?;
    let registering = args.account.is_some();
    let config = Config {
        account: args.account,
        local_user: "softphone".into(),
        ..Config::default()
    };
    let (ua, mut events) = UserAgent::builder(config)
        .listen(args.listen)
        .media(media_options())
        .start()
        .await?;
    if let Some(addr) = ua.local_addr() {
        println!("softphone: direct calls to sip:softphone@{addr};transport=tcp");
    }
    if registering {
        ua.register().await?;
    }

    // The calls we know about: a ringing incoming one waits for Enter; the active one is
    // hung up by Ctrl-C.
    let mut ringing: Option<Call> = None;
    let mut active: Option<Call> = None;
    if let Some(target) = &args.target {
        println!("softphone: calling {target}");
        active = Some(ua.call(target).await?);
    }
    let mut lines = stdin_lines();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            ev = events.next() => {
                let Some(ev) = ev else { break };
                print_event(&ev);
                match ev {
                    Event::Incoming { call, .. } if ringing.is_none() && active.is_none() => {
                        let call = ua.call_handle(call);
                        if let Err(e) = call.ring().await {
                            println!("softphone: ring: {e}");
                        }
                        ringing = Some(call);
                    }
                    Event::Incoming { call, .. } => {
                        // One call at a time.
                        let _ = ua.call_handle(call).reject(486).await;
                    }
                    Event::State { call, state: CallState::Connected, .. }
                        if ringing.as_ref().is_some_and(|c| c.handle() == call) =>
                    {
                        active = ringing.take();
                    }
                    Event::Ended { call, outcome, .. } => {
                        if ringing.as_ref().is_some_and(|c| c.handle() == call) {
                            ringing = None;
                        }
                        if active.as_ref().is_some_and(|c| c.handle() == call) {
                            active = None;
                            // A phone that only placed one call is done when it ends.
                            if args.target.is_some() && outcome != CallOutcome::Answered {
                                println!("softphone: the call did not connect");
                            }
                            if args.target.is_some() {
                                break;
                            }
                        }
                    }
                    _ => {}
                }
            }
            line = lines.recv(), if stdin_open => {
                match (line, &ringing) {
                    (Some(_), Some(call)) => {
                        println!("softphone: answering");
                        if let Err(e) = call.answer().await {
                            println!("softphone: answer: {e}");
                        }
                    }
                    (Some(_), None) => println!("softphone: no call is ringing"),
                    // stdin closed (e.g. `< /dev/null`): keep running until Ctrl-C.
                    (None, _) => stdin_open = false,
                }
            }
            _ = tokio::signal::ctrl_c() => {
                match active.take().or_else(|| ringing.take()) {
                    Some(call) => {
                        println!("softphone: hanging up (Ctrl-C again to quit)");
                        if let Err(e) = call.hangup().await {
                            println!("softphone: hangup: {e}");
                        }
                    }
                    None => break,
                }
            }
        }
    }
    println!("softphone: shutting down");
    // Hangs up what is left and un-registers; do not wait forever for a dead registrar.
    if tokio::time::timeout(Duration::from_secs(5), ua.shutdown())
        .await
        .is_err()
    {
        println!("softphone: shutdown timed out");
    }
    while let Some(ev) = events.try_next() {
        print_event(&ev);
    }
    Ok(())
}

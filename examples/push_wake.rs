//! The PushKit + CallKit flow as an app writes it with the async [`UserAgent`], over real
//! sockets on 127.0.0.1, with no server to install.
//!
//! ```text
//! cargo run --example push_wake
//! ```
//!
//! Three parties run in this process:
//! - **the app** — a [`UserAgent`] in background mode. Its PushKit handler calls
//!   [`UserAgent::handle_push`] and reports the call to "CallKit" (a print); CallKit's answer
//!   and end actions call [`Call::answer`] and [`Call::hangup`];
//! - **the caller** — a second [`UserAgent`] that places the calls, sending a 1 kHz tone;
//! - **the server** — a small TCP relay standing for the SIP proxy and its push gateway: it
//!   holds each INVITE, sends a push carrying the INVITE's Call-ID and caller, and forwards the
//!   INVITE once the app is back (a real server waits for the phone's re-REGISTER, as
//!   Kamailio's `tsilo` does; here the app says when).
//!
//! Two calls:
//! 1. the user answers in CallKit **before** the INVITE arrives — wakeline remembers the answer
//!    and sends 200 OK the moment the INVITE comes;
//! 2. the INVITE arrives while CallKit rings (wakeline sends the remembered 180 Ringing) and
//!    the user answers a second later.
//!
//! Each call connects with audio both ways and ends exactly once on both sides.
//! `examples/push_wake_core.rs` tells the same story on the sans-IO core with a simulated
//! phone (suspension, keep-alive runs, a dropped flow, a network change) on a virtual clock.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use wakeline::driver::{Events, MediaOptions};
use wakeline::media::audio::{AudioSink, AudioSource};
use wakeline::{Call, CallOutcome, CallState, Config, Event, UserAgent};

/// How long any one step may take before the example gives up.
const STEP: Duration = Duration::from_secs(10);

/// A push notification as the app's PushKit handler receives it.
#[derive(Debug)]
struct Push {
    /// The INVITE's Call-ID (the payload field a push proxy fills in, RFC 8599 style).
    call_id: String,
    /// The caller, for CallKit's display.
    from: Option<String>,
    /// Tells the server the app is back: it forwards the held INVITE.
    back: oneshot::Sender<()>,
}

/// The value of the first header named `name` (or its compact form) in a SIP header block.
fn header(head: &str, name: &str, compact: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        let n = n.trim();
        (n.eq_ignore_ascii_case(name) || n.eq_ignore_ascii_case(compact))
            .then(|| v.trim().to_string())
    })
}

/// The server: accepts the caller's connection, holds the INVITE, sends a push, and relays
/// the connection to the app once the app is back.
async fn server(listener: TcpListener, app: SocketAddr, pushes: mpsc::UnboundedSender<Push>) {
    while let Ok((mut caller, _)) = listener.accept().await {
        let pushes = pushes.clone();
        tokio::spawn(async move {
            // Read up to the end of the INVITE's header block.
            let mut held = Vec::new();
            let mut buf = [0u8; 4096];
            let head = loop {
                match caller.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => held.extend_from_slice(&buf[..n]),
                }
                if let Some(end) = held.windows(4).position(|w| w == b"\r\n\r\n") {
                    break String::from_utf8_lossy(&held[..end]).into_owned();
                }
                if held.len() > 64 * 1024 {
                    return;
                }
            };
            let Some(call_id) = header(&head, "Call-ID", "i") else {
                return;
            };
            let from = header(&head, "From", "f");
            println!("server    INVITE {call_id} held; the phone sleeps: sending a push");
            let (back, is_back) = oneshot::channel();
            if pushes
                .send(Push {
                    call_id,
                    from,
                    back,
                })
                .is_err()
                || is_back.await.is_err()
            {
                return;
            }
            println!("server    the phone is back: forwarding the INVITE");
            let Ok(mut phone) = TcpStream::connect(app).await else {
                return;
            };
            if phone.write_all(&held).await.is_ok() {
                let _ = tokio::io::copy_bidirectional(&mut caller, &mut phone).await;
            }
        });
    }
}

/// Waits for the first event that `pick` accepts, printing the app's events on the way.
async fn next<T>(
    who: &str,
    events: &mut Events,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> Result<T, String> {
    let wait = async {
        while let Some(ev) = events.next().await {
            if who == "app" {
                print_app_event(&ev);
            }
            if let Some(t) = pick(&ev) {
                return Ok(t);
            }
        }
        Err(format!("{who}: the user agent stopped"))
    };
    tokio::time::timeout(STEP, wait)
        .await
        .map_err(|_| format!("{who}: no such event within {STEP:?}"))?
}

fn print_app_event(ev: &Event) {
    match ev {
        Event::Incoming {
            call,
            call_id,
            pushed,
            ..
        } => println!("app       Incoming {call:?} {call_id} (pushed: {pushed})"),
        Event::State { call, state, .. } => println!("app       {call:?} {state:?}"),
        Event::Media { call, media, .. } => {
            println!(
                "app       {call:?} media {:?} with {}",
                media.codec, media.remote_rtp
            )
        }
        Event::MediaReport { call, report, .. } => match &report.stats {
            Some(s) => println!(
                "app       {call:?} media report: {} received {} / sent {} RTP packets",
                s.codec, s.rtp_received, s.rtp_sent
            ),
            None => println!("app       {call:?} media report: {:?}", report.error),
        },
        Event::Ended {
            call,
            status,
            reason,
            outcome,
            ..
        } => println!(
            "app       {call} Ended {} {reason} ({outcome:?})",
            status.map_or("-".to_string(), |s| s.to_string())
        ),
        Event::MediaStats { .. } => {}
        other => println!("app       {other:?}"),
    }
}

/// The app's PushKit handler: create the call in wakeline, report it to CallKit, start
/// ringing. Returns the call.
async fn on_push(app: &UserAgent, events: &mut Events, push: &Push) -> Result<Call, String> {
    println!(
        "PushKit   didReceiveIncomingPush {{ call-id: {}, from: {} }}",
        push.call_id,
        push.from.as_deref().unwrap_or("unknown")
    );
    let call = app
        .handle_push(&push.call_id, push.from.as_deref())
        .await
        .map_err(|e| format!("handle_push: {e}"))?;
    let handle = call.handle();
    next("app", events, |e| match e {
        Event::Incoming {
            call, pushed: true, ..
        } if *call == handle => Some(()),
        _ => None,
    })
    .await?;
    // PushKit requires this report before the handler returns.
    println!(
        "CallKit   reportNewIncomingCall(uuid-{}) -> the phone rings",
        handle.number()
    );
    // The caller hears ringback once the INVITE is there (180 is sent when it comes).
    call.ring().await.map_err(|e| format!("ring: {e}"))?;
    Ok(call)
}

/// One call from a fresh caller through the server to the app. `answer_early`: the user
/// answers in CallKit before the INVITE reaches the app.
async fn one_call(
    app: &UserAgent,
    app_events: &mut Events,
    pushes: &mut mpsc::UnboundedReceiver<Push>,
    server_addr: SocketAddr,
    answer_early: bool,
) -> Result<(), String> {
    let media = MediaOptions {
        source: AudioSource::Tone(1000.0),
        sink: AudioSink::Null,
        ..MediaOptions::default()
    };
    let config = Config {
        local_user: "caller".into(),
        ..Config::default()
    };
    let (caller, mut caller_events) = UserAgent::builder(config)
        .media(media)
        .start()
        .await
        .map_err(|e| format!("caller: {e}"))?;
    let target = format!("sip:app@{server_addr};transport=tcp");
    println!("caller    calling {target}");
    let outgoing = caller
        .call(&target)
        .await
        .map_err(|e| format!("caller: {e}"))?;

    let push = tokio::time::timeout(STEP, pushes.recv())
        .await
        .map_err(|_| "no push came".to_string())?
        .ok_or("the server stopped")?;
    let call = on_push(app, app_events, &push).await?;
    let handle = call.handle();

    if answer_early {
        println!("CallKit   user taps Answer (the INVITE has not arrived yet)");
        call.answer().await.map_err(|e| format!("answer: {e}"))?;
        let _ = push.back.send(());
    } else {
        let _ = push.back.send(());
        // The INVITE binds to the pushed call (no second Incoming); the remembered ring
        // sends 180 at once.
        next("app", app_events, |e| match e {
            Event::State {
                call,
                state: CallState::Ringing,
                ..
            } if *call == handle => Some(()),
            _ => None,
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        println!("CallKit   user taps Answer");
        call.answer().await.map_err(|e| format!("answer: {e}"))?;
    }
    next("app", app_events, |e| match e {
        Event::State {
            call,
            state: CallState::Connected,
            ..
        } if *call == handle => Some(()),
        _ => None,
    })
    .await?;
    println!(
        "CallKit   reportCall(uuid-{}, connectedAt: now)",
        handle.number()
    );
    let caller_handle = outgoing.handle();
    next("caller", &mut caller_events, |e| match e {
        Event::State {
            call,
            state: CallState::Connected,
            ..
        } if *call == caller_handle => Some(()),
        _ => None,
    })
    .await?;
    println!("caller    connected");

    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("CallKit   user taps End");
    call.hangup().await.map_err(|e| format!("hangup: {e}"))?;
    let received = next("app", app_events, |e| match e {
        Event::MediaReport { call, report, .. } if *call == handle => {
            Some(report.stats.as_ref().map_or(0, |s| s.rtp_received))
        }
        _ => None,
    })
    .await?;
    let outcome = next("app", app_events, |e| match e {
        Event::Ended { call, outcome, .. } if *call == handle => Some(*outcome),
        _ => None,
    })
    .await?;
    println!(
        "CallKit   reportCall(uuid-{}, endedAt: now)",
        handle.number()
    );
    let caller_outcome = next("caller", &mut caller_events, |e| match e {
        Event::Ended { call, outcome, .. } if *call == caller_handle => Some(*outcome),
        _ => None,
    })
    .await?;
    println!("caller    call ended ({caller_outcome:?})");
    let _ = caller.shutdown().await;

    if outcome != CallOutcome::Answered || caller_outcome != CallOutcome::Answered {
        return Err(format!("ended {outcome:?} / {caller_outcome:?}"));
    }
    if received < 25 {
        return Err(format!("the app received only {received} RTP packets"));
    }
    Ok(())
}

/// The whole story: the app, the server, and two calls.
pub async fn run() -> Result<(), String> {
    let config = Config {
        local_user: "app".into(),
        // A pushed call whose INVITE never comes ends Missed after this long.
        push_timeout: Duration::from_secs(15),
        ..Config::default()
    };
    let media = MediaOptions {
        source: AudioSource::Tone(440.0),
        sink: AudioSink::Null,
        ..MediaOptions::default()
    };
    let (app, mut app_events) = UserAgent::builder(config)
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .media(media)
        .start()
        .await
        .map_err(|e| format!("app: {e}"))?;
    let app_addr = app.local_addr().ok_or("the app has no listener")?;
    println!("app       entering the background (keep-alive handler every 600 s)");
    app.set_background(true, Duration::from_secs(600))
        .await
        .map_err(|e| format!("set_background: {e}"))?;

    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| format!("server: {e}"))?;
    let server_addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (push_tx, mut pushes) = mpsc::unbounded_channel();
    let server = tokio::spawn(server(listener, app_addr, push_tx));

    println!("\n=== call 1: the user answers before the INVITE arrives ===");
    one_call(&app, &mut app_events, &mut pushes, server_addr, true).await?;
    println!("\n=== call 2: the INVITE arrives while CallKit rings ===");
    one_call(&app, &mut app_events, &mut pushes, server_addr, false).await?;

    server.abort();
    app.shutdown().await.map_err(|e| format!("shutdown: {e}"))?;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => {
            println!("\npush_wake: both calls connected and ended once on each side");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("push_wake: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

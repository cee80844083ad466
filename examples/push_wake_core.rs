//! The PushKit + CallKit flow on the sans-IO [`SignalingCore`], run end to end in memory —
//! for apps that drive the core from their own event loop. `examples/push_wake.rs` is the same
//! flow with the async `UserAgent` over real sockets.
//!
//! ```text
//! cargo run --example push_wake_core
//! ```
//!
//! The app owns a sans-IO [`SignalingCore`] and calls it from its PushKit, CallKit and
//! lifecycle callbacks. Here a simulated phone plays the OS, the network and the server (a
//! registrar + proxy on 127.0.0.1 that holds an INVITE for a phone that is not registered, as
//! Kamailio's `tsilo` does, and sends a push instead) on a virtual clock, so the whole story
//! runs in a few milliseconds with no server and no sockets. The app's side — [`App`] — only
//! uses the core's public API: it is what you write.
//!
//! Two runs:
//! 1. **Answer before the INVITE.** The app is in the background and suspended; the server
//!    drops the idle flow; a call comes in, the server sends a push with its Call-ID. The push
//!    wakes the app, which reports the call to CallKit at once; the user answers in CallKit
//!    while the control flow is still reconnecting; the INVITE arrives on the new flow and is
//!    answered at once. Later the phone changes network mid-call.
//! 2. **Answer after the INVITE.** The INVITE arrives on the new flow while CallKit is still
//!    ringing; the user answers two seconds later.
//!
//! The simulated phone (`platform::sim`, with the `testkit` feature) stands in for the OS and
//! the network here. With the async driver an app makes the same calls on
//! its [`UserAgent`](wakeline::UserAgent) instead (see `examples/push_wake.rs` and
//! `docs/embedding.md`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use wakeline::platform::sim::{phone_config, Phone};
use wakeline::signaling::config::PushConfig;
use wakeline::signaling::core::testkit::PeerInvite;
use wakeline::signaling::core::SignalingCore;
use wakeline::{CallHandle, CallOutcome, CallState, Event};

/// iOS runs the keep-alive handler at most every 600 s.
const KEEPALIVE_PERIOD: Duration = Duration::from_secs(600);

/// Stands in for CallKit: the app reports calls to it, and it tells the app what the user did.
#[derive(Debug, Default)]
struct CallKit {
    /// CallKit's calls by our handle: the UUID the app gave each one.
    calls: BTreeMap<CallHandle, String>,
}

impl CallKit {
    fn report_new_incoming_call(&mut self, call: CallHandle, from: &str) {
        let uuid = format!("uuid-{}", call.number());
        println!("  CallKit   reportNewIncomingCall({uuid}, from: {from:?}) -> the phone rings");
        self.calls.insert(call, uuid);
    }

    fn report_connected(&self, call: CallHandle) {
        if let Some(uuid) = self.calls.get(&call) {
            println!("  CallKit   reportCall({uuid}, connectedAt: now)");
        }
    }

    fn report_ended(&mut self, call: CallHandle, outcome: CallOutcome) {
        if let Some(uuid) = self.calls.remove(&call) {
            println!("  CallKit   reportCall({uuid}, endedAt: now, reason: {outcome:?})");
        }
    }
}

/// The application: what an embedder writes around the core.
#[derive(Debug, Default)]
struct App {
    callkit: CallKit,
    /// Events already handled (the harness keeps all of them in `Phone::events`).
    seen: usize,
    /// Calls that are connected.
    connected: Vec<CallHandle>,
    /// Calls that ended, with their outcome.
    ended: Vec<(CallHandle, CallOutcome)>,
    /// The last RTP port we reserved (a real app binds a UDP socket and announces its port).
    rtp_port: u16,
}

impl App {
    /// A fresh local RTP address for a call's media.
    fn reserve_rtp(&mut self) -> SocketAddr {
        self.rtp_port = if self.rtp_port == 0 {
            4000
        } else {
            self.rtp_port + 2
        };
        SocketAddr::from(([127, 0, 0, 1], self.rtp_port))
    }

    /// Handles the core's new events, in order, and feeds what the app does back to the core.
    fn handle_events(&mut self, phone: &mut Phone) {
        while self.seen < phone.events.len() {
            let ev = phone.events[self.seen].clone();
            self.seen += 1;
            self.handle_event(&ev, &mut phone.core, phone.now);
            phone.pump();
        }
    }

    fn handle_event(&mut self, ev: &Event, core: &mut SignalingCore, now: std::time::Instant) {
        match ev {
            Event::Registered { expires, .. } => println!("  wakeline  registered for {expires} s"),
            Event::FlowUp { remote, .. } => println!("  wakeline  control flow up to {remote}"),
            Event::FlowDown { .. } => println!("  wakeline  control flow down"),
            Event::Incoming {
                call,
                call_id,
                from,
                pushed,
                ..
            } => {
                println!("  wakeline  Incoming {call:?} Call-ID {call_id} (pushed: {pushed})");
                // PushKit requires the report before the push handler returns.
                self.callkit.report_new_incoming_call(*call, from);
                // The phone rings, so the caller hears ringback: 180 Ringing (remembered
                // until the INVITE comes, for a pushed call).
                if let Err(e) = core.ring(now, *call) {
                    println!("  app       ring failed: {e}");
                }
            }
            Event::State { call, state, .. } => {
                println!("  wakeline  {call:?} {state:?}");
                if *state == CallState::Connected {
                    self.connected.push(*call);
                    self.callkit.report_connected(*call);
                }
            }
            Event::Media { call, media, .. } => println!(
                "  wakeline  {call:?} media {:?} to {} (start or move the RTP session)",
                media.codec, media.remote_rtp
            ),
            Event::Ended {
                call,
                status,
                reason,
                outcome,
                ..
            } => {
                let status = status.map_or("-".to_string(), |s| s.to_string());
                println!("  wakeline  {call} Ended {status} {reason} ({outcome:?})");
                self.connected.retain(|c| c != call);
                self.ended.push((*call, *outcome));
                self.callkit.report_ended(*call, *outcome);
            }
            other => println!("  wakeline  {other:?}"),
        }
    }

    /// CallKit's `CXAnswerCallAction`: answer in wakeline. Before the INVITE has come the core
    /// remembers the answer and sends 200 OK the moment it arrives.
    fn user_answers(
        &mut self,
        core: &mut SignalingCore,
        now: std::time::Instant,
        call: CallHandle,
    ) {
        println!("  CallKit   user taps Answer -> CXAnswerCallAction");
        let rtp = self.reserve_rtp();
        if let Err(e) = core.answer(now, call, rtp) {
            println!("  app       answer failed: {e}");
        }
    }

    /// CallKit's `CXEndCallAction`.
    fn user_hangs_up(
        &mut self,
        core: &mut SignalingCore,
        now: std::time::Instant,
        call: CallHandle,
    ) {
        println!("  CallKit   user taps End -> CXEndCallAction");
        if let Err(e) = core.hangup(now, call) {
            println!("  app       hangup failed: {e}");
        }
    }
}

/// The config an app would use: the account, the APNs VoIP token as RFC 8599 Contact
/// parameters, and how long a pushed call waits for its INVITE.
fn app_config() -> wakeline::Config {
    wakeline::Config {
        push: Some(PushConfig {
            provider: "apns".into(),
            prid: "00fc13adff785122b4ad28809a3420982341241421348097878e577c991de8f0".into(),
            param: Some("TEAMID.org.example.softphone.voip".into()),
        }),
        push_timeout: Duration::from_secs(20),
        ..phone_config()
    }
}

/// Registers, goes to the background, runs one keep-alive, and is suspended; the server then
/// drops the idle flow. Returns the phone and the app, ready for a push.
fn background_and_suspend() -> (Phone, App) {
    let origin = std::time::Instant::now();
    let mut phone = Phone::new(app_config(), origin);
    let mut app = App::default();
    println!("app launches and registers (RFC 8599 pn-* parameters in the Contact)");
    phone.advance(Duration::from_millis(10));
    app.handle_events(&mut phone);

    println!("app enters the background (keep-alive handler every 600 s)");
    phone.core.set_background(phone.now, true, KEEPALIVE_PERIOD);
    phone.pump();
    app.handle_events(&mut phone);

    println!("keep-alive handler runs");
    let report = phone.core.run_keepalive(phone.now);
    phone.advance(Duration::from_millis(5));
    println!(
        "  wakeline  {report:?}, pong received: {}",
        phone.core.last_pong().is_some()
    );
    app.handle_events(&mut phone);

    println!(
        "app is suspended; later the server drops the idle flow (the EOF waits in the kernel)"
    );
    phone.suspend();
    phone.advance(Duration::from_secs(120));
    phone.drop_flow();
    (phone, app)
}

/// The INVITE the server will send, and the push payload it sends first.
fn incoming(call_id: &str) -> PeerInvite {
    PeerInvite {
        call_id: call_id.into(),
        from_tag: "caller1".into(),
        branch: format!("z9hG4bK-{call_id}"),
        cseq: 1,
    }
}

/// The push arrives: iOS resumes the app and calls the PushKit handler, which reports the
/// call to CallKit before returning.
fn push_arrives(phone: &mut Phone, app: &mut App, invite: &PeerInvite) -> CallHandle {
    println!(
        "PushKit: didReceiveIncomingPush {{ call-id: {}, from: sip:peer@127.0.0.1 }}",
        invite.call_id
    );
    // The process runs again: whatever waited in the kernel is handled first.
    phone.wake();
    let call = phone.core.handle_push(
        phone.now,
        invite.call_id.clone(),
        Some("<sip:peer@127.0.0.1>".into()),
    );
    phone.pump();
    app.handle_events(phone);
    call
}

pub fn answer_before_invite() -> Result<(), String> {
    println!("=== run 1: the user answers before the INVITE arrives ===");
    let (mut phone, mut app) = background_and_suspend();
    let invite = incoming("push-call-1");
    let call = push_arrives(&mut phone, &mut app, &invite);

    // The user is quick: the INVITE is still on its way.
    app.user_answers(&mut phone.core, phone.now, call);
    phone.pump();
    app.handle_events(&mut phone);

    println!("server: the held INVITE goes out on the new flow");
    phone.advance(Duration::from_millis(30));
    phone.server_invite(&invite);
    phone.advance(Duration::from_millis(30));
    app.handle_events(&mut phone);
    if !app.connected.contains(&call) {
        return Err("run 1: the pushed call did not connect".into());
    }

    println!("the phone moves from Wi-Fi to cellular mid-call");
    phone.advance(Duration::from_secs(3));
    let moved = phone.core.handle_network_changed(phone.now);
    for c in moved {
        let rtp = app.reserve_rtp();
        println!("  app       {c:?}: new RTP socket on {rtp}, re-INVITE");
        if let Err(e) = phone.core.update_media(phone.now, c, rtp) {
            return Err(format!("run 1: update_media: {e}"));
        }
    }
    phone.advance(Duration::from_millis(50));
    app.handle_events(&mut phone);

    phone.advance(Duration::from_secs(5));
    app.user_hangs_up(&mut phone.core, phone.now, call);
    phone.advance(Duration::from_millis(50));
    app.handle_events(&mut phone);
    finish(&phone, &app, call, &invite, "run 1")
}

pub fn answer_after_invite() -> Result<(), String> {
    println!("=== run 2: the INVITE arrives while CallKit rings; the user answers later ===");
    let (mut phone, mut app) = background_and_suspend();
    let invite = incoming("push-call-2");
    println!("server: INVITE for the phone, which is not registered: hold it, send a push");
    phone.server_invite(&invite);
    let call = push_arrives(&mut phone, &mut app, &invite);
    phone.advance(Duration::from_millis(30));
    app.handle_events(&mut phone);
    println!(
        "server: the INVITE went out on the new flow; the phone answered {:?} (bound to {call:?}, no second Incoming)",
        phone.statuses(&invite.call_id)
    );

    println!("CallKit rings for two seconds");
    phone.advance(Duration::from_secs(2));
    app.handle_events(&mut phone);
    app.user_answers(&mut phone.core, phone.now, call);
    phone.advance(Duration::from_millis(30));
    app.handle_events(&mut phone);
    if !app.connected.contains(&call) {
        return Err("run 2: the pushed call did not connect".into());
    }

    phone.advance(Duration::from_secs(5));
    app.user_hangs_up(&mut phone.core, phone.now, call);
    phone.advance(Duration::from_millis(50));
    app.handle_events(&mut phone);
    finish(&phone, &app, call, &invite, "run 2")
}

/// Checks the outcome: one `Incoming` (the pushed one), answered, ended once, ledger closed.
fn finish(
    phone: &Phone,
    app: &App,
    call: CallHandle,
    invite: &PeerInvite,
    run: &str,
) -> Result<(), String> {
    let incoming = phone.incoming();
    let statuses = phone.statuses(&invite.call_id);
    println!(
        "{run}: responses sent for the INVITE: {statuses:?}; ledger open: {}",
        phone.core.ledger_open()
    );
    if incoming != [call] {
        return Err(format!("{run}: expected one Incoming, got {incoming:?}"));
    }
    if app.ended != [(call, CallOutcome::Answered)] {
        return Err(format!(
            "{run}: expected one Answered end, got {:?}",
            app.ended
        ));
    }
    if statuses.iter().filter(|s| **s >= 200).count() != 1 {
        return Err(format!(
            "{run}: expected one final response, got {statuses:?}"
        ));
    }
    if phone.core.ledger_open() != 0 || phone.core.pushed_waiting() != 0 {
        return Err(format!("{run}: the ledger is not closed"));
    }
    println!("{run}: ok\n");
    Ok(())
}

fn main() -> std::process::ExitCode {
    for run in [answer_before_invite, answer_after_invite] {
        if let Err(e) = run() {
            eprintln!("push_wake_core: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    println!("push_wake_core: both orders connected");
    std::process::ExitCode::SUCCESS
}

//! A silent STUN server stalls only the call it is asked for (issue 8 follow-up): the media
//! preparation (address, sockets, STUN) runs off the driver loop, so while Alice's call to Bob
//! waits out `stun::GIVE_UP`, an incoming call from Carol is seen, rung and rejected at once,
//! and Alice's call still connects afterwards on her local address; a call cancelled while
//! its answer waits for STUN is not answered; the same holds for a network change (rebind).
//!
//! STUN is skipped for loopback media, so the three user agents run in a network namespace of
//! their own with a TEST-NET address (`peers/netns.rs`; needs root, else the test skips).

#[path = "peers/events.rs"]
mod events;
#[path = "peers/netns.rs"]
mod netns;

use netns::Net;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use wakeline::media::stun::GIVE_UP;
use wakeline::{
    AudioSink, AudioSource, Call, CallHandle, CallOutcome, Config, Event, Events, MediaOptions,
    UserAgent,
};

const LIMIT: Duration = Duration::from_secs(10);

/// How soon the independent action must be done: well before the STUN give-up.
const PROMPT: Duration = Duration::from_millis(600);

/// A user agent listening on `ip` (TCP and UDP, free port), silent media on `ip`, taking a
/// second call while one is being set up; with `stun`, the STUN server it asks.
async fn agent(ip: IpAddr, stun: Option<SocketAddr>) -> (UserAgent, Events, String) {
    let config = Config {
        busy_policy: wakeline::BusyPolicy::Allow,
        ..Config::default()
    };
    let media = MediaOptions {
        source: AudioSource::Silence,
        sink: AudioSink::Null,
        ..MediaOptions::default()
    };
    let mut builder = UserAgent::builder(config)
        .listen(SocketAddr::new(ip, 0))
        .media_ip(ip)
        .media(media);
    if let Some(server) = stun {
        builder = builder.stun_server(server.to_string());
    }
    let (ua, events) = builder.start().await.expect("user agent starts");
    let addr = ua.local_addr().expect("listening");
    let uri = format!("sip:u@{addr};transport=tcp");
    (ua, events, uri)
}

/// The next event matching `pred` within `limit`.
async fn wait(events: &mut Events, limit: Duration, pred: impl Fn(&Event) -> bool) -> Event {
    events::next_matching(events, limit, pred).await
}

/// The handle of the next incoming call.
async fn incoming(events: &mut Events, limit: Duration) -> CallHandle {
    match wait(events, limit, |e| matches!(e, Event::Incoming { .. })).await {
        Event::Incoming { call, .. } => call,
        _ => unreachable!(),
    }
}

/// `call` ends as `expected` within [`PROMPT`].
async fn ends_at_once(call: &Call, expected: CallOutcome) {
    let outcome = tokio::time::timeout(PROMPT, call.ended())
        .await
        .unwrap_or_else(|_| panic!("not {expected:?} within {PROMPT:?}"));
    assert_eq!(outcome, expected);
}

/// Carol calls Alice; Alice sees it, rings and rejects (486), and Carol hears so, all within
/// [`PROMPT`]: Alice's driver loop is not stalled.
async fn rejected_at_once(alice: &UserAgent, events: &mut Events, carol: &UserAgent, uri: &str) {
    let from_carol = carol.call(uri).await.expect("Carol calls");
    let at_alice = alice.call_handle(incoming(events, PROMPT).await);
    at_alice.ring().await.expect("Alice rings");
    at_alice.reject(486).await.expect("Alice rejects");
    ends_at_once(&from_carol, CallOutcome::Busy).await;
}

async fn scenario(ip: IpAddr) {
    // Bound and never read: every Binding goes unanswered (no ICMP either).
    let silent = UdpSocket::bind(SocketAddr::new(ip, 0)).expect("bind the silent server");
    let stun = silent.local_addr().expect("its address");
    let (alice, mut alice_events, alice_uri) = agent(ip, Some(stun)).await;
    let (bob, mut bob_events, bob_uri) = agent(ip, None).await;
    let (carol, _carol_events, _) = agent(ip, None).await;

    let started = Instant::now();
    let stalled = {
        let alice = alice.clone();
        tokio::spawn(async move {
            let call = alice.call(&bob_uri).await;
            (call, started.elapsed())
        })
    };
    // The call's STUN is under way (nothing reaches Bob); meanwhile Carol calls Alice.
    rejected_at_once(&alice, &mut alice_events, &carol, &alice_uri).await;
    let independent = started.elapsed();
    assert!(
        independent < PROMPT,
        "Carol's call took {independent:?} while Alice's STUN was pending"
    );
    assert!(
        !stalled.is_finished(),
        "Alice's call was placed before STUN gave up ({:?})",
        started.elapsed()
    );

    // The stalled call goes on after the give-up, announcing the local address.
    let (call, took) = tokio::time::timeout(LIMIT, stalled)
        .await
        .expect("Alice's call is placed")
        .expect("the task ran");
    let call = call.expect("Alice's call");
    assert!(
        took >= GIVE_UP - Duration::from_millis(100),
        "Alice's call was placed after {took:?}, before STUN could give up: was it asked?"
    );
    eprintln!("Carol's call rejected after {independent:?}; Alice's call placed after {took:?}");
    let at_bob = incoming(&mut bob_events, LIMIT).await;
    bob.call_handle(at_bob).answer().await.expect("Bob answers");
    let up = tokio::time::timeout(LIMIT, call.connected())
        .await
        .expect("connected in time");
    assert!(up, "Alice's call connects after the STUN give-up");
    match wait(&mut alice_events, LIMIT, |e| {
        matches!(e, Event::Media { .. })
    })
    .await
    {
        Event::Media { media, .. } => assert_eq!(media.local_rtp.ip(), ip, "{media:?}"),
        _ => unreachable!(),
    }

    // A network change re-binds the call, STUN again (the re-INVITE waits for it); Carol's
    // next call is still seen and rejected at once meanwhile.
    let changed = Instant::now();
    let moving = {
        let alice = alice.clone();
        tokio::spawn(async move { (alice.network_changed().await, changed.elapsed()) })
    };
    rejected_at_once(&alice, &mut alice_events, &carol, &alice_uri).await;
    let independent = changed.elapsed();
    assert!(!moving.is_finished(), "the rebind did not wait for STUN");
    let (moved, took) = tokio::time::timeout(LIMIT, moving)
        .await
        .expect("the network change completes")
        .expect("the task ran");
    moved.expect("the network change");
    eprintln!("network change: Carol rejected after {independent:?}, rebind done after {took:?}");
    assert!(took >= GIVE_UP - Duration::from_millis(100), "{took:?}");
    assert!(
        call.connected().await,
        "the call survives the network change"
    );

    call.hangup().await.expect("Alice hangs up");
    for ua in [alice, bob, carol] {
        ua.shutdown().await.expect("shutdown");
    }
    drop(silent);
}

/// Carol cancels while Alice's answer waits for STUN: the CANCEL is handled at once, and the
/// answer, once its media is ready, fails (the call is gone) instead of answering.
async fn cancelled_while_answering(ip: IpAddr) {
    let silent = UdpSocket::bind(SocketAddr::new(ip, 0)).expect("bind the silent server");
    let stun = silent.local_addr().expect("its address");
    let (alice, mut alice_events, alice_uri) = agent(ip, Some(stun)).await;
    let (carol, _carol_events, _) = agent(ip, None).await;

    let from_carol = carol.call(&alice_uri).await.expect("Carol calls");
    let at_alice = alice.call_handle(incoming(&mut alice_events, LIMIT).await);
    let started = Instant::now();
    let answering = tokio::spawn(async move { at_alice.answer().await });
    from_carol.hangup().await.expect("Carol cancels");
    ends_at_once(&from_carol, CallOutcome::Cancelled).await;
    let cancelled = started.elapsed();
    assert!(!answering.is_finished(), "the answer did not wait for STUN");
    let answered = tokio::time::timeout(LIMIT, answering)
        .await
        .expect("the answer returns")
        .expect("the task ran");
    eprintln!(
        "cancelled after {cancelled:?}; the answer returned {answered:?} after {:?}",
        started.elapsed()
    );
    assert!(answered.is_err(), "answered a cancelled call: {answered:?}");
    for ua in [alice, carol] {
        ua.shutdown().await.expect("shutdown");
    }
    drop(silent);
}

/// Runs `scenario` on a runtime inside a one-host network (skips without root).
fn in_namespace<F: std::future::Future<Output = ()> + 'static>(scenario: fn(IpAddr) -> F) {
    let Some(net) = Net::create(1) else {
        return;
    };
    let ip: IpAddr = net.host(0).v4.into();
    net.host(0).run(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(scenario(ip));
    });
}

#[test]
fn a_silent_stun_server_stalls_only_its_own_call() {
    in_namespace(scenario);
}

#[test]
fn a_call_cancelled_while_its_answer_waits_for_stun_is_not_answered() {
    in_namespace(cancelled_while_answering);
}

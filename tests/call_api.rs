//! The per-call API a CallKit app drives (issue 11, item 3), on two in-process user agents over
//! 127.0.0.1: call handles that only act in the user agent that made them, typed hold, per-call
//! media options (`call_with`, `answer_with`) checked by the tones each far end records, and
//! a call whose audio I/O runs only while the app's audio session is active (CallKit).

mod peers;

use peers::audio::{assert_tone, read_wav, tone_tally, Wav};
use std::path::Path;

use std::time::Duration;
use wakeline::{
    AudioSink, AudioSource, CallHandle, Config, CoreError, Error, Event, Events, MediaOptions,
    UserAgent,
};

const LIMIT: Duration = Duration::from_secs(10);

/// Silent audio both ways (no device needed).
fn quiet() -> MediaOptions {
    MediaOptions {
        source: AudioSource::Silence,
        sink: AudioSink::Null,
        ..MediaOptions::default()
    }
}

/// A tone out, and what comes in recorded to `record` (nothing played).
fn tone(hz: f32, record: Option<&Path>) -> MediaOptions {
    MediaOptions {
        source: AudioSource::Tone(hz),
        record: record.map(Path::to_path_buf),
        ..quiet()
    }
}

/// A user agent listening on a free port of 127.0.0.1 with `media` as its default; it takes
/// a second call while one is up (call waiting).
async fn listener(media: MediaOptions) -> (UserAgent, Events, String) {
    let config = Config {
        busy_policy: wakeline::BusyPolicy::Allow,
        ..Config::default()
    };
    // Port 0 picks a free TCP port; SIP over UDP then needs the same port, which another
    // test's RTP socket may hold: try a few ports.
    let mut tries = 0;
    let (ua, events) = loop {
        let started = UserAgent::builder(config.clone())
            .listen("127.0.0.1:0".parse().unwrap())
            .media(media.clone())
            .start()
            .await;
        match started {
            Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 5 => {
                tries += 1
            }
            other => break other.unwrap(),
        }
    };
    let uri = format!("sip:bob@{};transport=tcp", ua.local_addr().unwrap());
    (ua, events, uri)
}

/// A user agent that only calls out, silent unless a call says otherwise.
async fn caller() -> (UserAgent, Events) {
    UserAgent::builder(Config::default())
        .media(quiet())
        .start()
        .await
        .unwrap()
}

/// A 440 Hz tone whose audio I/O waits for the app's audio session (CallKit).
fn manual_tone() -> MediaOptions {
    MediaOptions {
        audio_session: wakeline::AudioSession::Manual,
        ..tone(440.0, None)
    }
}

/// The next event matching `pred`, within [`LIMIT`].
async fn wait(events: &mut Events, pred: impl Fn(&Event) -> bool) -> Event {
    peers::events::next_matching(events, LIMIT, pred).await
}

/// The handle of the next incoming call.
async fn incoming(events: &mut Events) -> CallHandle {
    match wait(events, |e| matches!(e, Event::Incoming { .. })).await {
        Event::Incoming { call, .. } => call,
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_from_one_user_agent_never_acts_on_another() {
    let (bob, mut bob_events, uri) = listener(quiet()).await;
    let (alice, mut alice_events) = caller().await;
    let call = alice.call(&uri).await.unwrap();
    let at_bob = incoming(&mut bob_events).await;
    // Both are each user agent's first call: the same number, different handles.
    assert_eq!(call.handle().number(), at_bob.number());
    assert_ne!(call.handle(), at_bob);

    // Bob's handle used on Alice: refused, and Alice's own call #1 is untouched.
    let foreign = alice.call_handle(at_bob);
    match foreign.hangup().await {
        Err(Error::Core(CoreError::UnknownCall(h))) => assert_eq!(h, at_bob),
        other => panic!("expected an unknown-call error, got {other:?}"),
    }
    let err = foreign.answer().await.unwrap_err();
    assert!(err.to_string().contains("unknown call"), "{err}");
    assert_eq!(
        foreign.ended().await,
        wakeline::CallOutcome::Failed,
        "a foreign handle's awaitable resolves at once"
    );
    assert!(!foreign.connected().await);

    // The right user agent answers; the call connects and ends normally.
    bob.call_handle(at_bob).answer().await.unwrap();
    assert!(tokio::time::timeout(LIMIT, call.connected()).await.unwrap());
    call.hangup().await.unwrap();
    let ended = wait(&mut alice_events, |e| matches!(e, Event::Ended { .. })).await;
    assert!(
        matches!(ended, Event::Ended { call: c, status: Some(200), .. } if c == call.handle()),
        "{ended:?}"
    );
    // Display stays short for logs; Debug names the user agent too.
    assert_eq!(at_bob.to_string(), format!("#{}", at_bob.number()));
    assert!(format!("{at_bob:?}").contains("of core"), "{at_bob:?}");
    bob.shutdown().await.unwrap();
    alice.shutdown().await.unwrap();
}

/// Alice calls Bob (who answers): (Bob, his events, his call, Alice, her events, her call).
async fn connected_call(
    bob_media: MediaOptions,
) -> (
    UserAgent,
    Events,
    wakeline::Call,
    UserAgent,
    Events,
    wakeline::Call,
) {
    let (bob, mut bob_events, uri) = listener(bob_media).await;
    let (alice, alice_events) = caller().await;
    let call = alice.call(&uri).await.unwrap();
    let answered = bob.call_handle(incoming(&mut bob_events).await);
    answered.answer().await.unwrap();
    assert!(tokio::time::timeout(LIMIT, call.connected()).await.unwrap());
    (bob, bob_events, answered, alice, alice_events, call)
}

/// The next `State` of `call` among `events`.
async fn state_of(events: &mut Events, call: CallHandle, want: wakeline::CallState) {
    wait(
        events,
        |e| matches!(e, Event::State { call: c, state, .. } if *c == call && *state == want),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_hold_puts_the_call_on_hold_and_back() {
    use wakeline::{CallState, Hold};
    let (bob, mut bob_events, at_bob, alice, mut alice_events, call) =
        connected_call(quiet()).await;
    call.hold(Hold::On).await.unwrap();
    state_of(&mut bob_events, at_bob.handle(), CallState::Held).await;
    // Our re-INVITE is done when its 200 reaches us (until then a second one is refused).
    state_of(&mut alice_events, call.handle(), CallState::Held).await;
    call.hold(Hold::Off).await.unwrap();
    state_of(&mut bob_events, at_bob.handle(), CallState::Resumed).await;
    call.hangup().await.unwrap();
    bob.shutdown().await.unwrap();
    alice.shutdown().await.unwrap();
}

/// Two calls at once between the same two user agents, each with its own media options: Alice
/// places them with `call_with` (440 Hz and 880 Hz), Bob answers the first with `answer_with`
/// (600 Hz) and the second with his user agent's default (1000 Hz). Each side records each call,
/// and every recording holds the tone of that call's far end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_uses_its_own_media_options() {
    let dir = tempfile::tempdir().unwrap();
    let wav = |name: &str| dir.path().join(format!("{name}.wav"));
    let bob_default = MediaOptions {
        record: Some(wav("bob")),
        record_per_call: true,
        ..tone(1000.0, None)
    };
    let (bob, mut bob_events, uri) = listener(bob_default).await;
    let (alice, _alice_events) = caller().await;

    let first = alice
        .call_with(&uri, tone(440.0, Some(&wav("alice-1"))))
        .await
        .unwrap();
    let at_bob_1 = bob.call_handle(incoming(&mut bob_events).await);
    at_bob_1
        .answer_with(tone(600.0, Some(&wav("bob-first"))))
        .await
        .unwrap();
    let second = alice
        .call_with(&uri, tone(880.0, Some(&wav("alice-2"))))
        .await
        .unwrap();
    let at_bob_2 = bob.call_handle(incoming(&mut bob_events).await);
    at_bob_2.answer().await.unwrap();
    for call in [&first, &second] {
        assert!(tokio::time::timeout(LIMIT, call.connected()).await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for call in [&first, &second] {
        call.hangup().await.unwrap();
        tokio::time::timeout(LIMIT, call.ended()).await.unwrap();
    }
    for call in [&at_bob_1, &at_bob_2] {
        tokio::time::timeout(LIMIT, call.ended()).await.unwrap();
    }
    bob.shutdown().await.unwrap();
    alice.shutdown().await.unwrap();

    // Bob's default options record per call: FILE-n.wav, n = the call's number.
    let bob_second = wav(&format!("bob-{}", at_bob_2.handle().number()));
    assert_tone(&wav("bob-first"), 440.0, 600.0, 1.0);
    assert_tone(&bob_second, 880.0, 1000.0, 1.0);
    assert_tone(&wav("alice-1"), 600.0, 440.0, 1.0);
    assert_tone(&wav("alice-2"), 1000.0, 880.0, 1.0);
}

/// The part of `wav` from `from` to `to` (seconds from its start).
fn slice(wav: &Wav, from: f64, to: f64) -> Wav {
    let at = |t: f64| ((t * f64::from(wav.rate)) as usize).min(wav.samples.len());
    Wav {
        samples: wav.samples[at(from)..at(to)].to_vec(),
        ..*wav
    }
}

/// The long stretches of `wav`, in order: `'S'` for silence, `'T'` for the tone `hz` (100 ms
/// blocks; runs shorter than `min_blocks` and blocks that are neither are left out, and
/// neighbours with the same label merge). Robust to when each stretch starts, which a loaded
/// machine shifts.
fn stretches(wav: &Wav, hz: f64, other: f64, min_blocks: usize) -> String {
    let block = wav.rate as usize / 10;
    let labels: Vec<char> = (0..wav.samples.len() / block)
        .map(|i| {
            let t = tone_tally(
                &slice(wav, i as f64 / 10.0, (i + 1) as f64 / 10.0),
                hz,
                other,
            );
            match (t.loud, t.tone) {
                (0, _) => 'S',
                (_, 1) => 'T',
                _ => '?',
            }
        })
        .collect();
    let mut out = String::new();
    for run in labels.chunk_by(|a, b| a == b) {
        if run.len() >= min_blocks && run[0] != '?' && !out.ends_with(run[0]) {
            out.push(run[0]);
        }
    }
    out
}

/// Alice's call runs its audio session by hand (`AudioSession::Manual`, as a CallKit app
/// does): RTP flows from the answer on, but her tone reaches Bob only while her session is
/// active — not before the first activation, not after a deactivation, again after a
/// re-activation. Bob records what he receives: silence, tone, silence, tone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_flows_only_while_the_apps_audio_session_is_active() {
    const PHASE: Duration = Duration::from_millis(2000);
    let dir = tempfile::tempdir().unwrap();
    let heard = dir.path().join("bob.wav");
    let (bob, mut bob_events, uri) = listener(quiet()).await;
    let (alice, _alice_events) = caller().await;
    let call = alice.call_with(&uri, manual_tone()).await.unwrap();
    let at_bob = bob.call_handle(incoming(&mut bob_events).await);
    at_bob
        .answer_with(tone(1000.0, Some(&heard)))
        .await
        .unwrap();
    assert!(tokio::time::timeout(LIMIT, call.connected()).await.unwrap());
    for step in 0..3 {
        tokio::time::sleep(PHASE).await;
        if step % 2 == 0 {
            call.audio_session_activated().await.unwrap();
        } else {
            call.audio_session_deactivated().await.unwrap();
        }
    }
    tokio::time::sleep(PHASE).await;
    call.hangup().await.unwrap();
    tokio::time::timeout(LIMIT, at_bob.ended()).await.unwrap();
    bob.shutdown().await.unwrap();
    alice.shutdown().await.unwrap();

    // Each phase lasts 2 s: at least 0.5 s of each must be clearly there, in this order.
    let wav = read_wav(&heard);
    assert_eq!(
        stretches(&wav, 440.0, 1000.0, 5),
        "STST",
        "{}",
        wav.duration_s()
    );
    // The first stretch starts the recording: no tone ever came before the activation.
    let first = tone_tally(&slice(&wav, 0.0, 0.5), 440.0, 1000.0);
    assert_eq!(first.tone, 0, "{first:?}");
}

/// CallKit activates the session of an outgoing call right after its start action, before the
/// far end answers: the activation is remembered and the audio opens with the media.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_before_the_answer_opens_the_audio_with_the_media() {
    let dir = tempfile::tempdir().unwrap();
    let heard = dir.path().join("bob.wav");
    let (bob, mut bob_events, uri) = listener(quiet()).await;
    let (alice, _alice_events) = caller().await;
    let call = alice.call_with(&uri, manual_tone()).await.unwrap();
    call.audio_session_activated().await.unwrap();
    let at_bob = bob.call_handle(incoming(&mut bob_events).await);
    at_bob
        .answer_with(tone(1000.0, Some(&heard)))
        .await
        .unwrap();
    assert!(tokio::time::timeout(LIMIT, call.connected()).await.unwrap());
    tokio::time::sleep(Duration::from_secs(2)).await;
    call.hangup().await.unwrap();
    tokio::time::timeout(LIMIT, at_bob.ended()).await.unwrap();
    bob.shutdown().await.unwrap();
    alice.shutdown().await.unwrap();
    assert_tone(&heard, 440.0, 1000.0, 1.2);
}

//! One call's media: a tokio task that owns the call's UDP sockets (RTP, and RTCP on port + 1
//! when rtcp-mux is not agreed), the audio backends (device, WAV, tone...) and the sans-IO
//! [`MediaPipeline`]. It never shares a socket with the SIP control flow.

use super::media_rt::{Home, Placed};
pub(crate) use super::media_sockets::MediaSockets;
use super::paced_clock::PacedClock;
use super::tap::Tap;
use crate::media::audio::{self, AudioConfig, AudioHandle, AudioSink, AudioSource, PacedAudio};
use crate::media::codec::{EncoderConfig, OpusSignal};
use crate::media::pipeline::{MediaEvent, MediaPipeline, PipelineConfig};
use crate::media::{MediaReport, MediaSnapshot};

/// How often a running call reports its media (`Event::MediaStats`).
const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);
/// The first report comes this soon, and a last one when media stops, so a report over the
/// snapshots covers the whole call.
const FIRST_SNAPSHOT: Duration = Duration::from_millis(250);
use crate::signaling::core::CallHandle;
use crate::signaling::sdp::Negotiated;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

#[path = "media_recv.rs"]
mod recv;
use recv::recv_one;

/// How calls get their audio.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaOptions {
    /// Where our audio comes from.
    pub source: AudioSource,
    /// Where the far end's audio goes.
    pub sink: AudioSink,
    /// Also write what the far end sent, decoded (48 kHz mono 16-bit), to this WAV file.
    pub record: Option<PathBuf>,
    /// Encoder preferences (bitrate, complexity, DTX, FEC, ptime).
    pub encoder: EncoderConfig,
    /// Audio backend settings (period, ring size).
    pub audio: AudioConfig,
    /// When media may follow a source other than the SDP address (`--latching`; default
    /// `nat`: only when the SDP address is unreachable from here, after a proof).
    pub latching: crate::media::session::Latching,
    /// With several calls at once: call `n` (its [`CallHandle`] number) records to
    /// `FILE-n.wav` instead of `record`'s `FILE.wav`.
    pub record_per_call: bool,
    /// Look for a tone at this frequency (Hz) in the far end's audio
    /// ([`crate::media::pipeline::CallStats::tone`]).
    pub expect_tone: Option<f32>,
    /// Who starts the audio I/O: wakeline with the media (default), or the app
    /// ([`AudioSession::Manual`](super::AudioSession::Manual), for CallKit).
    pub audio_session: super::AudioSession,
}

impl MediaOptions {
    /// The encoder settings a call gets: [`Self::encoder`], except that a tone source is
    /// told to Opus as music when the settings leave the signal to Opus's analysis. A tone
    /// is not speech: coded in CELT from its first frame it costs less than the hybrid coding
    /// the analysis starts every call with, and that start is what hundreds of calls set up in
    /// one second (`wakeline load`, `listen --mic tone:HZ`) spend most of their CPU on.
    pub fn encoder_for_source(&self) -> EncoderConfig {
        let mut encoder = self.encoder;
        if encoder.signal == OpusSignal::Auto && matches!(self.source, AudioSource::Tone(_)) {
            encoder.signal = OpusSignal::Music;
        }
        encoder
    }

    /// The file call `call` records to.
    pub fn record_path(&self, call: CallHandle) -> Option<PathBuf> {
        let path = self.record.as_ref()?;
        if !self.record_per_call {
            return Some(path.clone());
        }
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        let name = match path.extension() {
            Some(ext) => format!("{stem}-{}.{}", call.number(), ext.to_string_lossy()),
            None => format!("{stem}-{}", call.number()),
        };
        Some(path.with_file_name(name))
    }
}

impl Default for MediaOptions {
    fn default() -> Self {
        MediaOptions {
            source: AudioSource::Default,
            sink: AudioSink::Default,
            record: None,
            encoder: EncoderConfig::default(),
            audio: AudioConfig::default(),
            latching: Default::default(),
            record_per_call: false,
            expect_tone: None,
            audio_session: super::AudioSession::Automatic,
        }
    }
}

/// Commands to a running media task.
#[derive(Debug)]
pub(crate) enum MediaCtl {
    /// The SDP changed (re-INVITE: hold, resume, new address or codec).
    Update(Negotiated),
    /// Send these DTMF digits (RFC 4733); the reply comes when the last one is on the wire.
    Dtmf(String, oneshot::Sender<Result<(), crate::Error>>),
    /// Mute (`true`) or unmute our audio.
    Mute(bool),
    /// The app's audio session became active (`true`: open the audio I/O) or inactive.
    Session(bool),
    /// The network changed: use these sockets from now on (a re-INVITE announces them).
    Rebind(MediaSockets),
    /// Hang-up: send RTCP BYE and finish.
    Stop,
}

/// What the media task tells the driver while it runs.
#[derive(Debug)]
pub(crate) enum MediaNote {
    /// A DTMF digit from the peer.
    Dtmf(CallHandle, char),
    /// The periodic snapshot.
    Stats(CallHandle, Box<MediaSnapshot>),
    /// The task finished, with its last snapshot (taken as it stopped; sent with the report
    /// so that a hang-up wakes the driver once).
    Done(CallHandle, Box<MediaReport>, Option<Box<MediaSnapshot>>),
}

/// The driver's handle on a running media task.
#[derive(Debug)]
pub(crate) struct MediaTask {
    pub ctl: CtlSender,
}

/// The sending end of a media task's commands. Commands are few (a `Stop` per call, and a
/// re-INVITE's update, a digit, a mute now and then), so each goes boxed: the channel's
/// blocks (32 slots each, the first allocated with the channel) hold pointers, not whole
/// commands, which made the channel most of a call's set-up allocation.
#[derive(Debug, Clone)]
pub(crate) struct CtlSender(mpsc::UnboundedSender<Box<MediaCtl>>);

impl CtlSender {
    /// Hands `ctl` to the task; gives it back when the task has ended.
    pub(crate) fn send(&self, ctl: MediaCtl) -> Result<(), Box<MediaCtl>> {
        self.0.send(Box::new(ctl)).map_err(|e| e.0)
    }
}

/// Starts the media task of `call`.
pub(crate) fn spawn(
    call: CallHandle,
    sockets: MediaSockets,
    negotiated: Negotiated,
    options: MediaOptions,
    tap: Tap,
    notes: mpsc::UnboundedSender<MediaNote>,
    home: Option<&Arc<Home>>,
) -> MediaTask {
    let (ctl, rx) = mpsc::unbounded_channel();
    let placed = super::media_rt::place(sockets.place(), home);
    let home = match &placed {
        Placed::Home(h) => Some(Arc::clone(h)),
        Placed::Worker(_) => None,
    };
    super::media_rt::spawn(placed, async move {
        let mut notes = Notes {
            tx: notes,
            last: None,
            home,
        };
        // The task's state is boxed here, on the media worker at its first poll: it is
        // allocated and freed on that one thread, and what crosses threads at the spawn is
        // only the arguments.
        let report = Box::pin(run(call, sockets, negotiated, options, tap, rx, &mut notes)).await;
        let _ = notes
            .tx
            .send(MediaNote::Done(call, Box::new(report), notes.last));
    });
    MediaTask {
        ctl: CtlSender(ctl),
    }
}

/// Where a media task's notes go (its last snapshot waits to go with the report), and the
/// home it runs at, which takes its sockets when it ends.
struct Notes {
    tx: mpsc::UnboundedSender<MediaNote>,
    last: Option<Box<MediaSnapshot>>,
    home: Option<Arc<Home>>,
}

/// Writes the far end's decoded audio to a WAV file, from the pipeline's record tap.
pub(super) struct Recorder {
    ring: rtrb::Consumer<i16>,
    wav: hound::WavWriter<std::io::BufWriter<std::fs::File>>,
    failed: Option<String>,
}

impl Recorder {
    fn open(path: &PathBuf) -> Result<(Recorder, rtrb::Producer<i16>), hound::Error> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: crate::media::codec::PCM_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let wav = hound::WavWriter::create(path, spec)?;
        let (tx, ring) = rtrb::RingBuffer::new(crate::media::codec::PCM_RATE as usize);
        Ok((
            Recorder {
                ring,
                wav,
                failed: None,
            },
            tx,
        ))
    }

    fn drain(&mut self) {
        while let Ok(s) = self.ring.pop() {
            if self.failed.is_none() {
                if let Err(e) = self.wav.write_sample(s) {
                    tracing::warn!("--record: {e}");
                    self.failed = Some(format!("record: {e}"));
                }
            }
        }
    }

    /// Closes the file; `Some` says why the recording is incomplete.
    fn finish(mut self) -> Option<String> {
        self.drain();
        if let Err(e) = self.wav.finalize() {
            tracing::warn!("--record: {e}");
            return self.failed.or(Some(format!("record: {e}")));
        }
        self.failed
    }
}

/// An RTCP CNAME: 12 random characters of `[a-z0-9]` and `@wakeline` (RFC 7022: random,
/// per call), drawn from one random 64-bit number rather than one draw per character.
fn random_cname() -> String {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    const SUFFIX: &str = "@wakeline";
    let mut bits: u64 = rand::random();
    let mut cname = String::with_capacity(12 + SUFFIX.len());
    for _ in 0..12 {
        cname.push(char::from(ALPHABET[(bits % 36) as usize]));
        bits /= 36;
    }
    cname.push_str(SUFFIX);
    cname
}

fn report_error(error: String) -> MediaReport {
    MediaReport {
        stats: None,
        capture: Default::default(),
        playback: Default::default(),
        duration: Duration::ZERO,
        error: Some(error),
        srtp: None,
    }
}

/// Opens the call's audio now when that cannot block (tones, silence, null); `None` when it
/// must be opened off the runtime ([`open_audio`]).
fn open_audio_inline(
    options: &MediaOptions,
) -> Option<Result<(audio::AudioStreams, PacedAudio), String>> {
    if audio::open_blocks(&options.source, &options.sink) {
        return None;
    }
    let opened = audio::open(&options.source, &options.sink, &options.audio);
    Some(opened.map_err(|e| format!("audio: {e}")))
}

/// Opens the call's audio: on the runtime when that cannot block (tones, silence, null),
/// otherwise on the blocking pool.
pub(super) async fn open_audio(
    options: &MediaOptions,
) -> Result<(audio::AudioStreams, PacedAudio), String> {
    let (source, sink, acfg) = (
        options.source.clone(),
        options.sink.clone(),
        options.audio.clone(),
    );
    let opened = if audio::open_blocks(&source, &sink) {
        match tokio::task::spawn_blocking(move || audio::open(&source, &sink, &acfg)).await {
            Ok(r) => r,
            Err(e) => return Err(format!("audio: {e}")),
        }
    } else {
        audio::open(&source, &sink, &acfg)
    };
    opened.map_err(|e| format!("audio: {e}"))
}

/// [`Closing::close_off_runtime`] under way.
type ClosingOff = std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send>>;

/// What a call leaves to close when it ends: devices (their callback threads), the paced
/// backends (a WAV sink) and the recorder.
pub(super) struct Closing {
    pub(super) handle: AudioHandle,
    pub(super) paced: PacedAudio,
    pub(super) recorder: Option<Recorder>,
}

impl Closing {
    /// Closes everything (blocking when a device or file is involved); `Some` says why the
    /// recording is incomplete.
    fn close(self) -> Option<String> {
        drop(self.handle);
        if let Err(e) = self.paced.finish() {
            tracing::warn!("WAV sink: {e}");
        }
        self.recorder.and_then(Recorder::finish)
    }

    /// True when closing can block (devices, files).
    fn close_blocks(&self) -> bool {
        self.handle.has_devices() || self.paced.finish_blocks() || self.recorder.is_some()
    }

    /// Closes now when that cannot block (`Ok`, what [`close`](Self::close) says); otherwise
    /// hands back the boxed [`close_off_runtime`](Self::close_off_runtime) to await (the
    /// task keeps a pointer, not the closing's state, while it waits).
    fn close_inline(self) -> Result<Option<String>, ClosingOff> {
        if self.close_blocks() {
            Err(Box::pin(self.close_off_runtime()))
        } else {
            Ok(self.close())
        }
    }

    /// Closes off the runtime when closing can block (the report waits for files to be
    /// complete; the runtime's worker does not), inline otherwise.
    pub(super) async fn close_off_runtime(self) -> Option<String> {
        if self.close_blocks() {
            match tokio::task::spawn_blocking(move || self.close()).await {
                Ok(e) => e,
                Err(e) => Some(format!("closing audio: {e}")),
            }
        } else {
            self.close()
        }
    }
}

/// Reads one datagram from a readable media socket and hands it to the packet tap and the pipeline.
fn deliver(socket: &UdpSocket, tap: &Tap, pipeline: &mut MediaPipeline) -> std::io::Result<()> {
    recv_one(socket, |from, bytes| {
        tap.udp(false, socket, from, bytes);
        pipeline.handle_datagram(Instant::now(), from, bytes)
    })
}

async fn run(
    call: CallHandle,
    sockets: MediaSockets,
    negotiated: Negotiated,
    options: MediaOptions,
    tap: Tap,
    mut ctl: mpsc::UnboundedReceiver<Box<MediaCtl>>,
    notes: &mut Notes,
) -> MediaReport {
    // Registered once, with the reactor of the media worker this task runs on.
    let mut sockets = match sockets.register() {
        Ok(s) => s,
        Err(e) => return report_error(format!("media sockets: {e}")),
    };
    let mut active = options.audio_session == super::AudioSession::Automatic;
    let opened = {
        let backends = super::media_session::backends(&options, active);
        match open_audio_inline(&backends) {
            Some(opened) => opened,
            // Boxed: the task keeps a pointer, not the opening's state, while it waits.
            None => Box::pin(open_audio(&backends)).await,
        }
    };
    let (streams, paced) = match opened {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(?call, "{e}");
            return report_error(e);
        }
    };
    let started = Instant::now();
    let cfg = PipelineConfig {
        negotiated: negotiated.clone(),
        encoder: options.encoder_for_source(),
        latching: options.latching,
        cname: random_cname(),
        seed: rand::random(),
    };
    let crate::media::audio::AudioStreams {
        capture,
        playback,
        mut capture_stats,
        mut playback_stats,
        handle: audio_handle,
        ..
    } = streams;
    let mut closing = Closing {
        handle: audio_handle,
        paced,
        recorder: None,
    };
    // Boxed: the task's future is allocated and moved whole when it is spawned, and the
    // pipeline would be most of it (boxed before the match: a scrutinee holding the pipeline
    // would stay in the task's state across the error arm's await).
    let made = MediaPipeline::new(cfg, capture, playback, started, SystemTime::now());
    let mut pipeline = match made.map(Box::new) {
        Ok(p) => p,
        Err(e) => {
            if let Err(off) = closing.close_inline() {
                off.await;
            }
            return report_error(format!("media: {e}"));
        }
    };
    // Playout follows the playback device: a frame whenever its ring runs below one period.
    pipeline.set_device_period(Duration::from_millis(u64::from(options.audio.period_ms)));
    if let Some(hz) = options.expect_tone {
        pipeline.set_tone_detect(hz);
    }
    let mut record_error = None;
    if let Some(path) = options.record_path(call) {
        match Recorder::open(&path) {
            Ok((r, tap)) => {
                pipeline.set_record(tap);
                closing.recorder = Some(r);
            }
            Err(e) => {
                tracing::warn!("--record {}: {e}", path.display());
                record_error = Some(format!("record {}: {e}", path.display()));
            }
        }
    }
    let mut srtp = negotiated.srtp.as_ref().map(|k| k.suite);
    // The paced backends run on this task's clock; the first playout frame is queued before
    // the sink's first tick.
    let mut clock = PacedClock::new(&closing.paced, started);
    let mut skipped_counted = 0;
    // Encoder frames per paced period (both 20 ms by default).
    let clock_frames =
        (closing.paced.period().as_millis() / pipeline.period().as_millis().max(1)).max(1) as u64;
    pipeline.handle_timeout(started);
    let mut rtcp_mux = negotiated.rtcp_mux;
    let mut remote_rtcp = negotiated.remote_rtcp;
    let mut stopping = false;
    let mut muted = false;
    let mut next_snapshot = started + FIRST_SNAPSHOT;
    let mut dtmf_waiting: Vec<oneshot::Sender<Result<(), crate::Error>>> = Vec::new();
    loop {
        let due = if clock.complete {
            pipeline.poll_timeout_clocked()
        } else {
            pipeline.poll_timeout()
        };
        let deadline = due.map(|t| clock.next.map_or(t, |c| c.min(t)).min(next_snapshot));
        tokio::select! {
            r = sockets.rtp.readable() => {
                if let Err(e) = r.and_then(|()| deliver(&sockets.rtp, &tap, &mut pipeline)) {
                    tracing::debug!(?call, "rtp recv: {e}");
                }
            }
            r = sockets.rtcp.readable() => {
                if let Err(e) = r.and_then(|()| deliver(&sockets.rtcp, &tap, &mut pipeline)) {
                    tracing::debug!(?call, "rtcp recv: {e}");
                }
            }
            _ = sleep_until(deadline) => {
                let now = Instant::now();
                // Each period owed: the devices' turn, then the pipeline's (bounded catch-up).
                while clock.due(now) {
                    if clock.source_ready() {
                        closing.paced.tick();
                    } else {
                        closing.paced.tick_sink();
                    }
                    pipeline.handle_timeout(now);
                }
                if clock.skipped > skipped_counted && closing.paced.source.is_some() {
                    // Periods the paced source never produced count as dropped frames.
                    let frames = (clock.skipped - skipped_counted) * clock_frames;
                    pipeline.note_capture_lost(frames);
                    skipped_counted = clock.skipped;
                }
                pipeline.handle_timeout(now);
            }
            c = ctl.recv() => match c.map(|c| *c) {
                Some(MediaCtl::Update(n)) => {
                    rtcp_mux = n.rtcp_mux;
                    remote_rtcp = n.remote_rtcp;
                    srtp = n.srtp.as_ref().map(|k| k.suite);
                    if let Err(e) = pipeline.update(n) {
                        tracing::warn!(?call, "media update: {e}");
                    }
                }
                Some(MediaCtl::Dtmf(digits, done)) => {
                    let queued = digits
                        .chars()
                        .try_for_each(|d| pipeline.send_dtmf(Instant::now(), d));
                    match queued {
                        Ok(()) => dtmf_waiting.push(done),
                        Err(e) => {
                            tracing::warn!(?call, "dtmf {digits:?}: {e}");
                            let _ = done.send(Err(crate::Error::Media(format!("DTMF: {e}"))));
                        }
                    }
                }
                Some(MediaCtl::Rebind(new)) => match new.register() {
                    Ok(new) => sockets = new,
                    Err(e) => tracing::warn!(?call, "media rebind: {e}"),
                },
                Some(MediaCtl::Mute(on)) => {
                    muted = on;
                    pipeline.set_muted(on);
                }
                Some(MediaCtl::Session(on)) if on != active => {
                    let stats = (&mut capture_stats, &mut playback_stats);
                    // Boxed: rare, and the task need not be as large as its state.
                    let switched = Box::pin(super::media_session::switch(
                        &options, on, &mut pipeline, &mut closing, &mut clock, stats,
                    ));
                    match switched.await {
                        Ok(()) => active = on,
                        Err(e) => tracing::warn!(?call, "audio session: {e}"),
                    }
                }
                Some(MediaCtl::Session(_)) => {}
                Some(MediaCtl::Stop) | None => {
                    pipeline.bye(Instant::now());
                    stopping = true;
                }
            },
        }
        while let Some(t) = pipeline.poll_transmit() {
            let socket = if !rtcp_mux && t.destination == remote_rtcp {
                &sockets.rtcp
            } else {
                &sockets.rtp
            };
            tap.udp(true, socket, t.destination, &t.contents);
            if let Err(e) = socket.send_to(&t.contents, t.destination).await {
                tracing::debug!(?call, "send to {}: {e}", t.destination);
            }
            pipeline.recycle(t.contents);
        }
        while let Some(ev) = pipeline.poll_event() {
            match ev {
                MediaEvent::Dtmf(d) => {
                    let _ = notes.tx.send(MediaNote::Dtmf(call, d));
                }
                other => tracing::debug!(?call, "media: {other:?}"),
            }
        }
        if let Some(r) = closing.recorder.as_mut() {
            r.drain();
        }
        let now = Instant::now();
        if now >= next_snapshot || stopping {
            next_snapshot = now + SNAPSHOT_EVERY;
            let (input, output) = pipeline.take_levels();
            let snapshot = MediaSnapshot {
                stats: pipeline.stats(),
                input_level: input.rms,
                output_level: output.rms,
                input_peak: input.peak,
                output_peak: output.peak,
                elapsed: now.saturating_duration_since(started),
                muted,
            };
            if stopping {
                notes.last = Some(Box::new(snapshot));
            } else {
                let _ = notes.tx.send(MediaNote::Stats(call, Box::new(snapshot)));
            }
        }
        if !dtmf_waiting.is_empty() && !pipeline.dtmf_busy() {
            // The last digit's final packets are out.
            for done in dtmf_waiting.drain(..) {
                let _ = done.send(Ok(()));
            }
        }
        if stopping {
            break;
        }
    }
    for done in dtmf_waiting {
        let why = "the call ended before its DTMF digits were sent".to_string();
        let _ = done.send(Err(crate::Error::Media(why)));
    }
    // Idle on this worker (or at home) for a later call, still registered (`media_pool.rs`).
    super::media_rt::keep_idle(sockets, notes.home.as_deref());
    let duration = started.elapsed();
    let stats = pipeline.stats();
    let closed = match closing.close_inline() {
        Ok(closed) => closed,
        Err(off) => off.await,
    };
    record_error = record_error.or(closed);
    MediaReport {
        stats: Some(stats),
        capture: capture_stats.snapshot(),
        playback: playback_stats.snapshot(),
        duration,
        error: record_error,
        srtp,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cnames_are_random_tokens_at_wakeline() {
        let a = random_cname();
        let (token, host) = a.split_at(12);
        assert_eq!(host, "@wakeline");
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_ne!(a, random_cname());
    }

    #[test]
    fn a_command_to_an_ended_task_comes_back() {
        let (tx, rx) = mpsc::unbounded_channel();
        let ctl = CtlSender(tx);
        assert!(ctl.send(MediaCtl::Mute(true)).is_ok());
        drop(rx);
        let back = ctl.send(MediaCtl::Stop).map_err(|c| *c);
        assert!(matches!(back, Err(MediaCtl::Stop)));
    }

    #[test]
    fn the_media_task_state_stays_small() {
        // The task's state is allocated for every call: the pipeline is boxed, and so are
        // the rare waits (audio opened or closed off the runtime, an audio-session switch).
        let sockets = MediaSockets::reserve("127.0.0.1".parse().unwrap()).unwrap();
        let n = Negotiated::sendrecv(
            crate::signaling::sdp::Codec::Opus,
            "127.0.0.1:4000".parse().unwrap(),
            "127.0.0.1:5000".parse().unwrap(),
        );
        let (tx, _) = mpsc::unbounded_channel();
        let mut notes = Notes {
            tx,
            last: None,
            home: None,
        };
        let (_, rx) = mpsc::unbounded_channel();
        let call = CallHandle::new(0, 1);
        let task = run(
            call,
            sockets,
            n,
            MediaOptions::default(),
            Tap::default(),
            rx,
            &mut notes,
        );
        let size = std::mem::size_of_val(&task);
        assert!(size < 4096, "{size} bytes");
    }

    #[test]
    fn a_tone_is_coded_as_music_unless_the_settings_say_otherwise() {
        let tone = MediaOptions {
            source: AudioSource::Tone(440.0),
            ..MediaOptions::default()
        };
        assert_eq!(tone.encoder_for_source().signal, OpusSignal::Music);
        let mut voice = tone.clone();
        voice.encoder.signal = OpusSignal::Voice;
        assert_eq!(voice.encoder_for_source().signal, OpusSignal::Voice);
        let file = MediaOptions {
            source: AudioSource::Wav("speech.wav".into()),
            ..MediaOptions::default()
        };
        assert_eq!(file.encoder_for_source().signal, OpusSignal::Auto);
        // Everything else passes through.
        assert_eq!(
            EncoderConfig {
                signal: OpusSignal::Auto,
                ..tone.encoder_for_source()
            },
            tone.encoder
        );
    }
}

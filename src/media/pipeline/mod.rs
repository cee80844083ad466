//! One call's media, end to end and sans-IO: capture ring → encoder → RTP out, and RTP in →
//! jitter buffer → decoder → playback ring, plus RFC 4733 DTMF and RTCP.
//!
//! The driver owns the UDP socket(s) and a timer, and calls:
//! - [`MediaPipeline::handle_datagram`] for every datagram received;
//! - [`MediaPipeline::handle_timeout`] when [`MediaPipeline::poll_timeout`] is due (every
//!   [`POLL_INTERVAL`] or sooner: it looks at both rings, sends what was captured, plays out what
//!   the device needs, and runs the RTCP timer); tests may call [`MediaPipeline::handle_tick`]
//!   (one fixed frame tick) directly instead;
//! - [`MediaPipeline::poll_transmit`] until `None` after any of the above, sending each datagram
//!   and handing its buffer back with [`MediaPipeline::recycle`] (optional: without it the
//!   pipeline allocates a fresh buffer per packet);
//! - [`MediaPipeline::poll_event`] for DTMF digits and the peer's BYE.
//!
//! **Send-side timing.** A frame goes out as soon as it is complete in the capture ring (the
//! capture device is the send clock), so it never waits for a timer. Every frame slot advances
//! the RTP timestamp by exactly one frame, whether a packet goes out or not. A frame that comes
//! late in one piece (a descheduled device thread) keeps its timestamp. When no frame has come
//! for [`UNDERRUN_FRAMES`] frame periods after the last one (device stalled), one slot per
//! period is skipped on our clock (the timestamp keeps pace, the far end sees a gap and
//! conceals) and the next packet carries the marker bit. When the ring has accumulated more than
//! [`MAX_CAPTURE_BACKLOG`] frames (device clock faster than ours), the oldest frames are
//! discarded so the mouth-to-ear delay stays bounded. On hold (our direction does not send, or
//! the peer's address is `0.0.0.0`) captured audio is read and discarded. Opus DTX frames
//! (nothing to send) also just advance the timestamp.
//!
//! **Receive-side timing.** Playout follows the playback device: whenever the playback ring
//! holds less than one device period ([`MediaPipeline::set_device_period`]), the pipeline pops
//! the jitter buffer and pushes one frame (`ptime × 48` samples): decoded audio, FEC-recovered
//! or concealed audio, or silence while the jitter buffer primes. The decoded frame thus waits
//! at most one device period in the ring, and the jitter buffer measures its delay up to the
//! moment the device needs the frame. If the device stops taking audio, the jitter buffer keeps
//! draining on our clock (the audio goes to the record tap only) so that it does not back up.
//! The peer is assumed to packetise with the same ptime (one packet per frame).
//!
//! When Opus in-band FEC is negotiated the jitter buffer starts at one frame of delay like any
//! other codec, and its floor rises to two frames once a packet is lost, so that the packet
//! after a lost one has usually arrived when the lost one is due and its FEC data can rebuild
//! it ([`Decoder::decode_fec`]); until then (and for other codecs) the decoder conceals.
//!
//! **Steady state does not allocate**: the frame, payload and PCM buffers are allocated once,
//! at their first use (the first frame sent, the first frame decoded or concealed: a call that
//! ends before any audio flows never allocates them), RTP datagrams reuse recycled buffers (a
//! pool filled at the first packet), and the transmit queue has a fixed capacity for one
//! tick's packets. (RTCP compounds, every few seconds, are built by the
//! session and do allocate.)

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::media::codec::dtmf::{DtmfError, DtmfReceiver, DtmfSender};
use crate::media::codec::{
    make_decoder, make_encoder, CodecError, Decoder, Encoder, EncoderConfig, MAX_FRAME_SAMPLES48,
    MAX_PAYLOAD, SAMPLES_PER_MS,
};
use crate::media::jitter::{JitterBuffer, JitterConfig, Playout};
use crate::media::quality;
use crate::media::session::{
    MediaSession, MediaStats, Received, SessionConfig, SessionError, Transmit,
};
use crate::signaling::sdp::{Codec, Negotiated};

/// Captured frames beyond this many are discarded at a tick (bounded send latency).
pub const MAX_CAPTURE_BACKLOG: usize = 3;
/// Length of one DTMF digit (ms).
pub const DTMF_TONE_MS: u32 = 100;
/// Pause between DTMF digits (ms).
pub const DTMF_GAP_MS: u32 = 60;
/// Ticks run back to back after a stall before the pipeline gives up and resyncs.
pub const MAX_CATCH_UP: u32 = 5;
/// Recycled datagram buffers kept for reuse.
const POOL: usize = 8;
/// How often [`MediaPipeline::poll_timeout`] asks to look at the rings.
pub const POLL_INTERVAL: Duration = Duration::from_millis(2);
/// Frame periods without a captured frame after which the send side skips slots on its clock.
pub const UNDERRUN_FRAMES: u32 = 3;
/// Device periods (at least frame periods) without playout need after which the playback device
/// counts as stalled and the jitter buffer drains on our clock.
pub const STALL_PERIODS: u32 = 4;
/// The playback device period assumed until [`MediaPipeline::set_device_period`] is called
/// (`AudioConfig`'s default).
pub const DEFAULT_DEVICE_PERIOD: Duration = Duration::from_millis(20);

/// Configuration of a [`MediaPipeline`].
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// What SDP agreed.
    pub negotiated: Negotiated,
    /// Local encoder preferences.
    pub encoder: EncoderConfig,
    /// When media may latch to a source other than the SDP address.
    pub latching: crate::media::session::Latching,
    /// RTCP SDES CNAME.
    pub cname: String,
    /// Seed for SSRC, sequence and timestamp origins and RTCP timing (use a random one in
    /// production, a fixed one in tests).
    pub seed: u64,
}

/// Why a pipeline could not be built or a request failed (API misuse or configuration; never
/// the peer's fault: bad input from the network is counted, not returned).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The codec could not be built with these parameters.
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
    /// The RTP session refused.
    #[error("session: {0}")]
    Session(#[from] SessionError),
    /// Not a DTMF digit.
    #[error("dtmf: {0}")]
    Dtmf(#[from] DtmfError),
    /// telephone-event was not negotiated.
    #[error("telephone-event was not negotiated")]
    NoTelephoneEvent,
}

/// Something the application should know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaEvent {
    /// The peer sent a DTMF digit (RFC 4733), reported once per event.
    Dtmf(char),
    /// The peer sent an RTCP BYE.
    RemoteBye,
}

/// A call's media statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallStats {
    /// Codec in use (SDP encoding name).
    pub codec: &'static str,
    /// RTP packets sent (audio and telephone-event).
    pub rtp_sent: u64,
    /// RTP packets received from the peer.
    pub rtp_received: u64,
    /// RTP payload octets sent.
    pub bytes_sent: u64,
    /// RTP payload octets received.
    pub bytes_received: u64,
    /// Packets lost from the peer (RFC 3550 cumulative, may be negative with duplicates).
    pub lost: i64,
    /// Fraction of the peer's packets lost over the last RTCP interval, 0.0–1.0.
    pub fraction_lost: f64,
    /// Interarrival jitter of the peer's stream (RFC 3550), ms.
    pub jitter_ms: f64,
    /// Round-trip time from RTCP, ms, once known.
    pub rtt_ms: Option<f64>,
    /// RTCP report blocks the peer sent about our stream (each one shows our RTP arrived).
    pub remote_reports: u64,
    /// Frames concealed (lost, late, buffer growth, silence gaps).
    pub concealed_frames: u64,
    /// The same in milliseconds of audio.
    pub concealed_ms: f64,
    /// Lost frames rebuilt from the next packet's in-band FEC.
    pub fec_recovered: u64,
    /// Current jitter-buffer delay, ms.
    pub jitter_buffer_ms: f64,
    /// Mean jitter-buffer delay over the ticks that played audio, ms.
    pub jitter_buffer_mean_ms: f64,
    /// Packets that arrived after their playout time.
    pub late: u64,
    /// Duplicate packets.
    pub duplicates: u64,
    /// Datagrams from sources other than the peer.
    pub dropped_foreign: u64,
    /// What the RTP source guard refused (foreign, malformed, duplicate, late, flood...).
    pub rtp_guard: crate::media::session::RtpGuard,
    /// Packets of ours the peer reports lost (RTCP).
    pub remote_lost: i64,
    /// Payloads the decoder rejected (concealed instead).
    pub decode_errors: u64,
    /// Frames the encoder failed on (not sent).
    pub encode_errors: u64,
    /// Samples dropped because the playback ring was full.
    pub playback_overflow: u64,
    /// Ticks without a full captured frame (nothing sent).
    pub capture_underruns: u64,
    /// Captured frames discarded to bound the backlog.
    pub capture_dropped: u64,
    /// DTMF digits sent (completed or in progress).
    pub dtmf_sent: u64,
    /// DTMF digits received.
    pub dtmf_received: u64,
    /// Estimated MOS (see [`crate::media::quality`]); `None` while no audio packet has been
    /// received (a MOS of silence would be a comforting lie).
    pub mos: Option<f64>,
    /// The expected tone in the played audio (`None`: not looked for; see
    /// [`MediaPipeline::set_tone_detect`]).
    pub tone: Option<crate::media::tone_detect::ToneStats>,
}

/// Pipeline counters not kept by the session or the jitter buffer.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    /// Audio (not telephone-event) packets handed to the jitter buffer.
    audio_received: u64,
    concealed: u64,
    fec_recovered: u64,
    decode_errors: u64,
    encode_errors: u64,
    playback_overflow: u64,
    capture_underruns: u64,
    capture_dropped: u64,
    dtmf_sent: u64,
    dtmf_received: u64,
    delay_sum_ms: f64,
    delay_ticks: u64,
    /// Late/duplicate counts of replaced jitter buffers (codec change).
    late: u64,
    duplicates: u64,
}

/// One call's media; see the module documentation.
pub struct MediaPipeline {
    cfg: PipelineConfig,
    session: MediaSession,
    /// Statistics of sessions replaced by [`MediaPipeline::update`].
    prior: MediaStats,
    jitter: JitterBuffer,
    encoder: Box<dyn Encoder>,
    decoder: Box<dyn Decoder>,
    capture: rtrb::Consumer<i16>,
    playback: rtrb::Producer<i16>,
    record: Option<rtrb::Producer<i16>>,
    /// One captured frame ([`MAX_FRAME_SAMPLES48`], empty until the first frame to send).
    frame: Vec<i16>,
    /// One encoded payload ([`MAX_PAYLOAD`], empty until the first frame to send).
    payload: Vec<u8>,
    /// Decoded PCM of one tick ([`MAX_FRAME_SAMPLES48`], empty until the first frame to
    /// decode or conceal: silence needs none).
    pcm: Vec<i16>,
    /// RTP datagrams to send, and spare buffers ([`POOL`] of them from the first packet).
    out: VecDeque<Transmit>,
    pool: Vec<Vec<u8>>,
    dtmf_tx: DtmfSender,
    dtmf_rx: DtmfReceiver,
    events: VecDeque<MediaEvent>,
    period: Duration,
    /// The next [`MediaPipeline::handle_timeout`] to look at the rings.
    next_poll: Instant,
    /// Send slots are skipped on our clock from here on when no frame was captured.
    send_due: Instant,
    /// Playout drains on our clock from here on when the device needs nothing.
    play_due: Instant,
    /// The playback device's period, and the same in samples: the ring level below which the
    /// device needs another frame.
    device_period: Duration,
    low_water: usize,
    /// Opus FEC: the jitter-buffer floor to raise to once loss is seen (`None`: no FEC, or
    /// already raised).
    fec_min_delay: Option<u32>,
    /// The next audio packet starts a talk spurt.
    marker: bool,
    /// RMS level (0.0–1.0) of the last frame captured / played.
    /// Input (captured) and output (played) level meters since the last reading.
    meters: (meter::Meter, meter::Meter),
    /// Send silence instead of the captured audio.
    muted: bool,
    bye_reported: bool,
    /// Telephone events are playing out until then: the audio gap they leave is neither loss
    /// nor concealment, and the packet after it carries no FEC for them.
    dtmf_quiet_until: Option<Instant>,
    /// Looks for a known tone in the played audio.
    tone: Option<crate::media::tone_detect::ToneDetector>,
    closed: bool,
    counters: Counters,
    /// `now` and wall clock at construction, and the latest `now` seen.
    origin: (Instant, SystemTime),
    last_now: Instant,
}

impl std::fmt::Debug for MediaPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaPipeline")
            .field("codec", &self.cfg.negotiated.codec)
            .field("direction", &self.cfg.negotiated.direction)
            .field("next_poll", &self.next_poll)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// Codec objects and timing derived from a [`Negotiated`].
struct CodecSet {
    encoder: Box<dyn Encoder>,
    decoder: Box<dyn Decoder>,
    jitter: JitterBuffer,
    dtmf_tx: DtmfSender,
    period: Duration,
    fec_min_delay: Option<u32>,
}

fn codec_set(n: &Negotiated, enc: &EncoderConfig) -> Result<CodecSet, MediaError> {
    let encoder = make_encoder(n, enc)?;
    let decoder = make_decoder(n)?;
    // Frames follow the sender's frame length; the jitter buffer plays one frame per pop.
    let frame_ms = (encoder.frame_samples48() / SAMPLES_PER_MS) as u32;
    let jc = JitterConfig::for_clock(decoder.rtp_clock(), frame_ms);
    // In-band FEC needs the packet after a loss to be here when the lost one is due: two
    // frames of delay, once loss shows that FEC is worth it.
    let fec_min_delay =
        (n.codec == Codec::Opus && n.opus_fec).then_some(jc.min_delay.max(2 * frame_ms));
    let jitter = JitterBuffer::new(jc);
    let dtmf_tx = DtmfSender::new(n.clock_rate, frame_ms, DTMF_TONE_MS, DTMF_GAP_MS);
    Ok(CodecSet {
        encoder,
        decoder,
        jitter,
        dtmf_tx,
        period: Duration::from_millis(u64::from(frame_ms)),
        fec_min_delay,
    })
}

fn session_for(cfg: &PipelineConfig, now: Instant, wall: SystemTime, salt: u64) -> MediaSession {
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ salt);
    MediaSession::new(
        SessionConfig {
            negotiated: cfg.negotiated.clone(),
            latching: cfg.latching,
            cname: cfg.cname.clone(),
        },
        now,
        wall,
        &mut rng,
    )
}

/// Adds the counters of `b` to `a` (gauges come from `b`).
fn accumulate(a: MediaStats, b: MediaStats) -> MediaStats {
    MediaStats {
        packets_sent: a.packets_sent + b.packets_sent,
        bytes_sent: a.bytes_sent + b.bytes_sent,
        packets_received: a.packets_received + b.packets_received,
        bytes_received: a.bytes_received + b.bytes_received,
        lost: a.lost + b.lost,
        dropped_foreign: a.dropped_foreign + b.dropped_foreign,
        dropped_invalid: a.dropped_invalid + b.dropped_invalid,
        remote_lost: a.remote_lost + b.remote_lost,
        remote_reports: a.remote_reports + b.remote_reports,
        rtt_ms: b.rtt_ms.or(a.rtt_ms),
        remote_bye: a.remote_bye || b.remote_bye,
        guard: a.guard + b.guard,
        ..b
    }
}

mod meter;
pub use meter::Level;
mod receive;
mod send;
mod stats;

impl MediaPipeline {
    /// Builds the pipeline at `now` (`wall` is the wall clock at `now`, for RTCP). The first
    /// [`handle_timeout`](Self::handle_timeout) is due at `now`. Fails when the codec cannot be
    /// built.
    pub fn new(
        cfg: PipelineConfig,
        capture: rtrb::Consumer<i16>,
        playback: rtrb::Producer<i16>,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Self, MediaError> {
        let set = codec_set(&cfg.negotiated, &cfg.encoder)?;
        let session = session_for(&cfg, now, wall, 0);
        Ok(MediaPipeline {
            session,
            prior: MediaStats::default(),
            jitter: set.jitter,
            encoder: set.encoder,
            decoder: set.decoder,
            capture,
            playback,
            record: None,
            // Allocated on first use (a call that never sends or decodes never pays for them).
            frame: Vec::new(),
            payload: Vec::new(),
            pcm: Vec::new(),
            out: VecDeque::with_capacity(POOL),
            pool: Vec::new(),
            dtmf_tx: set.dtmf_tx,
            dtmf_rx: DtmfReceiver::new(),
            events: VecDeque::with_capacity(16),
            period: set.period,
            next_poll: now,
            send_due: now + set.period * (UNDERRUN_FRAMES + 1),
            play_due: now + set.period * STALL_PERIODS,
            device_period: DEFAULT_DEVICE_PERIOD,
            low_water: samples48(DEFAULT_DEVICE_PERIOD),
            fec_min_delay: set.fec_min_delay,
            marker: true,
            meters: Default::default(),
            muted: false,
            bye_reported: false,
            dtmf_quiet_until: None,
            tone: None,
            closed: false,
            counters: Counters::default(),
            origin: (now, wall),
            last_now: now,
            cfg,
        })
    }

    /// Also pushes the decoded far-end audio (48 kHz mono) into `tap`, e.g. for recording.
    /// Samples that do not fit are dropped.
    pub fn set_record(&mut self, tap: rtrb::Producer<i16>) {
        self.record = Some(tap);
    }

    /// Looks for a tone at `hz` in every played frame (see [`CallStats::tone`]).
    pub fn set_tone_detect(&mut self, hz: f32) {
        self.tone = Some(crate::media::tone_detect::ToneDetector::new(
            hz,
            crate::media::codec::PCM_RATE,
        ));
    }

    /// Connects the pipeline to other audio backends mid-call (an audio session that starts or
    /// stops) and returns the ring ends it used until now. RTP and codec state carry on.
    pub fn replace_audio(
        &mut self,
        capture: rtrb::Consumer<i16>,
        playback: rtrb::Producer<i16>,
    ) -> (rtrb::Consumer<i16>, rtrb::Producer<i16>) {
        (
            std::mem::replace(&mut self.capture, capture),
            std::mem::replace(&mut self.playback, playback),
        )
    }

    /// The frame period (ptime).
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Tells the pipeline the playback device's period (how much audio it takes from the
    /// playback ring at once; default [`DEFAULT_DEVICE_PERIOD`]). Playout keeps at least this
    /// much in the ring and no more than needed: a frame is pushed whenever less remains.
    pub fn set_device_period(&mut self, period: Duration) {
        self.device_period = period;
        self.low_water = samples48(period).max(1);
    }

    /// The latest `now` seen and the matching wall-clock time.
    fn clock(&self) -> (Instant, SystemTime) {
        let (t0, wall0) = self.origin;
        (
            self.last_now,
            wall0 + self.last_now.saturating_duration_since(t0),
        )
    }

    fn seen(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
    }

    /// Runs one fixed frame tick at `now`: one send slot (one captured frame → encoder → RTP,
    /// a DTMF packet, or a skipped slot when less than a frame was captured) and one playout
    /// frame (jitter buffer → decoder → playback ring and record tap), whatever the ring
    /// levels. For tests and benchmarks that clock the pipeline themselves; a driver calls
    /// [`handle_timeout`](Self::handle_timeout) instead, which follows the devices.
    pub fn handle_tick(&mut self, now: Instant) {
        self.seen(now);
        if self.closed {
            return;
        }
        self.send_path(now);
        self.receive_path(now, true);
    }

    /// Input (captured, before mute) and output (played) levels over every sample since the
    /// last call: RMS and peak, 0.0–1.0 of full scale. Starts a new interval.
    pub fn take_levels(&mut self) -> (Level, Level) {
        (self.meters.0.take(), self.meters.1.take())
    }

    /// Counts `frames` captured frames that never reached the capture ring (a paced source
    /// whose clock fell too far behind skipped them) with the frames dropped at capture.
    pub fn note_capture_lost(&mut self, frames: u64) {
        self.counters.capture_dropped += frames;
    }

    /// Mutes (sends silence instead of) the captured audio; the input level still shows what the
    /// microphone hears.
    pub fn set_muted(&mut self, muted: bool) {
        self.muted = muted;
    }

    /// The next datagram to send now (RTP first, then RTCP), if any. Call until `None` after
    /// every other call. Datagrams to an unspecified address (RFC 2543 hold) are dropped.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.out.pop_front() {
            return Some(t);
        }
        while let Some(t) = self.session.poll_transmit() {
            if !t.destination.ip().is_unspecified() {
                return Some(t);
            }
        }
        None
    }

    /// Gives a sent datagram's buffer back for reuse (keeps the send path allocation-free).
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        // Until the first RTP packet fills the pool (an RTCP report may come first) a buffer
        // is not worth keeping.
        if self.pool.capacity() != 0 && self.pool.len() < POOL {
            buf.clear();
            self.pool.push(buf);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due: the next look at the rings
    /// ([`POLL_INTERVAL`] after the last) or the next RTCP report, whichever comes first.
    /// `None` after [`bye`](Self::bye).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        Some(match self.session.poll_timeout() {
            Some(t) => t.min(self.next_poll),
            None => self.next_poll,
        })
    }

    /// Like [`poll_timeout`](Self::poll_timeout) for a driver that fills the capture ring and
    /// drains the playback ring itself and calls [`handle_timeout`](Self::handle_timeout)
    /// right after: no look at the rings in between, only the next RTCP report, the next send
    /// slot to skip and the next playout to drain on our clock. `None` after [`bye`](Self::bye).
    #[must_use]
    pub fn poll_timeout_clocked(&self) -> Option<Instant> {
        let own = self.send_due.min(self.play_due);
        self.poll_timeout()
            .map(|_| self.session.poll_timeout().map_or(own, |t| t.min(own)))
    }

    /// Runs what is due at `now`: the RTCP timer, then the send side (every complete captured
    /// frame goes out; after a stall of the driver up to [`MAX_CATCH_UP`] + 1 frames at once)
    /// and the receive side (a frame into the playback ring for each device period it is
    /// short of). Calling it more often than [`poll_timeout`](Self::poll_timeout) asks is
    /// harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.seen(now);
        if self.closed {
            return;
        }
        self.session.handle_timeout(now);
        self.next_poll = now + POLL_INTERVAL;
        self.send_ready(now);
        self.play_needed(now);
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// Applies a new negotiation (re-INVITE). A direction change alone (hold/resume) keeps
    /// everything; a new address, payload type, codec, ptime or RTCP muxing starts a new RTP
    /// session (new SSRC, allowed by RFC 3550 §8) and, for a codec or ptime change, new codec
    /// state. Counters carry over. The new session's clock starts at the last `now` the
    /// pipeline was given. Fails (leaving the old state in place) when the new codec
    /// cannot be built.
    pub fn update(&mut self, negotiated: Negotiated) -> Result<(), MediaError> {
        let old = &self.cfg.negotiated;
        let codec_changed = old.codec != negotiated.codec
            || old.ptime != negotiated.ptime
            || old.clock_rate != negotiated.clock_rate
            || old.opus_fec != negotiated.opus_fec
            || old.opus_max_average_bitrate != negotiated.opus_max_average_bitrate
            || old.opus_max_playback_rate != negotiated.opus_max_playback_rate;
        let session_changed = codec_changed
            || old.payload_type != negotiated.payload_type
            || old.telephone_event != negotiated.telephone_event
            || old.remote_rtp != negotiated.remote_rtp
            || old.remote_rtcp != negotiated.remote_rtcp
            || old.rtcp_mux != negotiated.rtcp_mux
            || old.local_rtp != negotiated.local_rtp
            // A peer that re-keys SRTP in a re-INVITE: the old contexts cannot read it.
            || old.srtp != negotiated.srtp;
        let was_receiving = old.direction.receives();
        if codec_changed {
            let set = codec_set(&negotiated, &self.cfg.encoder)?;
            let js = self.jitter.stats();
            self.counters.late += js.late;
            self.counters.duplicates += js.duplicates;
            self.encoder = set.encoder;
            self.decoder = set.decoder;
            self.jitter = set.jitter;
            self.dtmf_tx = set.dtmf_tx;
            self.period = set.period;
            self.fec_min_delay = set.fec_min_delay;
        }
        self.cfg.negotiated = negotiated;
        if session_changed {
            self.prior = accumulate(self.prior, self.session.stats());
            let salt = self.prior.packets_sent ^ 0x9E37_79B9_7F4A_7C15;
            let (now, wall) = self.clock();
            self.session = session_for(&self.cfg, now, wall, salt);
            self.jitter.reset();
            self.dtmf_rx = DtmfReceiver::new();
        } else if !was_receiving && self.cfg.negotiated.direction.receives() {
            self.jitter.reset();
        }
        self.marker = true;
        Ok(())
    }

    /// Hangs up: queues a final RTCP report with BYE and stops ticking.
    pub fn bye(&mut self, now: Instant) {
        if !self.closed {
            self.session.bye(now);
            self.closed = true;
        }
    }
}

/// 48 kHz samples in `d`.
fn samples48(d: Duration) -> usize {
    (d.as_micros() * 48 / 1000) as usize
}

#[cfg(test)]
mod tests;

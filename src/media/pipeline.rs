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
//! **Steady state does not allocate**: the frame, payload and PCM buffers are allocated in
//! [`MediaPipeline::new`], RTP datagrams reuse recycled buffers, and the transmit queue has a
//! fixed capacity for one tick's packets. (RTCP compounds, every few seconds, are built by the
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
    /// Estimated MOS (see [`crate::media::quality`]).
    pub mos: f64,
}

/// Pipeline counters not kept by the session or the jitter buffer.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
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
    /// One captured frame.
    frame: Vec<i16>,
    /// One encoded payload.
    payload: Vec<u8>,
    /// Decoded PCM of one tick.
    pcm: Vec<i16>,
    /// RTP datagrams to send, and spare buffers.
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
    levels: (f32, f32),
    /// Send silence instead of the captured audio.
    muted: bool,
    bye_reported: bool,
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
        rtt_ms: b.rtt_ms.or(a.rtt_ms),
        remote_bye: a.remote_bye || b.remote_bye,
        guard: a.guard + b.guard,
        ..b
    }
}

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
            frame: vec![0; MAX_FRAME_SAMPLES48],
            payload: vec![0; MAX_PAYLOAD],
            pcm: vec![0; MAX_FRAME_SAMPLES48],
            out: VecDeque::with_capacity(POOL),
            pool: (0..POOL).map(|_| Vec::with_capacity(MAX_PAYLOAD)).collect(),
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
            levels: (0.0, 0.0),
            muted: false,
            bye_reported: false,
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

    /// Samples in the playback ring.
    fn playback_level(&self) -> usize {
        self.playback
            .buffer()
            .capacity()
            .saturating_sub(self.playback.slots())
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

    fn sends(&self) -> bool {
        let n = &self.cfg.negotiated;
        !self.closed && n.direction.sends() && !n.remote_rtp.ip().is_unspecified()
    }

    /// Handles one datagram received at `now` from `from` (RTP or RTCP, either socket). Media
    /// goes to the jitter buffer (when our direction receives), telephone events to the DTMF
    /// receiver; anything invalid or foreign is counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.seen(now);
        if self.closed {
            return;
        }
        match self.session.handle_datagram(now, from, bytes) {
            Received::Rtp {
                seq,
                ts,
                ssrc,
                pt,
                payload,
                ..
            } => {
                if Some(pt) == self.cfg.negotiated.telephone_event {
                    if let Ok(Some(d)) = self.dtmf_rx.handle_payload(payload, ts) {
                        self.counters.dtmf_received += 1;
                        self.events.push_back(MediaEvent::Dtmf(d));
                    }
                } else if self.cfg.negotiated.direction.receives() {
                    // Outcomes are counted by the jitter buffer.
                    let _ = self.jitter.push(now, seq, ts, ssrc, payload);
                }
            }
            Received::Rtcp => {
                let st = self.session.stats();
                // Tell the encoder how lossy our stream is, so Opus FEC spends bits to match;
                // never below the codec's default expectation.
                let percent = (st.remote_fraction_lost * 100.0).round() as u8;
                let _ = self.encoder.set_packet_loss_perc(
                    percent.max(crate::media::codec::opus::DEFAULT_LOSS_PERC),
                );
                if st.remote_bye && !self.bye_reported {
                    self.bye_reported = true;
                    self.events.push_back(MediaEvent::RemoteBye);
                }
            }
            Received::Dropped(_) => {}
        }
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

    /// Sends every complete captured frame; skips slots on our clock when the device stalls.
    fn send_ready(&mut self, now: Instant) {
        let frame = self.encoder.frame_samples48();
        let mut sent = 0;
        while self.capture.slots() >= frame && sent <= MAX_CATCH_UP {
            self.send_path(now);
            sent += 1;
            self.send_due = now + self.period * UNDERRUN_FRAMES;
        }
        let mut skipped = 0;
        while now >= self.send_due && skipped <= MAX_CATCH_UP {
            // Less than a frame in the ring: an underrun slot that keeps the timestamp moving.
            self.send_path(now);
            self.send_due += self.period;
            skipped += 1;
        }
        if now >= self.send_due {
            self.send_due = now + self.period;
        }
    }

    /// Plays out a frame whenever the device is about to run short; drains on our clock when
    /// it takes nothing.
    fn play_needed(&mut self, now: Instant) {
        let mut played = 0;
        while self.playback_level() < self.low_water && played <= MAX_CATCH_UP {
            self.receive_path(now, true);
            played += 1;
            self.play_due = now + self.period.max(self.device_period) * STALL_PERIODS;
        }
        let mut drained = 0;
        while now >= self.play_due && drained <= MAX_CATCH_UP {
            self.receive_path(now, false);
            self.play_due += self.period;
            drained += 1;
        }
        if now >= self.play_due {
            self.play_due = now + self.period;
        }
    }

    fn send_path(&mut self, now: Instant) {
        let frame = self.encoder.frame_samples48();
        let ts_step = self.encoder.rtp_ts_per_frame();
        let backlog = self.capture.slots() / frame;
        if backlog > MAX_CAPTURE_BACKLOG {
            let drop = (backlog - MAX_CAPTURE_BACKLOG) * frame;
            if let Ok(chunk) = self.capture.read_chunk(drop) {
                chunk.commit_all();
            }
            self.counters.capture_dropped += (backlog - MAX_CAPTURE_BACKLOG) as u64;
        }
        let have_frame = self
            .capture
            .pop_entire_slice(&mut self.frame[..frame])
            .is_ok();
        if have_frame {
            self.levels.0 = rms(&self.frame[..frame]);
            if self.muted {
                self.frame[..frame].fill(0);
            }
        }
        if !self.sends() {
            self.session.advance_timestamp(ts_step);
            self.marker = true;
            return;
        }
        if self.dtmf_tx.is_busy() {
            if let Some(pkt) = self.dtmf_tx.poll_packet(self.session.next_timestamp()) {
                if pkt.marker {
                    self.counters.dtmf_sent += 1;
                }
                if let Ok(rtp) =
                    self.session
                        .send_dtmf(now, &pkt.payload, pkt.timestamp, pkt.marker)
                {
                    let (dest, bytes) = (rtp.destination, rtp.contents);
                    queue(&mut self.out, &mut self.pool, dest, bytes);
                }
                self.session.advance_timestamp(ts_step);
                self.marker = true;
                return;
            }
        }
        if !have_frame {
            self.counters.capture_underruns += 1;
            self.session.advance_timestamp(ts_step);
            self.marker = true;
            return;
        }
        let n = match self.encoder.encode(&self.frame[..frame], &mut self.payload) {
            Ok(n) => n,
            Err(_) => {
                self.counters.encode_errors += 1;
                0
            }
        };
        if n == 0 {
            // DTX (or an encoder error): nothing this frame; the timestamp still moves.
            self.session.advance_timestamp(ts_step);
            self.marker = true;
            return;
        }
        if let Ok(rtp) = self
            .session
            .send_audio(now, &self.payload[..n], ts_step, self.marker)
        {
            let (dest, bytes) = (rtp.destination, rtp.contents);
            queue(&mut self.out, &mut self.pool, dest, bytes);
            self.marker = false;
        }
    }

    /// Pops and decodes one frame; pushes it into the playback ring when `to_device`.
    fn receive_path(&mut self, now: Instant, to_device: bool) {
        if let Some(floor) = self.fec_min_delay {
            if self.jitter.stats().lost > 0 {
                // Loss seen: make room for the next packet's FEC from now on.
                self.jitter.set_min_delay(floor);
                self.fec_min_delay = None;
            }
        }
        let frame = self.encoder.frame_samples48();
        let pcm = &mut self.pcm[..];
        let dec = &mut self.decoder;
        let c = &mut self.counters;
        let n = match self.jitter.pop(now) {
            Playout::Frame(p) => match dec.decode(p, pcm) {
                Ok(n) => n,
                Err(_) => {
                    c.decode_errors += 1;
                    c.concealed += 1;
                    dec.conceal(pcm).unwrap_or(0)
                }
            },
            Playout::Missing { next: Some(p) } if dec.has_fec(p) => match dec.decode_fec(p, pcm) {
                Ok(n) => {
                    c.fec_recovered += 1;
                    n
                }
                Err(_) => {
                    c.concealed += 1;
                    dec.conceal(pcm).unwrap_or(0)
                }
            },
            Playout::Missing { .. } => {
                c.concealed += 1;
                dec.conceal(pcm).unwrap_or(0)
            }
            Playout::Buffering => 0,
        };
        if n > 0 {
            let js = self.jitter.stats();
            c.delay_sum_ms += js.delay_ms;
            c.delay_ticks += 1;
        }
        // Always hand the device exactly one frame per tick; pad short output with silence.
        let n = n.min(pcm.len());
        pcm[n..frame.max(n)].fill(0);
        let out = &pcm[..frame.max(n)];
        self.levels.1 = rms(out);
        if to_device {
            let (_, rest) = self.playback.push_partial_slice(out);
            c.playback_overflow += rest.len() as u64;
        }
        if let Some(tap) = self.record.as_mut() {
            let _ = tap.push_partial_slice(out);
        }
    }

    /// RMS levels (0.0–1.0 of full scale) of the last frame captured and the last frame
    /// played: input and output level meters.
    pub fn levels(&self) -> (f32, f32) {
        self.levels
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
        if self.pool.len() < POOL {
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

    /// Queues the DTMF `digit` (`0-9 * # A-D`); it goes out over the next ticks as RFC 4733
    /// telephone events instead of audio.
    pub fn send_dtmf(&mut self, _now: Instant, digit: char) -> Result<(), MediaError> {
        if self.cfg.negotiated.telephone_event.is_none() {
            return Err(MediaError::NoTelephoneEvent);
        }
        let mut buf = [0u8; 4];
        self.dtmf_tx.queue(digit.encode_utf8(&mut buf))?;
        Ok(())
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
            || old.local_rtp != negotiated.local_rtp;
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

    /// Statistics so far, with a MOS estimate.
    pub fn stats(&self) -> CallStats {
        let s = accumulate(self.prior, self.session.stats());
        let js = self.jitter.stats();
        let c = &self.counters;
        let frame_ms = self.period.as_secs_f64() * 1000.0;
        let mean = if c.delay_ticks > 0 {
            c.delay_sum_ms / c.delay_ticks as f64
        } else {
            js.delay_ms
        };
        let late = c.late + js.late;
        // Loss after recovery: packets lost or too late, minus those FEC rebuilt.
        let expected = s.packets_received as f64 + s.lost.max(0) as f64;
        let unrecovered = (s.lost.max(0) as f64 + late as f64 - c.fec_recovered as f64).max(0.0);
        let loss_percent = if expected > 0.0 {
            100.0 * unrecovered / expected
        } else {
            0.0
        };
        let codec = self.cfg.negotiated.codec;
        let imp = quality::impairment(codec, true);
        let network = s.rtt_ms.map_or(0.0, |r| r / 2.0);
        let delay = mean + frame_ms + imp.lookahead_ms + network;
        CallStats {
            codec: codec.encoding_name(),
            rtp_sent: s.packets_sent,
            rtp_received: s.packets_received,
            bytes_sent: s.bytes_sent,
            bytes_received: s.bytes_received,
            lost: s.lost,
            fraction_lost: s.fraction_lost,
            jitter_ms: s.jitter_ms,
            rtt_ms: s.rtt_ms,
            concealed_frames: c.concealed,
            concealed_ms: c.concealed as f64 * frame_ms,
            fec_recovered: c.fec_recovered,
            jitter_buffer_ms: js.delay_ms,
            jitter_buffer_mean_ms: mean,
            late,
            duplicates: c.duplicates + js.duplicates,
            dropped_foreign: s.dropped_foreign,
            rtp_guard: s.guard,
            remote_lost: s.remote_lost,
            decode_errors: c.decode_errors,
            encode_errors: c.encode_errors,
            playback_overflow: c.playback_overflow,
            capture_underruns: c.capture_underruns,
            capture_dropped: c.capture_dropped,
            dtmf_sent: c.dtmf_sent,
            dtmf_received: c.dtmf_received,
            mos: quality::mos_from_r(quality::r_factor(imp, loss_percent, delay)),
        }
    }
}

/// Copies an outgoing RTP packet into a pooled buffer and queues it.
fn queue(out: &mut VecDeque<Transmit>, pool: &mut Vec<Vec<u8>>, dest: SocketAddr, bytes: &[u8]) {
    let mut buf = pool.pop().unwrap_or_default();
    buf.clear();
    buf.extend_from_slice(bytes);
    out.push_back(Transmit {
        destination: dest,
        contents: buf,
    });
}

/// 48 kHz samples in `d`.
fn samples48(d: Duration) -> usize {
    (d.as_micros() * 48 / 1000) as usize
}

/// Root-mean-square level of 16-bit samples, 0.0–1.0 of full scale (no allocation).
fn rms(x: &[i16]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    let sum: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    ((sum / x.len() as f64).sqrt() / 32768.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::test_util::goertzel;
    use crate::signaling::sdp::Direction;
    use rand::Rng;

    const RING: usize = 48_000 * 4;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn negotiated(
        codec: Codec,
        local: SocketAddr,
        remote: SocketAddr,
        dir: Direction,
    ) -> Negotiated {
        Negotiated {
            local_rtp: local,
            codec,
            payload_type: if codec == Codec::Opus {
                111
            } else {
                codec.default_payload_type()
            },
            clock_rate: codec.clock_rate(),
            telephone_event: Some(101),
            remote_rtp: remote,
            remote_rtcp: remote,
            rtcp_mux: true,
            direction: dir,
            ptime: 20,
            opus_fec: true,
            opus_max_average_bitrate: None,
            opus_max_playback_rate: None,
            opus_stereo: false,
        }
    }

    /// One side of a call: the pipeline, its device-side ring ends and a tone generator.
    struct End {
        p: MediaPipeline,
        addr: SocketAddr,
        cap: rtrb::Producer<i16>,
        play: rtrb::Consumer<i16>,
        rec: rtrb::Consumer<i16>,
        hz: f64,
        /// Speech-like signal to play instead of the tone.
        speech: Option<Vec<i16>>,
        phase: usize,
        heard: Vec<i16>,
        recorded: Vec<i16>,
        /// RTP packets (not RTCP) this side sent.
        rtp_out: usize,
    }

    impl End {
        fn new(n: Negotiated, hz: f64, seed: u64, now: Instant) -> Self {
            let (cap, cap_rx) = rtrb::RingBuffer::new(RING);
            let (play_tx, play) = rtrb::RingBuffer::new(RING);
            let (rec_tx, rec) = rtrb::RingBuffer::new(RING);
            let me = n.local_rtp;
            let cfg = PipelineConfig {
                negotiated: n,
                encoder: EncoderConfig::default(),
                latching: Default::default(),
                cname: format!("test{seed}@example.com"),
                seed,
            };
            let mut p =
                MediaPipeline::new(cfg, cap_rx, play_tx, now, SystemTime::UNIX_EPOCH).unwrap();
            p.set_record(rec_tx);
            End {
                p,
                addr: me,
                cap,
                play,
                rec,
                hz,
                speech: None,
                phase: 0,
                heard: Vec::new(),
                recorded: Vec::new(),
                rtp_out: 0,
            }
        }

        /// The audio device: one frame of tone in, whatever was played out.
        fn device(&mut self, frame: usize) {
            for _ in 0..frame {
                let v = match &self.speech {
                    Some(x) => x[self.phase % x.len()],
                    None => {
                        let t = self.phase as f64 / 48_000.0;
                        (8000.0 * (2.0 * std::f64::consts::PI * self.hz * t).sin()) as i16
                    }
                };
                self.cap.push(v).unwrap();
                self.phase += 1;
            }
            while let Ok(s) = self.play.pop() {
                self.heard.push(s);
            }
            while let Ok(s) = self.rec.pop() {
                self.recorded.push(s);
            }
        }

        fn drain(&mut self) -> Vec<Transmit> {
            let mut v = Vec::new();
            while let Some(t) = self.p.poll_transmit() {
                if !(64..=95).contains(&(t.contents[1] & 0x7f)) {
                    self.rtp_out += 1;
                }
                v.push(t);
            }
            v
        }
    }

    /// A seeded link with random loss, reordering (a packet held back behind the next one) and
    /// a random one-way delay of 0..=`jitter_ms`.
    struct Link {
        rng: StdRng,
        loss: f64,
        reorder: f64,
        jitter_ms: u64,
        held: Option<Transmit>,
        pending: Vec<(Instant, Transmit)>,
    }

    impl Link {
        fn new(seed: u64, loss: f64, reorder: f64) -> Self {
            Link {
                rng: StdRng::seed_from_u64(seed),
                loss,
                reorder,
                jitter_ms: 0,
                held: None,
                pending: Vec::new(),
            }
        }

        fn with_jitter(mut self, ms: u64) -> Self {
            self.jitter_ms = ms;
            self
        }

        /// Takes packets sent at `now`.
        fn carry(&mut self, now: Instant, input: Vec<Transmit>) {
            for t in input {
                if self.rng.random::<f64>() < self.loss {
                    continue;
                }
                if self.held.is_none() && self.rng.random::<f64>() < self.reorder {
                    self.held = Some(t);
                    continue;
                }
                for t in std::iter::once(t).chain(self.held.take()) {
                    let delay = self.rng.random_range(0..=self.jitter_ms);
                    self.pending.push((now + Duration::from_millis(delay), t));
                }
            }
        }

        /// Packets that come out of the link by `now`, in arrival order.
        fn due(&mut self, now: Instant) -> Vec<Transmit> {
            self.pending.sort_by_key(|(at, _)| *at);
            let n = self.pending.iter().take_while(|(at, _)| *at <= now).count();
            self.pending.drain(..n).map(|(_, t)| t).collect()
        }
    }

    /// Runs both ends for `ms` of virtual time in 5 ms steps: the devices deliver a frame
    /// every 20 ms, the pipelines run when `poll_timeout` says so, the links deliver when due.
    fn run(
        a: &mut End,
        b: &mut End,
        start: Instant,
        ms: u64,
        ab: &mut Link,
        ba: &mut Link,
    ) -> Instant {
        let mut now = start;
        for step in 0..ms / 5 {
            if step % 4 == 0 {
                a.device(960);
                b.device(960);
            }
            for e in [&mut *a, &mut *b] {
                if e.p.poll_timeout().is_some_and(|t| t <= now) {
                    e.p.handle_timeout(now);
                }
            }
            ab.carry(now, a.drain());
            ba.carry(now, b.drain());
            for t in ab.due(now) {
                assert_eq!(t.destination, b.addr);
                b.p.handle_datagram(now, a.addr, &t.contents);
                a.p.recycle(t.contents);
            }
            for t in ba.due(now) {
                assert_eq!(t.destination, a.addr);
                a.p.handle_datagram(now, b.addr, &t.contents);
                b.p.recycle(t.contents);
            }
            now += Duration::from_millis(5);
        }
        a.device(0);
        b.device(0);
        now
    }

    /// Power at `hz` relative to half the mean square: 1.0 for a pure tone at `hz`.
    fn purity(x: &[i16], hz: f64) -> f64 {
        let ms = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64;
        if ms == 0.0 {
            return 0.0;
        }
        4.0 * goertzel(x, 48_000.0, hz) / (2.0 * ms)
    }

    fn pair(codec: Codec, now: Instant) -> (End, End) {
        let (aa, ba) = (addr("10.0.0.1:4000"), addr("10.0.0.2:5000"));
        let a = End::new(
            negotiated(codec, aa, ba, Direction::SendRecv),
            440.0,
            1,
            now,
        );
        let b = End::new(
            negotiated(codec, ba, aa, Direction::SendRecv),
            1000.0,
            2,
            now,
        );
        (a, b)
    }

    fn last_second(x: &[i16]) -> &[i16] {
        assert!(x.len() >= 48_000, "only {} samples", x.len());
        &x[x.len() - 48_000..]
    }

    fn two_way(codec: Codec) {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(codec, t0);
        let (mut ab, mut ba) = (Link::new(1, 0.0, 0.0), Link::new(2, 0.0, 0.0));
        let mut t = run(&mut a, &mut b, t0, 3000, &mut ab, &mut ba);
        // Every tick hands the device exactly one frame.
        assert_eq!(b.heard.len(), 150 * 960);
        let pb = purity(last_second(&b.heard), 440.0);
        let pa = purity(last_second(&a.heard), 1000.0);
        assert!(pb > 0.8, "B hears 440 Hz with purity {pb}");
        assert!(pa > 0.8, "A hears 1000 Hz with purity {pa}");
        assert!(purity(last_second(&b.heard), 1000.0) < 0.01);
        assert!(purity(last_second(&b.recorded), 440.0) > 0.8);
        let (sa, sb) = (a.p.stats(), b.p.stats());
        assert_eq!(sa.codec, codec.encoding_name());
        assert_eq!(sa.rtp_sent, 150);
        assert_eq!(sb.rtp_received, 150);
        assert_eq!(sb.lost, 0);
        assert_eq!(sb.concealed_frames, 0);
        assert_eq!(sa.capture_underruns, 0);
        assert!(
            sb.jitter_buffer_mean_ms < 60.0,
            "{}",
            sb.jitter_buffer_mean_ms
        );
        assert!(sb.mos > 4.2 && sb.mos <= 4.5, "mos {}", sb.mos);
        assert_eq!(b.rtp_out, 150);
        // RTCP: after a few report intervals both sides know the round-trip time (≈ 0 here).
        for _ in 0..10 {
            if a.p.stats().rtt_ms.is_some() && b.p.stats().rtt_ms.is_some() {
                break;
            }
            t = run(&mut a, &mut b, t, 1000, &mut ab, &mut ba);
        }
        for s in [a.p.stats(), b.p.stats()] {
            let rtt = s.rtt_ms.expect("RTCP round trip measured");
            assert!(rtt < 1.0, "{rtt}");
        }
    }

    #[test]
    fn opus_tones_cross_over() {
        two_way(Codec::Opus);
    }

    #[test]
    fn pcmu_tones_cross_over() {
        two_way(Codec::Pcmu);
    }

    fn lossy(codec: Codec) {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(codec, t0);
        run(
            &mut a,
            &mut b,
            t0,
            3000,
            &mut Link::new(7, 0.05, 0.05),
            &mut Link::new(8, 0.05, 0.05),
        );
        let pb = purity(last_second(&b.heard), 440.0);
        let pa = purity(last_second(&a.heard), 1000.0);
        assert!(pb > 0.5, "B hears 440 Hz with purity {pb}");
        assert!(pa > 0.5, "A hears 1000 Hz with purity {pa}");
        for s in [a.p.stats(), b.p.stats()] {
            assert!(s.lost > 0, "{s:?}");
            assert!(s.fec_recovered + s.concealed_frames > 0, "{s:?}");
            assert!(s.mos < 4.4 && s.mos > 2.0, "{s:?}");
        }
        let clean = {
            let (mut a, mut b) = pair(codec, t0);
            run(
                &mut a,
                &mut b,
                t0,
                3000,
                &mut Link::new(1, 0.0, 0.0),
                &mut Link::new(2, 0.0, 0.0),
            );
            b.p.stats().mos
        };
        assert!(b.p.stats().mos < clean);
    }

    #[test]
    fn opus_survives_loss_and_reordering() {
        lossy(Codec::Opus);
    }

    #[test]
    fn pcmu_survives_loss_and_reordering() {
        lossy(Codec::Pcmu);
    }

    #[test]
    fn opus_through_loss_and_30ms_jitter() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(Codec::Opus, t0);
        let mut ab = Link::new(11, 0.05, 0.0).with_jitter(30);
        let mut ba = Link::new(12, 0.05, 0.0).with_jitter(30);
        run(&mut a, &mut b, t0, 4000, &mut ab, &mut ba);
        assert!(purity(last_second(&b.heard), 440.0) > 0.5);
        assert!(purity(last_second(&a.heard), 1000.0) > 0.5);
        for s in [a.p.stats(), b.p.stats()] {
            assert!(s.lost > 0, "{s:?}");
            assert!(s.jitter_ms > 2.0, "{s:?}");
            // The buffer grew beyond its two-frame floor to absorb the jitter.
            assert!(s.jitter_buffer_mean_ms > 40.0, "{s:?}");
            assert!(s.late < 10, "{s:?}");
        }
    }

    #[test]
    fn opus_fec_recovers_lost_speech() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(Codec::Opus, t0);
        a.speech = Some(crate::media::codec::test_util::speech_like(48_000 * 4));
        let (mut ab, mut ba) = (Link::new(3, 0.1, 0.0), Link::new(4, 0.0, 0.0));
        run(&mut a, &mut b, t0, 3000, &mut ab, &mut ba);
        let s = b.p.stats();
        assert!(s.lost > 0, "{s:?}");
        assert!(s.fec_recovered > 0, "{s:?}");
        // Recovered frames do not count against the MOS.
        let plain = quality::mos(Codec::Opus, 100.0 * s.lost as f64 / 150.0, 50.0);
        assert!(s.mos > plain, "{} vs {plain}", s.mos);
        assert!(b.heard.iter().any(|&v| v.abs() > 1000));
    }

    #[test]
    fn dtmf_digits_arrive_once_each() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(Codec::Opus, t0);
        for d in "123#".chars() {
            a.p.send_dtmf(t0, d).unwrap();
        }
        assert!(matches!(a.p.send_dtmf(t0, 'x'), Err(MediaError::Dtmf(_))));
        run(
            &mut a,
            &mut b,
            t0,
            2000,
            &mut Link::new(1, 0.0, 0.0),
            &mut Link::new(2, 0.0, 0.0),
        );
        let events: Vec<_> = std::iter::from_fn(|| b.p.poll_event()).collect();
        assert_eq!(
            events,
            "123#".chars().map(MediaEvent::Dtmf).collect::<Vec<_>>()
        );
        assert_eq!(a.p.stats().dtmf_sent, 4);
        assert_eq!(b.p.stats().dtmf_received, 4);
        assert_eq!(a.p.poll_event(), None);
        // Audio resumed after the digits: B hears the tone at the end.
        assert!(purity(last_second(&b.heard), 440.0) > 0.8);
    }

    #[test]
    fn dtmf_needs_telephone_event() {
        let t0 = Instant::now();
        let (aa, ba) = (addr("10.0.0.1:4000"), addr("10.0.0.2:5000"));
        let mut n = negotiated(Codec::Pcma, aa, ba, Direction::SendRecv);
        n.telephone_event = None;
        let mut a = End::new(n, 440.0, 1, t0);
        assert!(matches!(
            a.p.send_dtmf(t0, '1'),
            Err(MediaError::NoTelephoneEvent)
        ));
    }

    #[test]
    fn hold_stops_rtp_from_the_held_side() {
        let t0 = Instant::now();
        let (aa, ba) = (addr("10.0.0.1:4000"), addr("10.0.0.2:5000"));
        let mut a = End::new(
            negotiated(Codec::Opus, aa, ba, Direction::SendOnly),
            440.0,
            1,
            t0,
        );
        let mut b = End::new(
            negotiated(Codec::Opus, ba, aa, Direction::RecvOnly),
            1000.0,
            2,
            t0,
        );
        run(
            &mut a,
            &mut b,
            t0,
            3000,
            &mut Link::new(1, 0.0, 0.0),
            &mut Link::new(2, 0.0, 0.0),
        );
        assert_eq!(b.rtp_out, 0);
        assert_eq!(b.p.stats().rtp_sent, 0);
        assert_eq!(a.p.stats().rtp_received, 0);
        assert!(a.rtp_out > 100);
        assert!(purity(last_second(&b.heard), 440.0) > 0.8);
        // A plays silence; the capture ring on B does not back up.
        assert!(a.heard.iter().all(|&s| s == 0));
        assert_eq!(b.cap.slots(), RING);
    }

    #[test]
    fn reinvite_hold_and_resume() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(Codec::Pcmu, t0);
        let (mut ab, mut ba) = (Link::new(1, 0.0, 0.0), Link::new(2, 0.0, 0.0));
        let t = run(&mut a, &mut b, t0, 1000, &mut ab, &mut ba);
        // A puts B on hold the RFC 2543 way: B's peer address becomes 0.0.0.0.
        let mut held = negotiated(
            Codec::Pcmu,
            b.addr,
            addr("0.0.0.0:5000"),
            Direction::SendRecv,
        );
        held.remote_rtcp = held.remote_rtp;
        b.p.update(held).unwrap();
        let before = b.rtp_out;
        let t = run(&mut a, &mut b, t, 1000, &mut ab, &mut ba);
        assert_eq!(b.rtp_out, before, "no RTP to 0.0.0.0");
        b.p.update(negotiated(Codec::Pcmu, b.addr, a.addr, Direction::SendRecv))
            .unwrap();
        run(&mut a, &mut b, t, 1500, &mut ab, &mut ba);
        assert!(b.rtp_out >= before + 70, "{} vs {before}", b.rtp_out);
        assert!(purity(last_second(&a.heard), 1000.0) > 0.8);
        // Counters carried over the new session.
        assert!(b.p.stats().rtp_sent >= b.rtp_out as u64);
    }

    #[test]
    fn codec_change_by_reinvite() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(Codec::Opus, t0);
        let (mut ab, mut ba) = (Link::new(1, 0.0, 0.0), Link::new(2, 0.0, 0.0));
        let t = run(&mut a, &mut b, t0, 1000, &mut ab, &mut ba);
        a.p.update(negotiated(Codec::Pcma, a.addr, b.addr, Direction::SendRecv))
            .unwrap();
        b.p.update(negotiated(Codec::Pcma, b.addr, a.addr, Direction::SendRecv))
            .unwrap();
        run(&mut a, &mut b, t, 2000, &mut ab, &mut ba);
        assert_eq!(b.p.stats().codec, "PCMA");
        assert!(purity(last_second(&b.heard), 440.0) > 0.8);
        assert!(purity(last_second(&a.heard), 1000.0) > 0.8);
    }

    #[test]
    fn capture_underrun_skips_a_frame_and_backlog_is_bounded() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(Codec::Pcmu, t0);
        // No audio captured for the first tick.
        a.p.handle_tick(t0);
        assert!(a.drain().is_empty());
        assert_eq!(a.p.stats().capture_underruns, 1);
        // Then ten frames at once: at most the backlog is kept, one frame goes out.
        a.device(9600);
        a.p.handle_tick(t0 + Duration::from_millis(20));
        let sent = a.drain();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            a.p.stats().capture_dropped,
            (10 - MAX_CAPTURE_BACKLOG) as u64
        );
        assert_eq!(a.p.capture.slots(), (MAX_CAPTURE_BACKLOG - 1) * 960);
        // Its timestamp is one frame (160 ticks at 8 kHz) after the skipped one, with the marker.
        let h = &sent[0].contents;
        assert_ne!(h[1] & 0x80, 0, "marker");
        b.p.handle_datagram(t0, a.addr, h);
        assert_eq!(b.p.stats().rtp_received, 1);
        assert!(a.p.poll_timeout().unwrap() <= t0 + Duration::from_millis(40));
    }

    /// RTP (not RTCP) datagrams among `v`.
    fn rtp_of(v: Vec<Transmit>) -> Vec<Transmit> {
        v.into_iter()
            .filter(|t| !(64..=95).contains(&(t.contents[1] & 0x7f)))
            .collect()
    }

    fn rtp_ts(t: &Transmit) -> u32 {
        u32::from_be_bytes([t.contents[4], t.contents[5], t.contents[6], t.contents[7]])
    }

    #[test]
    fn a_frame_goes_out_as_soon_as_it_is_captured() {
        let t0 = Instant::now();
        let (mut a, _b) = pair(Codec::Pcmu, t0);
        a.p.handle_timeout(t0);
        assert!(rtp_of(a.drain()).is_empty());
        // Half a frame is not enough; the other half, 10 ms later, goes out at the next poll.
        a.device(480);
        let t = t0 + Duration::from_millis(10);
        a.p.handle_timeout(t);
        assert!(rtp_of(a.drain()).is_empty());
        assert!(a.p.poll_timeout().unwrap() <= t + POLL_INTERVAL);
        a.device(480);
        let t = t0 + Duration::from_millis(20);
        a.p.handle_timeout(t);
        let first = rtp_of(a.drain());
        assert_eq!(first.len(), 1);
        // The next frame, completed 7 ms into a period, goes out at once with the next
        // timestamp (160 ticks at 8 kHz), whatever the phase.
        a.device(960);
        a.p.handle_timeout(t0 + Duration::from_millis(47));
        let second = rtp_of(a.drain());
        assert_eq!(second.len(), 1);
        assert_eq!(rtp_ts(&second[0]).wrapping_sub(rtp_ts(&first[0])), 160);
        assert_eq!(a.p.stats().capture_underruns, 0);
        // A device that stops: after the grace, slots are skipped on our clock, each advancing
        // the timestamp by one frame; the next packet carries the marker bit.
        let mut t = t0 + Duration::from_millis(47);
        for _ in 0..5 {
            t += a.p.period();
            a.p.handle_timeout(t);
        }
        assert!(rtp_of(a.drain()).is_empty());
        let skipped = a.p.stats().capture_underruns;
        assert!((3..=4).contains(&skipped), "{skipped}");
        a.device(960);
        a.p.handle_timeout(t + Duration::from_millis(1));
        let third = rtp_of(a.drain());
        assert_eq!(third.len(), 1);
        assert_ne!(third[0].contents[1] & 0x80, 0, "marker");
        assert_eq!(
            rtp_ts(&third[0]).wrapping_sub(rtp_ts(&second[0])),
            160 * (skipped as u32 + 1)
        );
    }

    #[test]
    fn playout_follows_the_device_period() {
        let t0 = Instant::now();
        let (mut a, _b) = pair(Codec::Pcmu, t0);
        a.p.set_device_period(Duration::from_millis(10));
        let level = |e: &End| e.p.playback_level();
        a.p.handle_timeout(t0);
        // The empty ring gets one frame; more polls without the device taking any add nothing.
        assert_eq!(level(&a), 960);
        a.p.handle_timeout(t0 + Duration::from_millis(2));
        assert_eq!(level(&a), 960);
        // The device takes one 10 ms period: one period is left, still enough.
        let mut buf = [0i16; 480];
        let take = |e: &mut End, buf: &mut [i16]| {
            let (got, _) = e.play.pop_partial_slice(buf);
            assert_eq!(got.len(), buf.len());
        };
        take(&mut a, &mut buf);
        a.p.handle_timeout(t0 + Duration::from_millis(10));
        assert_eq!(level(&a), 480);
        // It takes the next: the ring is empty, a frame goes in at the next poll.
        take(&mut a, &mut buf);
        a.p.handle_timeout(t0 + Duration::from_millis(20));
        assert_eq!(level(&a), 960);
        // A device that stops taking audio: the ring does not fill up (the jitter buffer keeps
        // draining on our clock instead), and nothing overflows.
        let mut t = t0 + Duration::from_millis(20);
        for _ in 0..200 {
            t += Duration::from_millis(5);
            a.p.handle_timeout(t);
        }
        assert_eq!(level(&a), 960);
        assert_eq!(a.p.stats().playback_overflow, 0);
        // A longer device period keeps more in the ring.
        a.p.set_device_period(Duration::from_millis(40));
        a.p.handle_timeout(t + Duration::from_millis(1));
        assert_eq!(level(&a), 1920);
    }

    #[test]
    fn opus_fec_floor_rises_only_with_loss() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(Codec::Opus, t0);
        // Opus spends FEC bits on speech, not on a steady tone.
        a.speech = Some(crate::media::codec::test_util::speech_like(48_000 * 4));
        let (mut ab, mut ba) = (Link::new(1, 0.0, 0.0), Link::new(2, 0.0, 0.0));
        let t = run(&mut a, &mut b, t0, 2000, &mut ab, &mut ba);
        // Clean: one frame of delay, as for any codec.
        assert_eq!(b.p.jitter.config().min_delay, 20);
        let s = b.p.stats();
        assert!(s.jitter_buffer_ms <= 30.0, "{s:?}");
        // Loss: the floor rises to two frames so the next packet's FEC is at hand.
        let mut lossy = Link::new(3, 0.1, 0.0);
        run(&mut a, &mut b, t, 2000, &mut lossy, &mut ba);
        assert_eq!(b.p.jitter.config().min_delay, 40);
        let s = b.p.stats();
        assert!(s.jitter_buffer_ms >= 30.0, "{s:?}");
        assert!(s.fec_recovered > 0, "{s:?}");
        // PCMU never raises it.
        let (mut a, mut b) = pair(Codec::Pcmu, t0);
        run(
            &mut a,
            &mut b,
            t0,
            2000,
            &mut Link::new(3, 0.1, 0.0),
            &mut ba,
        );
        assert_eq!(b.p.jitter.config().min_delay, 20);
    }

    #[test]
    fn a_short_stall_is_caught_up_and_a_long_one_resyncs() {
        let t0 = Instant::now();
        let (mut a, _b) = pair(Codec::Pcmu, t0);
        let rtp_only = |v: Vec<Transmit>| {
            v.into_iter()
                .filter(|t| !(64..=95).contains(&(t.contents[1] & 0x7f)))
                .count()
        };
        // Steady state: one frame captured, one tick, one packet.
        a.device(960);
        a.p.handle_timeout(t0);
        assert_eq!(rtp_only(a.drain()), 1);
        // The driver stalls for 3 periods while the device keeps capturing: the missed ticks
        // run at once and send what was captured.
        a.device(3 * 960);
        a.p.handle_timeout(t0 + Duration::from_millis(60));
        assert_eq!(rtp_only(a.drain()), 3, "three frames after a 60 ms stall");
        // A stall beyond the catch-up window resyncs instead of sending a long burst.
        let late = t0 + Duration::from_millis(60) + a.p.period() * (MAX_CATCH_UP + 10);
        a.device(3 * 960);
        a.p.handle_timeout(late);
        let burst = rtp_only(a.drain());
        assert!(burst <= MAX_CATCH_UP as usize + 1, "burst of {burst}");
        assert!(a.p.poll_timeout().unwrap() > late, "resynced to the clock");
    }

    #[test]
    fn bye_sends_rtcp_bye_and_stops() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(Codec::Opus, t0);
        let t = run(
            &mut a,
            &mut b,
            t0,
            200,
            &mut Link::new(1, 0.0, 0.0),
            &mut Link::new(2, 0.0, 0.0),
        );
        a.p.bye(t);
        assert_eq!(a.p.poll_timeout(), None);
        let out = a.drain();
        assert_eq!(out.len(), 1);
        b.p.handle_datagram(t, a.addr, &out[0].contents);
        assert_eq!(b.p.poll_event(), Some(MediaEvent::RemoteBye));
        a.device(960);
        a.p.handle_tick(t);
        assert!(a.drain().is_empty());
    }
}

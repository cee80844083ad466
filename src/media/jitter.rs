//! Adaptive jitter buffer for one RTP audio stream (sans-IO, injected time).
//!
//! Packets go in with [`JitterBuffer::push`] as they arrive; the pipeline calls
//! [`JitterBuffer::pop`] once per frame of audio the playback device needs (on average once per
//! frame period, at the instant the device is about to run short) and decodes what it gets.
//! Payloads are opaque bytes: the buffer knows nothing about codecs.
//!
//! Playout is driven by RTP timestamps, not sequence numbers, so silence suppression (DTX:
//! the timestamp jumps while the sequence number does not) keeps its timing. Each pop plays the
//! frame whose timestamp equals the playout position and advances it by one frame.
//!
//! Delay adaptation: for each packet we record its *relative transit* `r = arrival − ts` (ms).
//! Over a sliding window (two halves of [`WINDOW_MS`]) we keep the smallest and largest `r`; their
//! spread is how much delay it takes for the slowest packet to arrive in time. The target delay is
//! `max(min_delay, spread + margin, K·J)` clamped to `max_delay`, with `J` the RFC 3550
//! interarrival jitter estimate. The *current* delay is how long a minimum-transit packet waits
//! before it plays. When it is below target the buffer grows at once (one concealed frame per
//! pop); when it is above target by more than ¾ frame it shrinks by skipping a frame: at once
//! inside a silence gap, otherwise at most once per [`SHRINK_INTERVAL_MS`].
//!
//! Underrun: a pop that finds nothing stored conceals and *holds* the playout position, so a
//! burst held up on the way still plays, late, instead of arriving behind the position and
//! being dropped (the delay grows by the wait, once, rather than by concealed frames later).
//! When the next packet shows that the awaited frames are missing (loss or a silence gap), the
//! position moves past as many of them as the hold already concealed: loss costs no extra delay.
//!
//! Peak hold: a delay spike that cost concealment (a hold that ended with the awaited frame, or a
//! packet too late to play) keeps the target at least at that spike's spread for
//! [`PEAK_HOLD_MS`] after it, renewed by every later spike of at least half its height (which
//! then costs nothing). The transit window alone forgets a spike after two to four seconds and
//! the delay then shrinks back, so spikes that recur every few seconds (a busy host, Wi-Fi scans,
//! radio scheduling) would each cost concealment again.
//!
//! Start-up: the first frame plays at the first pop at which its delay exceeds the grow
//! threshold (target − ½ frame), so playout starts within half a frame of the target instead of
//! up to a frame above it. [`JitterBuffer::set_min_delay`] raises (or lowers) the floor during a
//! call, e.g. to make room for Opus FEC once loss is seen.
//!
//! Storage is allocated once, at the first packet: `capacity_frames` slots of [`SLOT_BYTES`]
//! bytes each (a call that receives no RTP never allocates it). The first
//! payload longer than that (up to [`MAX_PAYLOAD`]) re-lays the slots out at [`MAX_PAYLOAD`]
//! bytes each, once per buffer: a voice stream's packets (tens to a few hundred bytes) never
//! pay for 1500-byte slots, which with hundreds of calls was most of a call's memory.

use std::time::Instant;

/// Largest payload a slot holds; larger payloads are rejected.
pub const MAX_PAYLOAD: usize = 1500;
/// Bytes per slot until a longer payload comes: Opus at up to 120 kbit/s in 20 ms frames,
/// G.711 up to 30 ms.
pub const SLOT_BYTES: usize = 304;
/// Slots kept beyond those the largest delay needs (reordering, a burst after a stall).
const SPARE_SLOTS: usize = 8;
/// Length of the transit-statistics window (ms); the spread remembers between one and two windows.
pub const WINDOW_MS: f64 = 2000.0;
/// Outside silence gaps, the delay shrinks by at most one frame per this many ms.
pub const SHRINK_INTERVAL_MS: f64 = 1000.0;
/// How long a spike that cost concealment keeps the target up, from the last such spike (ms).
pub const PEAK_HOLD_MS: f64 = 10_000.0;
/// Safety margin added to the transit spread (ms).
const MARGIN_MS: f64 = 5.0;
/// Multiplier of the RFC 3550 jitter estimate in the target.
const JITTER_K: f64 = 3.0;
/// A packet whose relative transit differs from the window minimum by more than this (ms) means
/// the timestamps jumped: resynchronise.
const RESYNC_MIN_MS: f64 = 1000.0;

/// Parameters of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP clock rate (Hz), e.g. 48000 for Opus, 8000 for G.711.
    pub clock_rate: u32,
    /// RTP timestamp increment of one frame (one packet, one `pop`), e.g. 960 for 20 ms Opus.
    pub ts_per_frame: u32,
    /// Smallest playout delay (ms).
    pub min_delay: u32,
    /// Largest playout delay (ms).
    pub max_delay: u32,
    /// Number of packet slots, allocated once.
    pub capacity_frames: usize,
}

impl JitterConfig {
    /// Defaults (20–500 ms, 64 slots) for a clock rate and a frame (packet) duration in ms.
    /// The slots are as many as the largest delay needs, plus a few spare.
    pub fn for_clock(clock_rate: u32, frame_ms: u32) -> Self {
        let d = JitterConfig::default();
        let need = (d.max_delay as usize).div_ceil(frame_ms.max(1) as usize);
        JitterConfig {
            clock_rate,
            ts_per_frame: clock_rate / 1000 * frame_ms,
            capacity_frames: (need + SPARE_SLOTS).min(d.capacity_frames),
            ..d
        }
    }
}

impl Default for JitterConfig {
    /// 48 kHz, 20 ms frames, 20–500 ms delay, 64 slots.
    fn default() -> Self {
        JitterConfig {
            clock_rate: 48_000,
            ts_per_frame: 960,
            min_delay: 20,
            max_delay: 500,
            capacity_frames: 64,
        }
    }
}

/// What [`JitterBuffer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored for playout.
    Accepted,
    /// The same sequence number is already stored; dropped.
    Duplicate,
    /// Its playout time has passed; dropped and counted.
    Late,
    /// New SSRC or a timestamp/sequence jump: the buffer was flushed and restarted with this packet.
    Reset,
    /// Payload larger than [`MAX_PAYLOAD`] (or empty); dropped.
    Rejected,
}

/// What to play for this frame period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Playout<'a> {
    /// Decode this payload.
    Frame(&'a [u8]),
    /// Nothing to play at this position: conceal. `next` is the packet right after the gap when
    /// it is already here (try its in-band FEC), `None` otherwise (plain PLC).
    Missing {
        /// Payload of the packet that follows the missing one, if present.
        next: Option<&'a [u8]>,
    },
    /// Not started yet (or the stream went idle): play silence.
    Buffering,
}

/// Counters and gauges of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JitterStats {
    /// Current playout delay of a minimum-transit packet (ms).
    pub delay_ms: f64,
    /// Delay the buffer is steering towards (ms).
    pub target_ms: f64,
    /// RFC 3550 interarrival jitter estimate (ms).
    pub jitter_ms: f64,
    /// Packets that came after their playout time.
    pub late: u64,
    /// Duplicate packets.
    pub duplicates: u64,
    /// Packets that arrived with a lower sequence number than one already received.
    pub reordered: u64,
    /// Packets never received by their playout time (sequence numbers skipped).
    pub lost: u64,
    /// Frames returned as [`Playout::Frame`].
    pub played: u64,
    /// Pops answered with [`Playout::Missing`] (loss, silence gaps and delay growth).
    pub concealed: u64,
    /// Packets discarded to shrink the delay.
    pub dropped: u64,
    /// Restarts (SSRC change, timestamp jump).
    pub resets: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    used: bool,
    seq: u64,
    ts: i64,
    len: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No packet yet (or idle after a long underrun): pops answer `Buffering`.
    Idle,
    /// Counting down to the first frame; pops answer `Buffering`.
    Priming,
    /// Playing out.
    Playing,
}

/// Transit statistics over a sliding window.
#[derive(Debug, Clone, Copy)]
struct Window {
    start_ms: f64,
    cur: (f64, f64),
    prev: (f64, f64),
}

impl Window {
    fn new(now_ms: f64) -> Self {
        Window {
            start_ms: now_ms,
            cur: (f64::INFINITY, f64::NEG_INFINITY),
            prev: (f64::INFINITY, f64::NEG_INFINITY),
        }
    }
    fn add(&mut self, now_ms: f64, r: f64) {
        if now_ms - self.start_ms >= WINDOW_MS {
            self.prev = self.cur;
            self.cur = (f64::INFINITY, f64::NEG_INFINITY);
            self.start_ms = now_ms;
        }
        self.cur.0 = self.cur.0.min(r);
        self.cur.1 = self.cur.1.max(r);
    }
    fn min(&self) -> f64 {
        self.cur.0.min(self.prev.0)
    }
    fn spread(&self) -> f64 {
        let s = self.cur.1.max(self.prev.1) - self.min();
        if s.is_finite() {
            s
        } else {
            0.0
        }
    }
}

/// Adaptive jitter buffer; see the module documentation.
#[derive(Debug)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    frame_ms: f64,
    slots: Vec<Slot>,
    /// Payload bytes: slot `i` at `i * stride` (allocated at the first packet).
    data: Vec<u8>,
    /// [`SLOT_BYTES`], or [`MAX_PAYLOAD`] once a longer payload came.
    stride: usize,
    state: State,
    epoch: Option<Instant>,
    ssrc: Option<u32>,
    /// Extended value of the first timestamp of this stream (for unwrapping).
    last_ts: u32,
    last_ts_ext: i64,
    highest_seq: u64,
    last_seq16: u16,
    /// Next sequence number expected at playout.
    next_seq: u64,
    /// Timestamp of the frame the next pop plays.
    play_ts: i64,
    empty_pops: u32,
    /// Pops in a row that found nothing stored and concealed while holding the position.
    held: u32,
    last_shrink_ms: f64,
    /// The time of the latest push or pop (ms since the epoch).
    now_ms: f64,
    /// The transit spread of the last spike that cost concealment, held until `peak_until_ms`.
    peak_ms: f64,
    peak_until_ms: f64,
    window: Window,
    /// RFC 3550 jitter state: previous transit and J (ms).
    prev_transit: Option<f64>,
    jitter: f64,
    stats: JitterStats,
}

impl JitterBuffer {
    /// Allocates the slot table (their payload storage comes with the first packet).
    /// `capacity_frames` is raised to at least 4 and
    /// `ts_per_frame`/`clock_rate` to at least 1; `max_delay` is lowered so that the delay fits
    /// in the slots with 4 to spare, and `min_delay` to `max_delay`.
    pub fn new(mut cfg: JitterConfig) -> Self {
        cfg.capacity_frames = cfg.capacity_frames.max(4);
        cfg.ts_per_frame = cfg.ts_per_frame.max(1);
        cfg.clock_rate = cfg.clock_rate.max(1);
        let frame_ms = f64::from(cfg.ts_per_frame) * 1000.0 / f64::from(cfg.clock_rate);
        let fits = ((cfg.capacity_frames - 4) as f64 * frame_ms) as u32;
        cfg.max_delay = cfg.max_delay.min(fits);
        cfg.min_delay = cfg.min_delay.min(cfg.max_delay);
        JitterBuffer {
            frame_ms,
            slots: vec![Slot::default(); cfg.capacity_frames],
            data: Vec::new(),
            stride: SLOT_BYTES,
            state: State::Idle,
            epoch: None,
            ssrc: None,
            last_ts: 0,
            last_ts_ext: 0,
            highest_seq: 0,
            last_seq16: 0,
            next_seq: 0,
            play_ts: 0,
            empty_pops: 0,
            held: 0,
            last_shrink_ms: f64::NEG_INFINITY,
            now_ms: 0.0,
            peak_ms: 0.0,
            peak_until_ms: f64::NEG_INFINITY,
            window: Window::new(0.0),
            prev_transit: None,
            jitter: 0.0,
            stats: JitterStats {
                target_ms: f64::from(cfg.min_delay),
                ..JitterStats::default()
            },
            cfg,
        }
    }

    /// Sets the smallest playout delay (ms, clamped to `max_delay`). Raising it makes the
    /// buffer grow at its next pops (one concealed frame each); lowering it lets it shrink.
    pub fn set_min_delay(&mut self, ms: u32) {
        self.cfg.min_delay = ms.min(self.cfg.max_delay);
        self.stats.target_ms = self.target();
    }

    /// Counters and the current delay.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The configuration in use (after clamping).
    pub fn config(&self) -> &JitterConfig {
        &self.cfg
    }

    fn ms(&mut self, now: Instant) -> f64 {
        let epoch = *self.epoch.get_or_insert(now);
        self.now_ms = now.saturating_duration_since(epoch).as_secs_f64() * 1000.0;
        self.now_ms
    }

    fn ts_ms(&self, ts: i64) -> f64 {
        ts as f64 * 1000.0 / f64::from(self.cfg.clock_rate)
    }

    fn target(&self) -> f64 {
        let mut want = (self.window.spread() + MARGIN_MS).max(JITTER_K * self.jitter);
        if self.now_ms < self.peak_until_ms {
            want = want.max(self.peak_ms + MARGIN_MS);
        }
        want.max(f64::from(self.cfg.min_delay))
            .min(f64::from(self.cfg.max_delay))
    }

    /// A spike just cost concealment: hold the target at its spread (see the module doc).
    fn peak(&mut self, now_ms: f64) {
        let spread = self.window.spread();
        self.peak_ms = if now_ms < self.peak_until_ms {
            self.peak_ms.max(spread)
        } else {
            spread
        };
        self.peak_until_ms = now_ms + PEAK_HOLD_MS;
    }

    /// A packet `r` ms in transit while a peak is held: if it came at least half the peak late,
    /// the spikes recur (this one cost nothing, thanks to the hold), so the hold goes on.
    fn peak_recurs(&mut self, now_ms: f64, r: f64) {
        let above = r - self.window.min();
        if now_ms < self.peak_until_ms && above > MARGIN_MS && 2.0 * above >= self.peak_ms {
            self.peak_ms = self.peak_ms.max(above);
            self.peak_until_ms = now_ms + PEAK_HOLD_MS;
        }
    }

    fn clear(&mut self) {
        for s in &mut self.slots {
            s.used = false;
        }
        self.state = State::Idle;
        self.held = 0;
    }

    /// Starts a new stream with this packet as its origin.
    fn restart(&mut self, now_ms: f64, seq: u16, ts: u32, ssrc: u32) {
        self.clear();
        self.ssrc = Some(ssrc);
        self.last_ts = ts;
        self.last_ts_ext = 0;
        self.last_seq16 = seq;
        self.highest_seq = 1 << 20;
        self.next_seq = self.highest_seq;
        self.window = Window::new(now_ms);
        self.peak_until_ms = f64::NEG_INFINITY;
        self.prev_transit = None;
        self.jitter = 0.0;
    }

    /// Stores a received packet. `now` is its arrival time.
    pub fn push(
        &mut self,
        now: Instant,
        seq: u16,
        ts: u32,
        ssrc: u32,
        payload: &[u8],
    ) -> PushOutcome {
        if payload.is_empty() || payload.len() > MAX_PAYLOAD {
            return PushOutcome::Rejected;
        }
        let now_ms = self.ms(now);
        let mut outcome = PushOutcome::Accepted;
        if self.ssrc != Some(ssrc) {
            if self.ssrc.is_some() {
                self.stats.resets += 1;
                outcome = PushOutcome::Reset;
            }
            self.restart(now_ms, seq, ts, ssrc);
        }
        // Unwrap timestamp and sequence number relative to the last seen ones.
        let ts_ext = self.last_ts_ext + i64::from(ts.wrapping_sub(self.last_ts) as i32);
        let seq_ext = (self.highest_seq as i64
            + i64::from(seq.wrapping_sub(self.last_seq16) as i16))
        .max(0) as u64;
        let r = now_ms - self.ts_ms(ts_ext);
        let base = self.window.min();
        let resync_ms = RESYNC_MIN_MS.max(2.0 * f64::from(self.cfg.max_delay));
        let cap = self.slots.len() as u64;
        let seq_jump = self.state != State::Idle && seq_ext >= self.next_seq + cap;
        if (base.is_finite() && (r - base).abs() > resync_ms) || seq_jump {
            self.stats.resets += 1;
            self.restart(now_ms, seq, ts, ssrc);
            return self.push_inner(now_ms, (seq, ts), (1 << 20, 0), payload, PushOutcome::Reset);
        }
        if self.state == State::Priming && seq_ext < self.next_seq && ts_ext < self.play_ts {
            // Reordered before playout started: start from this one instead.
            self.next_seq = seq_ext;
            self.play_ts = ts_ext;
        }
        if self.state != State::Idle && (seq_ext < self.next_seq || ts_ext < self.play_ts) {
            self.stats.late += 1;
            // A late packet shows the transit spread; remember it so the delay grows.
            self.window.add(now_ms, r);
            self.peak(now_ms);
            return PushOutcome::Late;
        }
        let idx = (seq_ext % cap) as usize;
        if self.slots[idx].used && self.slots[idx].seq == seq_ext {
            self.stats.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        if seq_ext < self.highest_seq {
            self.stats.reordered += 1;
        }
        self.push_inner(now_ms, (seq, ts), (seq_ext, ts_ext), payload, outcome)
    }

    fn push_inner(
        &mut self,
        now_ms: f64,
        (seq, ts): (u16, u32),
        (seq_ext, ts_ext): (u64, i64),
        payload: &[u8],
        outcome: PushOutcome,
    ) -> PushOutcome {
        let r = now_ms - self.ts_ms(ts_ext);
        // RFC 3550 A.8 style estimate, in ms, over packets in arrival order.
        if let Some(prev) = self.prev_transit {
            self.jitter += ((r - prev).abs() - self.jitter) / 16.0;
        }
        self.stats.jitter_ms = self.jitter;
        self.prev_transit = Some(r);
        self.window.add(now_ms, r);
        self.peak_recurs(now_ms, r);
        if seq_ext >= self.highest_seq {
            self.highest_seq = seq_ext;
            self.last_seq16 = seq;
            self.last_ts = ts;
            self.last_ts_ext = ts_ext;
        }
        if self.data.is_empty() {
            // The first packet: a stream that never comes never pays for its storage.
            if payload.len() > self.stride {
                self.stride = MAX_PAYLOAD;
            }
            self.data = vec![0; self.slots.len() * self.stride];
        } else if payload.len() > self.stride {
            self.widen();
        }
        let idx = (seq_ext % self.slots.len() as u64) as usize;
        let off = idx * self.stride;
        self.data[off..off + payload.len()].copy_from_slice(payload);
        self.slots[idx] = Slot {
            used: true,
            seq: seq_ext,
            ts: ts_ext,
            len: payload.len() as u16,
        };
        self.stats.target_ms = self.target();
        if self.state == State::Idle {
            // Start (or restart after idling): this packet plays at the first pop where a
            // minimum-transit packet would have waited within half a frame of the target.
            self.next_seq = seq_ext;
            self.play_ts = ts_ext;
            self.state = State::Priming;
            self.empty_pops = 0;
        }
        outcome
    }

    /// The stored packet with the smallest sequence number at or after `next_seq`.
    fn first_stored(&self) -> Option<usize> {
        let cap = self.slots.len() as u64;
        (0..cap)
            .map(|i| ((self.next_seq + i) % cap) as usize)
            .find(|&idx| self.slots[idx].used && self.slots[idx].seq >= self.next_seq)
    }

    /// Re-lays the slots out at [`MAX_PAYLOAD`] bytes each (once: allocates).
    fn widen(&mut self) {
        let mut data = vec![0; self.slots.len() * MAX_PAYLOAD];
        for (i, slot) in self.slots.iter().enumerate() {
            let len = usize::from(slot.len);
            let (from, to) = (i * self.stride, i * MAX_PAYLOAD);
            data[to..to + len].copy_from_slice(&self.data[from..from + len]);
        }
        self.data = data;
        self.stride = MAX_PAYLOAD;
    }

    fn payload(&self, idx: usize) -> &[u8] {
        let off = idx * self.stride;
        &self.data[off..off + usize::from(self.slots[idx].len)]
    }

    /// Forgets the stream (stored packets, SSRC, timing); counters are kept. The next packet
    /// starts a new stream as if it were the first (use after a re-INVITE or hold).
    pub fn reset(&mut self) {
        self.clear();
        self.ssrc = None;
    }

    /// Returns what to play for the next frame. Call once per frame of audio the device
    /// consumes (`ts_per_frame` of audio), best just before it needs it: the delay is measured
    /// up to this call. Each call plays at most one packet, so the sender's packets must carry
    /// `ts_per_frame` ticks each.
    #[must_use]
    pub fn pop(&mut self, now: Instant) -> Playout<'_> {
        let now_ms = self.ms(now);
        match self.state {
            State::Idle => return Playout::Buffering,
            State::Priming => {
                let delay = now_ms - self.ts_ms(self.play_ts) - self.window.min();
                self.stats.delay_ms = delay.max(0.0);
                if delay <= self.target() - self.frame_ms / 2.0 {
                    return Playout::Buffering;
                }
                self.state = State::Playing;
                self.last_shrink_ms = now_ms;
            }
            State::Playing => {}
        }
        // Drop whatever is behind the playout position (skipped by shrinking).
        let mut first = self.first_stored();
        while let Some(idx) = first {
            if self.slots[idx].ts >= self.play_ts {
                break;
            }
            self.slots[idx].used = false;
            self.stats.lost += self.slots[idx].seq - self.next_seq;
            self.stats.dropped += 1;
            self.next_seq = self.slots[idx].seq + 1;
            first = self.first_stored();
        }
        let tpf = i64::from(self.cfg.ts_per_frame);
        if let Some(idx) = first {
            let ahead = (self.slots[idx].ts - self.play_ts) / tpf;
            if self.held > 0 && ahead > 0 {
                // The frames the hold waited for never came (lost, or a silence gap): the held
                // pops already concealed them, so move past as many of them.
                self.play_ts += ahead.min(i64::from(self.held)) * tpf;
            } else if self.held > 0 {
                // The awaited frame came late: a spike that cost concealment.
                self.peak(now_ms);
            }
            self.held = 0;
        }
        let target = self.target();
        let delay = now_ms - self.ts_ms(self.play_ts) - self.window.min();
        self.stats.target_ms = target;
        let held_delay = self.stats.delay_ms;
        self.stats.delay_ms = delay.max(0.0);
        let in_gap = match first {
            Some(idx) => self.slots[idx].ts > self.play_ts,
            None => true,
        };
        if first.is_none() {
            self.empty_pops += 1;
            if f64::from(self.empty_pops) * self.frame_ms
                > f64::from(self.cfg.max_delay) + 2.0 * self.frame_ms
            {
                // The stream stopped: go idle, restart with the target delay on the next packet.
                self.state = State::Idle;
                return Playout::Buffering;
            }
        } else {
            self.empty_pops = 0;
        }
        // Grow at once: hold the position and conceal one frame.
        if delay < target - self.frame_ms / 2.0 && self.stats.played > 0 {
            self.stats.concealed += 1;
            return Playout::Missing { next: None };
        }
        // Nothing stored: the stream is late (a burst held up on the way) or paused. Conceal
        // and hold the position, so that the frame due now still plays if it comes late (the
        // delay grows by the wait, as a late packet would have made it grow anyway).
        if first.is_none()
            && self.stats.played > 0
            && delay + self.frame_ms <= f64::from(self.cfg.max_delay)
        {
            self.held += 1;
            self.stats.concealed += 1;
            // The delay grows only if the frame comes: until then, report the last one.
            self.stats.delay_ms = held_delay;
            return Playout::Missing { next: None };
        }
        // Shrink: skip one frame, at once in a gap, else at most once per interval.
        if delay > target + 0.75 * self.frame_ms
            && (in_gap || now_ms - self.last_shrink_ms >= SHRINK_INTERVAL_MS)
        {
            self.last_shrink_ms = now_ms;
            self.play_ts += tpf;
            if let Some(idx) = first {
                if self.slots[idx].ts < self.play_ts {
                    self.slots[idx].used = false;
                    self.stats.lost += self.slots[idx].seq - self.next_seq;
                    self.stats.dropped += 1;
                    self.next_seq = self.slots[idx].seq + 1;
                    first = self.first_stored();
                }
            }
        }
        let play_ts = self.play_ts;
        self.play_ts += tpf;
        match first {
            Some(idx) if self.slots[idx].ts <= play_ts => {
                let s = self.slots[idx];
                self.slots[idx].used = false;
                self.stats.lost += s.seq - self.next_seq;
                self.next_seq = s.seq + 1;
                self.stats.played += 1;
                Playout::Frame(self.payload(idx))
            }
            Some(idx) => {
                self.stats.concealed += 1;
                let s = self.slots[idx];
                // A sequence gap right before a packet that starts one frame later: that packet
                // may carry FEC for the missing one.
                let next =
                    (s.seq > self.next_seq && s.ts == play_ts + tpf).then(|| self.payload(idx));
                Playout::Missing { next }
            }
            None => {
                self.stats.concealed += 1;
                Playout::Missing { next: None }
            }
        }
    }
}

#[cfg(test)]
mod tests;

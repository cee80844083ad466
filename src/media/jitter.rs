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
        now.saturating_duration_since(epoch).as_secs_f64() * 1000.0
    }

    fn ts_ms(&self, ts: i64) -> f64 {
        ts as f64 * 1000.0 / f64::from(self.cfg.clock_rate)
    }

    fn target(&self) -> f64 {
        let want = (self.window.spread() + MARGIN_MS).max(JITTER_K * self.jitter);
        want.max(f64::from(self.cfg.min_delay))
            .min(f64::from(self.cfg.max_delay))
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
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[derive(Debug, Clone, PartialEq)]
    enum Out {
        Frame(Vec<u8>),
        Missing(Option<Vec<u8>>),
        Buffering,
    }

    fn own(p: Playout<'_>) -> Out {
        match p {
            Playout::Frame(f) => Out::Frame(f.to_vec()),
            Playout::Missing { next } => Out::Missing(next.map(<[u8]>::to_vec)),
            Playout::Buffering => Out::Buffering,
        }
    }

    fn jb() -> JitterBuffer {
        JitterBuffer::new(JitterConfig::default())
    }

    /// Pushes `(arrival_ms, seq, ts, ssrc, payload)` in arrival order and pops every 20 ms
    /// (at 20k + 10 ms); returns the pops and the push outcomes.
    fn sim(
        jb: &mut JitterBuffer,
        t0: Instant,
        mut arrivals: Vec<(u64, u16, u32, u32, Vec<u8>)>,
        pops: u64,
    ) -> (Vec<Out>, Vec<PushOutcome>) {
        arrivals.sort_by_key(|a| a.0);
        let mut it = arrivals.into_iter().peekable();
        let (mut outs, mut pushes) = (vec![], vec![]);
        for k in 0..pops {
            let now = 20 * k + 10;
            while let Some(a) = it.next_if(|a| a.0 <= now) {
                pushes.push(jb.push(t0 + Duration::from_millis(a.0), a.1, a.2, a.3, &a.4));
            }
            outs.push(own(jb.pop(t0 + Duration::from_millis(now))));
        }
        (outs, pushes)
    }

    fn stream(n: u16) -> Vec<(u64, u16, u32, u32, Vec<u8>)> {
        (0..n)
            .map(|i| {
                (
                    20 * u64::from(i),
                    i,
                    960 * u32::from(i),
                    7,
                    vec![i as u8 + 1],
                )
            })
            .collect()
    }

    fn frames(outs: &[Out]) -> Vec<u8> {
        outs.iter()
            .filter_map(|o| match o {
                Out::Frame(f) => Some(f[0]),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn config_is_clamped_to_capacity() {
        let c = JitterConfig {
            capacity_frames: 8,
            max_delay: 500,
            ..JitterConfig::default()
        };
        assert_eq!(JitterBuffer::new(c).config().max_delay, 80);
        assert_eq!(JitterConfig::for_clock(8000, 20).ts_per_frame, 160);
    }

    #[test]
    fn slots_fit_the_largest_delay_and_no_more() {
        for frame_ms in [10, 20, 40, 60] {
            let c = JitterConfig::for_clock(48_000, frame_ms);
            let b = JitterBuffer::new(c);
            assert_eq!(b.config().max_delay, 500, "{frame_ms} ms frames");
            assert!(c.capacity_frames <= 500usize.div_ceil(frame_ms as usize) + SPARE_SLOTS);
        }
    }

    #[test]
    fn a_long_payload_widens_the_slots_and_keeps_the_stored_ones() {
        let mut b = jb();
        let t0 = Instant::now();
        let mut arrivals = stream(20);
        // Packet 5 is longer than a slot: the ones stored before it survive the re-layout.
        arrivals[5].4 = vec![6; 1200];
        let (outs, pushes) = sim(&mut b, t0, arrivals, 30);
        assert!(pushes.iter().all(|p| *p == PushOutcome::Accepted));
        assert_eq!(b.stride, MAX_PAYLOAD);
        assert_eq!(frames(&outs), (1..=20).collect::<Vec<u8>>());
        assert!(outs.contains(&Out::Frame(vec![6; 1200])));
        let too_long = b.push(
            t0 + Duration::from_secs(1),
            20,
            960 * 20,
            7,
            &[0; MAX_PAYLOAD + 1],
        );
        assert_ne!(too_long, PushOutcome::Accepted);
    }

    #[test]
    fn storage_comes_with_the_first_packet_at_its_size() {
        let t0 = Instant::now();
        let mut b = jb();
        assert!(b.data.is_empty(), "no packet, no storage");
        assert_eq!(b.pop(t0), Playout::Buffering);
        assert!(b.data.is_empty());
        b.reset();
        assert!(b.data.is_empty());
        assert_eq!(b.push(t0, 1, 960, 7, &[1; 100]), PushOutcome::Accepted);
        assert_eq!(b.data.len(), b.slots.len() * SLOT_BYTES);
        // A first packet longer than a slot lays the slots out wide at once.
        let mut w = jb();
        let mut arrivals = stream(5);
        arrivals[0].4 = vec![2; 1200];
        let (outs, pushes) = sim(&mut w, t0, arrivals, 10);
        assert!(pushes.iter().all(|p| *p == PushOutcome::Accepted));
        assert_eq!(w.stride, MAX_PAYLOAD);
        assert_eq!(w.data.len(), w.slots.len() * MAX_PAYLOAD);
        let first = outs.iter().find(|o| matches!(o, Out::Frame(_)));
        assert_eq!(first, Some(&Out::Frame(vec![2; 1200])));
        assert_eq!(frames(&outs)[1..], [2, 3, 4, 5]);
    }

    #[test]
    fn in_order_plays_everything_once_after_buffering() {
        let mut b = jb();
        let t0 = Instant::now();
        let (outs, pushes) = sim(&mut b, t0, stream(50), 60);
        assert!(pushes.iter().all(|p| *p == PushOutcome::Accepted));
        assert_eq!(outs[0], Out::Buffering);
        assert_eq!(frames(&outs), (1..=50).collect::<Vec<u8>>());
        let s = b.stats();
        assert_eq!((s.played, s.lost, s.late, s.duplicates), (50, 0, 0, 0));
        assert!(s.delay_ms >= 15.0 && s.delay_ms <= 45.0, "{}", s.delay_ms);
    }

    #[test]
    fn playout_starts_within_half_a_frame_of_the_floor() {
        let t0 = Instant::now();
        // Pops 5 ms after each arrival: 5 ms is too short, the next pop (25 ms) plays.
        let mut b = jb();
        b.push(t0, 0, 0, 7, &[1]);
        b.push(t0 + Duration::from_millis(20), 1, 960, 7, &[2]);
        assert_eq!(b.pop(t0 + Duration::from_millis(5)), Playout::Buffering);
        assert_eq!(b.pop(t0 + Duration::from_millis(25)), Playout::Frame(&[1]));
        assert!((b.stats().delay_ms - 25.0).abs() < 0.01, "{:?}", b.stats());
        // Pops 15 ms after each arrival: the first one already plays, 15 ms < 20 + 20.
        let mut b = jb();
        b.push(t0, 0, 0, 7, &[1]);
        assert_eq!(b.pop(t0 + Duration::from_millis(15)), Playout::Frame(&[1]));
        assert!((b.stats().delay_ms - 15.0).abs() < 0.01, "{:?}", b.stats());
    }

    #[test]
    fn raised_floor_grows_the_delay() {
        let mut b = jb();
        let t0 = Instant::now();
        let (outs, _) = sim(&mut b, t0, stream(20), 10);
        assert_eq!(b.stats().concealed, 0);
        let before = b.stats().delay_ms;
        assert!(before < 35.0, "{before}");
        b.set_min_delay(60);
        assert_eq!(b.stats().target_ms, 60.0);
        let mut more = outs;
        for k in 10..20u64 {
            let now = t0 + Duration::from_millis(20 * k + 10);
            more.push(own(b.pop(now)));
        }
        let s = b.stats();
        assert!(s.concealed >= 1, "{s:?}");
        assert!(s.delay_ms >= 50.0, "{s:?}");
        // Nothing lost: growing only delays the frames.
        assert_eq!(
            frames(&more),
            (1..=frames(&more).len() as u8).collect::<Vec<u8>>()
        );
        // Clamped to the largest delay.
        b.set_min_delay(10_000);
        assert_eq!(b.config().min_delay, b.config().max_delay);
    }

    #[test]
    fn reorder_within_delay_is_put_back_in_order() {
        let mut b = jb();
        let t0 = Instant::now();
        let mut arr = stream(20);
        arr[3].0 = 67; // seq 3 after seq 4 (arrives at 80)... and seq 4 early
        arr[4].0 = 62;
        let (outs, _) = sim(&mut b, t0, arr, 30);
        assert_eq!(frames(&outs), (1..=20).collect::<Vec<u8>>());
        assert_eq!(b.stats().reordered, 1);
        assert_eq!(b.stats().lost, 0);
    }

    #[test]
    fn duplicate_is_dropped() {
        let mut b = jb();
        let t0 = Instant::now();
        let mut arr = stream(10);
        arr.push((45, 2, 1920, 7, vec![3]));
        let (outs, pushes) = sim(&mut b, t0, arr, 15);
        assert!(pushes.contains(&PushOutcome::Duplicate));
        assert_eq!(frames(&outs), (1..=10).collect::<Vec<u8>>());
        assert_eq!(b.stats().duplicates, 1);
    }

    #[test]
    fn sequence_and_timestamp_wrap() {
        let mut b = jb();
        let t0 = Instant::now();
        let arr = (0..12u16)
            .map(|i| {
                let seq = 65530u16.wrapping_add(i);
                let ts = (u32::MAX - 2000).wrapping_add(960 * u32::from(i));
                (20 * u64::from(i), seq, ts, 7, vec![i as u8 + 1])
            })
            .collect();
        let (outs, pushes) = sim(&mut b, t0, arr, 16);
        assert!(
            pushes.iter().all(|p| *p == PushOutcome::Accepted),
            "{pushes:?}"
        );
        assert_eq!(frames(&outs), (1..=12).collect::<Vec<u8>>());
        assert_eq!(b.stats().lost, 0);
    }

    #[test]
    fn gap_gives_missing_with_next() {
        let mut b = jb();
        let t0 = Instant::now();
        let mut arr = stream(10);
        arr.remove(5);
        let (outs, _) = sim(&mut b, t0, arr, 14);
        let i = outs.iter().position(|o| *o == Out::Frame(vec![5])).unwrap();
        assert_eq!(outs[i + 1], Out::Missing(Some(vec![7])));
        assert_eq!(outs[i + 2], Out::Frame(vec![7]));
        assert_eq!(b.stats().lost, 1);
    }

    #[test]
    fn late_packet_is_counted_and_raises_target() {
        let mut b = jb();
        let t0 = Instant::now();
        let mut arr = stream(20);
        arr[5].0 += 200;
        let before = b.stats().target_ms;
        let (outs, pushes) = sim(&mut b, t0, arr, 30);
        assert!(pushes.contains(&PushOutcome::Late));
        assert_eq!(b.stats().late, 1);
        assert!(!frames(&outs).contains(&6));
        assert!(b.stats().target_ms > before + 100.0, "{:?}", b.stats());
    }

    #[test]
    fn a_burst_held_up_on_the_way_still_plays() {
        let mut b = jb();
        let t0 = Instant::now();
        // Packets 10-14 are held up and come together at 290 ms (10 was due at 200).
        let mut arr = stream(40);
        for a in &mut arr[10..15] {
            a.0 = 290;
        }
        let (outs, pushes) = sim(&mut b, t0, arr, 50);
        assert!(pushes.iter().all(|p| *p == PushOutcome::Accepted));
        // The buffer waited for packet 10 (concealing meanwhile) and then played every frame.
        assert_eq!(frames(&outs), (1..=40).collect::<Vec<u8>>());
        let s = b.stats();
        assert_eq!((s.late, s.lost, s.dropped), (0, 0, 0), "{s:?}");
        let i = outs
            .iter()
            .position(|o| *o == Out::Frame(vec![10]))
            .unwrap();
        assert_eq!(
            outs[i + 1..i + 4],
            [Out::Missing(None), Out::Missing(None), Out::Missing(None)]
        );
        // Three frames concealed while waiting; the wait is now the delay, so at most one more
        // for growth (the pops after the last frame conceal the stream's end).
        let last = outs
            .iter()
            .rposition(|o| *o == Out::Frame(vec![40]))
            .unwrap();
        let concealed = outs[..last]
            .iter()
            .filter(|o| **o == Out::Missing(None))
            .count();
        assert!(concealed <= 4, "{outs:?}");
        assert!(s.delay_ms >= 80.0, "{s:?}");
    }

    #[test]
    fn a_lost_burst_on_an_empty_buffer_conceals_each_frame_once() {
        let mut b = jb();
        let t0 = Instant::now();
        // Packets 10, 11 and 12 never come: the buffer is empty at their playout times.
        let mut arr = stream(30);
        arr.drain(10..13);
        let (outs, _) = sim(&mut b, t0, arr, 35);
        let i = outs
            .iter()
            .position(|o| *o == Out::Frame(vec![10]))
            .unwrap();
        assert_eq!(
            outs[i + 1..i + 5],
            [
                Out::Missing(None),
                Out::Missing(None),
                Out::Missing(Some(vec![14])),
                Out::Frame(vec![14])
            ]
        );
        let last = outs
            .iter()
            .rposition(|o| *o == Out::Frame(vec![30]))
            .unwrap();
        let concealed = outs[..last].iter().filter(|o| matches!(o, Out::Missing(_)));
        assert_eq!(concealed.count(), 3, "{outs:?}");
        let s = b.stats();
        assert_eq!((s.lost, s.late), (3, 0), "{s:?}");
        // The hold was undone when the gap showed: the delay did not grow.
        assert!(s.delay_ms <= 45.0, "{s:?}");
    }

    #[test]
    fn ssrc_change_resets() {
        let mut b = jb();
        let t0 = Instant::now();
        let mut arr = stream(10);
        for i in 0..10u16 {
            let t = 200 + 20 * u64::from(i);
            arr.push((
                t,
                5000 + i,
                12345 + 960 * u32::from(i),
                99,
                vec![100 + i as u8],
            ));
        }
        let (outs, pushes) = sim(&mut b, t0, arr, 25);
        assert_eq!(
            pushes.iter().filter(|p| **p == PushOutcome::Reset).count(),
            1
        );
        let f = frames(&outs);
        assert!(f.ends_with(&(100..110).collect::<Vec<u8>>()), "{f:?}");
        assert_eq!(b.stats().resets, 1);
        b.reset();
        assert_eq!(b.pop(t0 + Duration::from_millis(600)), Playout::Buffering);
        let first = b.push(t0 + Duration::from_millis(600), 1, 1, 99, &[1]);
        assert_eq!(first, PushOutcome::Accepted);
    }

    #[test]
    fn timestamp_jump_resyncs() {
        let mut b = jb();
        let t0 = Instant::now();
        let mut arr = stream(10);
        for i in 10..20u16 {
            let ts = 50_000_000 + 960 * u32::from(i);
            arr.push((20 * u64::from(i), i, ts, 7, vec![i as u8 + 1]));
        }
        let (outs, pushes) = sim(&mut b, t0, arr, 26);
        assert!(pushes.contains(&PushOutcome::Reset));
        let f = frames(&outs);
        assert!(f.ends_with(&(11..=20).collect::<Vec<u8>>()), "{f:?}");
    }

    #[test]
    fn delay_grows_under_jitter_and_shrinks_later() {
        let mut b = jb();
        let t0 = Instant::now();
        let mut x: u64 = 12345;
        // 10 s with 0–30 ms of random extra delay, then 20 s without.
        let mut arr = (0..1500u32)
            .map(|i| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let jit = if i < 500 { (x >> 33) % 31 } else { 0 };
                (20 * u64::from(i) + jit, i as u16, 960 * i, 7, vec![1])
            })
            .collect::<Vec<_>>();
        arr.sort_by_key(|a| a.0);
        let calm = b.stats();
        let mut it = arr.into_iter().peekable();
        let mut delays = vec![];
        let mut at_10s = calm;
        for k in 0..1500u64 {
            let now = 20 * k + 10;
            while let Some(a) = it.next_if(|a| a.0 <= now) {
                b.push(t0 + Duration::from_millis(a.0), a.1, a.2, a.3, &a.4);
            }
            let _ = b.pop(t0 + Duration::from_millis(now));
            delays.push(b.stats().delay_ms);
            if k == 499 {
                at_10s = b.stats();
            }
        }
        let end = b.stats();
        let peak = delays[..500].iter().cloned().fold(0.0, f64::max);
        assert!(at_10s.target_ms >= 30.0, "{at_10s:?}");
        assert!(at_10s.delay_ms >= at_10s.target_ms - 10.0, "{at_10s:?}");
        assert!(peak >= 40.0, "{peak}");
        assert!(at_10s.jitter_ms > 5.0, "{at_10s:?}");
        // Few late packets, only while adapting at the start.
        assert!(at_10s.late <= 10, "{at_10s:?}");
        assert_eq!(end.late, at_10s.late);
        // Later: back to the floor, the delay came down by whole frames.
        assert_eq!(end.target_ms, calm.target_ms);
        assert!(end.delay_ms <= calm.target_ms + 15.0, "{end:?}");
        assert!(end.delay_ms <= peak - 10.0, "{end:?} {peak}");
        assert!(end.dropped > 0);
        assert!(end.jitter_ms < 1.0, "{end:?}");
    }

    #[test]
    fn dtx_gap_is_not_loss() {
        let mut b = jb();
        let t0 = Instant::now();
        // 10 frames, then 10 frames of silence (no packets, seq continues), then 10 more.
        let mut arr = stream(10);
        for i in 10..20u16 {
            let t = 20 * u64::from(i + 10);
            arr.push((t, i, 960 * u32::from(i + 10), 7, vec![i as u8 + 1]));
        }
        let (outs, _) = sim(&mut b, t0, arr, 40);
        assert_eq!(frames(&outs), (1..=20).collect::<Vec<u8>>());
        assert_eq!(b.stats().lost, 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push {
            dseq: i8,
            dts: i32,
            ssrc: bool,
            dt: u8,
        },
        Pop {
            dt: u8,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (
                any::<i8>(),
                -3000i32..3000,
                proptest::bool::weighted(0.02),
                0u8..40
            )
                .prop_map(|(dseq, dts, ssrc, dt)| Op::Push {
                    dseq,
                    dts,
                    ssrc,
                    dt
                }),
            (0u8..40).prop_map(|dt| Op::Pop { dt }),
        ]
    }

    proptest! {
        #[test]
        fn random_ops_never_panic_nor_replay(ops in proptest::collection::vec(op(), 0..400),
                                             seq0 in any::<u16>(), ts0 in any::<u32>()) {
            let mut b = JitterBuffer::new(JitterConfig { capacity_frames: 8, ..JitterConfig::default() });
            let t0 = Instant::now();
            let mut t = 0u64;
            let (mut seq, mut ts, mut ssrc) = (seq0, ts0, 1u32);
            let mut played = std::collections::HashSet::new();
            for (id, o) in ops.into_iter().enumerate() {
                match o {
                    Op::Push { dseq, dts, ssrc: flip, dt } => {
                        t += u64::from(dt);
                        if flip { ssrc += 1; }
                        seq = seq.wrapping_add(dseq as u16);
                        ts = ts.wrapping_add(dts as u32);
                        let id = (id as u32).to_be_bytes();
                        b.push(t0 + Duration::from_millis(t), seq, ts, ssrc, &id);
                    }
                    Op::Pop { dt } => {
                        t += u64::from(dt);
                        if let Playout::Frame(f) = b.pop(t0 + Duration::from_millis(t)) {
                            prop_assert!(played.insert(f.to_vec()), "frame played twice");
                        }
                    }
                }
            }
        }
    }
}

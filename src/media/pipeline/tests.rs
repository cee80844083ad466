//! Pipeline scenario tests: two pipelines wired back to back with a virtual clock.

use super::*;
use crate::media::codec::test_util::goertzel;
use crate::signaling::sdp::Direction;
use rand::Rng;

const RING: usize = 48_000 * 4;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn negotiated(codec: Codec, local: SocketAddr, remote: SocketAddr, dir: Direction) -> Negotiated {
    Negotiated {
        telephone_event: Some(101),
        direction: dir,
        ..Negotiated::sendrecv(codec, local, remote)
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
        let mut p = MediaPipeline::new(cfg, cap_rx, play_tx, now, SystemTime::UNIX_EPOCH).unwrap();
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
fn run(a: &mut End, b: &mut End, start: Instant, ms: u64, ab: &mut Link, ba: &mut Link) -> Instant {
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
    let mos = sb.mos.expect("audio was received");
    assert!(mos > 4.2 && mos <= 4.5, "mos {mos}");
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
        assert!(s.mos.is_some_and(|m| m < 4.4 && m > 2.0), "{s:?}");
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
        b.p.stats().mos.expect("audio")
    };
    assert!(b.p.stats().mos.is_some_and(|m| m < clean));
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
    // A codes FEC once B's RTCP has reported the loss (the first reports come after a few
    // seconds).
    run(&mut a, &mut b, t0, 8000, &mut ab, &mut ba);
    assert!(a.p.stats().remote_lost > 0, "{:?}", a.p.stats());
    let s = b.p.stats();
    assert!(s.lost > 0, "{s:?}");
    assert!(s.fec_recovered > 0, "{s:?}");
    // Recovered frames do not count against the MOS.
    let expected = (s.rtp_received as i64 + s.lost) as f64;
    let plain = quality::mos(Codec::Opus, 100.0 * s.lost as f64 / expected, 50.0);
    assert!(s.mos.is_some_and(|m| m > plain), "{:?} vs {plain}", s.mos);
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
    let sb = b.p.stats();
    assert_eq!(sb.dtmf_received, 4);
    // A loss-free link: telephone events are not lost audio, concealment or FEC.
    assert_eq!(sb.lost, 0, "{sb:?}");
    assert_eq!(sb.fec_recovered, 0, "{sb:?}");
    assert!(sb.concealed_frames <= 1, "{sb:?}");
    assert_eq!(a.p.poll_event(), None);
    // Audio resumed after the digits: B hears the tone at the end.
    assert!(purity(last_second(&b.heard), 440.0) > 0.8);
}

#[test]
fn no_mos_when_nothing_was_received() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(Codec::Pcmu, t0);
    // B's packets never reach A; A's reach B.
    run(
        &mut a,
        &mut b,
        t0,
        1000,
        &mut Link::new(1, 0.0, 0.0),
        &mut Link::new(2, 1.0, 0.0),
    );
    let sa = a.p.stats();
    assert_eq!(sa.rtp_received, 0, "{sa:?}");
    assert_eq!(sa.mos, None, "no audio, no MOS: {sa:?}");
    assert!(b.p.stats().mos.is_some());
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

#[test]
fn a_call_without_audio_plays_silence_and_allocates_no_frame_buffers() {
    let t0 = Instant::now();
    let (mut a, _b) = pair(Codec::Opus, t0);
    // The device needs a frame at once; nothing was received, nothing captured.
    a.p.handle_timeout(t0);
    let mut played = Vec::new();
    while let Ok(s) = a.play.pop() {
        played.push(s);
    }
    assert_eq!(played, vec![0; 960], "one frame of silence to the device");
    let mut recorded = 0;
    while let Ok(s) = a.rec.pop() {
        assert_eq!(s, 0);
        recorded += 1;
    }
    assert_eq!(recorded, 960, "and to the record tap");
    assert_eq!(
        a.p.meters.1.take(),
        Level::default(),
        "silence counted, no level"
    );
    assert!(
        a.p.frame.is_empty() && a.p.payload.is_empty() && a.p.pcm.is_empty(),
        "no frame was captured or decoded"
    );
    a.p.bye(t0);
    let out = a.drain();
    assert_eq!(out.len(), 1, "the RTCP BYE");
    assert_eq!(a.p.pool.capacity(), 0, "no RTP sent, no buffer pool");
    // Once audio flows the buffers exist, and are kept.
    let (mut a, mut b) = pair(Codec::Opus, t0);
    run(
        &mut a,
        &mut b,
        t0,
        200,
        &mut Link::new(1, 0.0, 0.0),
        &mut Link::new(2, 0.0, 0.0),
    );
    assert_eq!(a.p.frame.len(), MAX_FRAME_SAMPLES48);
    assert_eq!(a.p.pcm.len(), MAX_FRAME_SAMPLES48);
    assert_eq!(a.p.pool.capacity(), POOL);
}

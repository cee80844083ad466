//! Proves that a call's steady state does not allocate: two `MediaPipeline`s wired back to back
//! tick, exchange RTP and play out under a counting global allocator (the `assert_no_alloc`
//! pattern). RTCP is left out (its compound packets are built every few seconds and allocate).

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use wakeline::media::codec::EncoderConfig;
use wakeline::media::pipeline::{MediaPipeline, PipelineConfig};
use wakeline::signaling::sdp::{Codec, Negotiated};

mod alloc_count;
use alloc_count::allocations;

#[global_allocator]
static GLOBAL: alloc_count::Counting = alloc_count::Counting;

fn negotiated(codec: Codec, local: SocketAddr, remote: SocketAddr) -> Negotiated {
    Negotiated {
        telephone_event: Some(101),
        ..Negotiated::sendrecv(codec, local, remote)
    }
}

struct End {
    p: MediaPipeline,
    addr: SocketAddr,
    cap: rtrb::Producer<i16>,
    play: rtrb::Consumer<i16>,
    phase: u64,
}

impl End {
    fn new(codec: Codec, me: &str, peer: &str, now: Instant) -> Self {
        let (me, peer) = (me.parse().unwrap(), peer.parse().unwrap());
        let (cap, cap_rx) = rtrb::RingBuffer::new(48_000);
        let (play_tx, play) = rtrb::RingBuffer::new(48_000);
        let cfg = PipelineConfig {
            negotiated: negotiated(codec, me, peer),
            encoder: EncoderConfig::default(),
            latching: Default::default(),
            cname: "noalloc@example.com".into(),
            seed: 7,
        };
        let p = MediaPipeline::new(cfg, cap_rx, play_tx, now, SystemTime::UNIX_EPOCH).unwrap();
        End {
            p,
            addr: me,
            cap,
            play,
            phase: 0,
        }
    }

    /// One frame of a 440 Hz tone in; returns the energy of what was played out.
    fn device(&mut self) -> f64 {
        for _ in 0..960 {
            let t = self.phase as f64 / 48_000.0;
            let _ = self
                .cap
                .push((8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16);
            self.phase += 1;
        }
        let mut e = 0.0;
        while let Ok(s) = self.play.pop() {
            e += f64::from(s).powi(2);
        }
        e
    }
}

/// One 20 ms tick of both ends; returns the energy played out.
fn tick(a: &mut End, b: &mut End, now: Instant) -> f64 {
    let e = a.device() + b.device();
    a.p.handle_tick(now);
    b.p.handle_tick(now);
    while let Some(t) = a.p.poll_transmit() {
        b.p.handle_datagram(now, a.addr, &t.contents);
        a.p.recycle(t.contents);
    }
    while let Some(t) = b.p.poll_transmit() {
        a.p.handle_datagram(now, b.addr, &t.contents);
        b.p.recycle(t.contents);
    }
    e
}

#[test]
fn counter_sees_allocations() {
    let (n, v) = allocations(|| vec![1u8; 64]);
    assert!(n >= 1 && v.len() == 64);
}

#[test]
fn steady_state_ticks_do_not_allocate() {
    for codec in [Codec::Opus, Codec::Pcmu] {
        let t0 = Instant::now();
        let mut a = End::new(codec, "10.0.0.1:4000", "10.0.0.2:5000", t0);
        let mut b = End::new(codec, "10.0.0.2:5000", "10.0.0.1:4000", t0);
        // The tone detector (`wakeline load`) runs on every played frame: it must not allocate.
        a.p.set_tone_detect(440.0);
        let mut now = t0;
        // Warm up: the jitter buffers start playing, the buffer pools fill.
        for _ in 0..50 {
            tick(&mut a, &mut b, now);
            now += Duration::from_millis(20);
        }
        let (n, energy) = allocations(|| {
            let mut e = 0.0;
            for _ in 0..100 {
                e += tick(&mut a, &mut b, now);
                now += Duration::from_millis(20);
            }
            e
        });
        assert!(energy > 0.0, "{codec:?}: audio flowed");
        assert!(a.p.stats().rtp_received >= 140, "{:?}", a.p.stats());
        assert_eq!(n, 0, "{codec:?}: {n} allocations in 100 ticks");
        let tone = a.p.stats().tone.expect("tone stats");
        assert!(
            tone.tone_frames >= 100,
            "{codec:?}: the 440 Hz was heard: {tone:?}"
        );
    }
}

/// The production schedule: the driver wakes the pipeline whenever `poll_timeout` says (every
/// couple of milliseconds), the device moves 2 ms of audio per step. Steps that sent an RTCP
/// report are the only ones allowed to allocate (compound packets are built every few seconds);
/// every other step — capture, encode, RTP out, RTP in, jitter buffer, decode, playout — must not.
#[test]
fn steady_state_on_the_production_schedule_does_not_allocate() {
    const STEP: Duration = Duration::from_millis(2);
    for codec in [Codec::Opus, Codec::Pcmu] {
        let t0 = Instant::now();
        let mut a = End::new(codec, "10.0.0.1:4000", "10.0.0.2:5000", t0);
        let mut b = End::new(codec, "10.0.0.2:5000", "10.0.0.1:4000", t0);
        let mut now = t0;
        let step = |a: &mut End, b: &mut End, now: Instant| -> (bool, f64) {
            let mut energy = 0.0;
            for end in [&mut *a, &mut *b] {
                for _ in 0..96 {
                    let t = end.phase as f64 / 48_000.0;
                    let _ = end
                        .cap
                        .push((8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16);
                    end.phase += 1;
                }
                while let Ok(s) = end.play.pop() {
                    energy += f64::from(s).powi(2);
                }
                if end.p.poll_timeout().is_some_and(|t| t <= now) {
                    end.p.handle_timeout(now);
                }
            }
            let mut rtcp = false;
            for a_to_b in [true, false] {
                let (src, dst) = if a_to_b {
                    (&mut *a, &mut *b)
                } else {
                    (&mut *b, &mut *a)
                };
                while let Some(t) = src.p.poll_transmit() {
                    rtcp |= (200..=204).contains(&t.contents[1]);
                    dst.p.handle_datagram(now, src.addr, &t.contents);
                    src.p.recycle(t.contents);
                }
            }
            (rtcp, energy)
        };
        for _ in 0..500 {
            step(&mut a, &mut b, now);
            now += STEP;
        }
        let (mut counted, mut rtcp_steps, mut energy) = (0usize, 0usize, 0.0);
        for _ in 0..2000 {
            let (n, (rtcp, e)) = allocations(|| step(&mut a, &mut b, now));
            energy += e;
            if rtcp {
                rtcp_steps += 1;
            } else {
                counted += n;
            }
            now += STEP;
        }
        assert!(energy > 0.0, "{codec:?}: audio flowed");
        assert!(
            a.p.stats().rtp_received >= 240,
            "{codec:?}: {:?}",
            a.p.stats()
        );
        assert!(
            rtcp_steps < 10,
            "{codec:?}: RTCP in {rtcp_steps} of 2000 steps"
        );
        assert_eq!(
            counted, 0,
            "{codec:?}: {counted} allocations outside RTCP steps"
        );
    }
}

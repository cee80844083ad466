//! The media task's clocked schedule (issue 12): paced audio backends (tone source, null sink)
//! ticked on the driver's clock, and the pipeline woken only at a tick or at
//! `poll_timeout_clocked` — no 2 ms polling of the rings. Two calls' ends, wired back to back
//! in virtual time, must send and play a frame every 20 ms both ways with about one wake-up per
//! frame, no capture underrun and no playback underrun after the first frame.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use wakeline::media::audio::rt::RtStats;
use wakeline::media::audio::{self, AudioConfig, AudioSink, AudioSource, PacedAudio};
use wakeline::media::codec::EncoderConfig;
use wakeline::media::pipeline::{MediaPipeline, PipelineConfig};
use wakeline::signaling::sdp::{Codec, Negotiated};

const PERIOD: Duration = Duration::from_millis(20);

struct End {
    p: MediaPipeline,
    paced: PacedAudio,
    playback: std::sync::Arc<RtStats>,
    addr: SocketAddr,
    next_tick: Instant,
    wakeups: u32,
    heard: rtrb::Consumer<i16>,
}

impl End {
    fn new(hz: f32, me: &str, peer: &str, now: Instant) -> End {
        let (me, peer): (SocketAddr, SocketAddr) = (me.parse().unwrap(), peer.parse().unwrap());
        let (streams, paced) = audio::open(
            &AudioSource::Tone(hz),
            &AudioSink::Null,
            &AudioConfig::default(),
        )
        .unwrap();
        assert!(paced.is_complete() && !streams.handle.has_devices());
        let cfg = PipelineConfig {
            negotiated: Negotiated::sendrecv(Codec::Opus, me, peer),
            encoder: EncoderConfig::default(),
            latching: Default::default(),
            cname: "clocked@example.com".into(),
            seed: 11,
        };
        let mut p = MediaPipeline::new(
            cfg,
            streams.capture,
            streams.playback,
            now,
            SystemTime::UNIX_EPOCH,
        )
        .unwrap();
        let (tap, heard) = rtrb::RingBuffer::new(48_000 * 6);
        p.set_record(tap);
        // As the media task does: one playout frame queued before the sink's first tick.
        p.handle_timeout(now);
        End {
            p,
            paced,
            playback: streams.playback_stats,
            addr: me,
            next_tick: now + PERIOD,
            wakeups: 0,
            heard,
        }
    }

    fn next_wake(&self) -> Instant {
        let due = self.p.poll_timeout_clocked().expect("not closed");
        due.min(self.next_tick)
    }

    fn wake(&mut self, now: Instant) {
        self.wakeups += 1;
        while now >= self.next_tick {
            self.paced.tick();
            self.p.handle_timeout(now);
            self.next_tick += PERIOD;
        }
        self.p.handle_timeout(now);
    }
}

fn deliver(from: &mut End, to: &mut End, now: Instant) {
    while let Some(t) = from.p.poll_transmit() {
        to.p.handle_datagram(now, from.addr, &t.contents);
        from.p.recycle(t.contents);
    }
}

#[test]
fn paced_backends_on_the_drivers_clock_need_one_wakeup_per_frame() {
    let t0 = Instant::now();
    let mut a = End::new(440.0, "192.0.2.1:4000", "192.0.2.2:5000", t0);
    let mut b = End::new(
        1000.0,
        "192.0.2.2:5000",
        "192.0.2.1:4000",
        t0 + Duration::from_millis(7),
    );
    let end = t0 + Duration::from_secs(5);
    loop {
        let now = a.next_wake().min(b.next_wake());
        if now >= end {
            break;
        }
        // Poll-driven code would come back within 2 ms; the clocked schedule waits for a tick.
        if a.next_wake() <= now {
            a.wake(now);
        }
        if b.next_wake() <= now {
            b.wake(now);
        }
        deliver(&mut a, &mut b, now);
        deliver(&mut b, &mut a, now);
    }
    for (name, e) in [("a", &mut a), ("b", &mut b)] {
        let st = e.p.stats();
        let frames = 250;
        assert!(st.rtp_sent.abs_diff(frames) <= 2, "{name}: {st:?}");
        assert!(st.rtp_received.abs_diff(frames) <= 2, "{name}: {st:?}");
        assert_eq!(st.capture_underruns, 0, "{name}: {st:?}");
        assert_eq!(st.concealed_frames, 0, "{name}: {st:?}");
        let play = e.playback.snapshot();
        assert!(play.callbacks.abs_diff(frames) <= 1, "{name}: {play:?}");
        assert_eq!(
            play.underruns, 0,
            "{name}: the sink never ran dry: {play:?}"
        );
        // About one wake-up per 20 ms frame (plus RTCP), not one per 2 ms poll.
        assert!(
            (250..=265).contains(&e.wakeups),
            "{name}: {} wake-ups in 5 s",
            e.wakeups
        );
        // The far end's tone was decoded: audio, not silence, after the jitter buffer primed.
        let heard: Vec<i16> = std::iter::from_fn(|| e.heard.pop().ok()).collect();
        let loud = heard[4_800..]
            .iter()
            .filter(|s| s.unsigned_abs() > 1000)
            .count();
        assert!(
            loud > heard.len() / 4,
            "{name}: {loud} loud samples of {}",
            heard.len()
        );
    }
}

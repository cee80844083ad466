//! Capture-to-playout latency between two media pipelines over real UDP on 127.0.0.1
//! (issue 3's latency measurement). A plain `main` (no criterion) that prints numbers.
//!
//! Flags: `--runs N` (or criterion's `--sample-size N`, or a bare number), default 20; other
//! criterion flags such as `--warm-up-time 1` are accepted and ignored with their values.
//!
//! One run: two [`MediaPipeline`]s, A and B, each owning a non-blocking-by-timeout
//! `std::net::UdpSocket` bound to 127.0.0.1 (RTP and RTCP muxed) and driven on its own thread
//! by `poll_timeout` / `handle_timeout` / `handle_datagram` / `poll_transmit` with the real
//! clock, as the production driver does. Two more threads play the sound cards, paced by the
//! real clock at 10 ms periods with random phases: A's "microphone" pushes 480 samples per
//! period into A's capture ring (silence, then a 20 ms 1 kHz tone burst, then silence), and
//! B's "speaker" pops 480 samples per period from B's playback ring.
//!
//! - T0: the instant the period holding the burst's first sample was pushed into A's
//!   capture ring (the burst starts at that period's first sample).
//! - T1: the instant B's speaker popped the period holding the first output sample whose
//!   magnitude exceeds a quarter of the burst's amplitude, plus that sample's offset in the
//!   period (a device plays the period's samples over the next 10 ms).
//!
//! Latency = T1 − T0, nothing subtracted. A real device adds its own buffering on both ends
//! (at least one period each), which this does not model.
//!
//! The composition printed per run (ms): `A_hold` = T0 → the RTP packet carrying the burst
//! leaves A's socket (found by decoding A's packets in order), of which `fill` is the wait for
//! the rest of the 20 ms frame and the remainder A's poll latency (the pipeline looks at its
//! capture ring every `POLL_INTERVAL`) and encode; `net` = → B's socket
//! read; `B_side` = → T1, split into `jb_now` (B's current jitter-buffer delay from its stats
//! at its first timeout after the burst packet arrived: the wait of a minimum-transit packet
//! from arrival to playout, which includes the phase of B's speaker (B plays out when its
//! playback ring runs below one 10 ms period); `jb_mean` is the call's mean),
//! `in_frm` (the burst's offset in the frame plus the codec look-ahead, Opus 6.5 ms),
//! `ring` (the playback-ring level a pushed frame queues behind: the smallest level seen before
//! a speaker pop, less that pop) and `rest`. `late_wk` is the worst wake-up lateness of the
//! device threads (machine load), `conc` B's concealed frames (`c<T0`: before the burst arrived), `drop` A's discarded frames.
//!
//! Run with `cargo bench --bench latency` (release). Optional argument: runs per codec
//! (default 20).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use wakeline::media::codec::{make_decoder, EncoderConfig, MAX_FRAME_SAMPLES48};
use wakeline::media::pipeline::{CallStats, MediaPipeline, PipelineConfig};
use wakeline::signaling::sdp::{Codec, Negotiated};

/// Samples per second in the rings.
const RATE: f64 = 48_000.0;
/// One device period: 10 ms at 48 kHz.
const CHUNK: usize = 480;
/// The device period.
const PERIOD: Duration = Duration::from_millis(10);
/// Ring capacity (200 ms, as `AudioConfig::default`).
const RING: usize = 9600;
/// Periods of silence before the burst (plus up to 3 more, at random): 3 s, so that the jitter
/// buffer has had its chances to shrink from its start-up delay (at most one frame per second)
/// and the measurement is of a call in steady state.
const WARMUP: usize = 300;
/// Periods of tone.
const BURST: usize = 2;
/// Periods after the burst starts, to let it come out.
const TAIL: usize = 30;
/// Burst amplitude and detection threshold.
const AMPLITUDE: f64 = 16_000.0;
const THRESHOLD: i16 = 4_000;
/// Opus algorithmic look-ahead at 48 kHz (2.5 ms + 4 ms), from the codec's documentation.
const OPUS_LOOKAHEAD_MS: f64 = 6.5;

fn negotiated(codec: Codec, me: SocketAddr, peer: SocketAddr) -> Negotiated {
    Negotiated::sendrecv(codec, me, peer)
}

fn sleep_until(t: Instant) -> Duration {
    let now = Instant::now();
    if t > now {
        thread::sleep(t - now);
    }
    Instant::now().saturating_duration_since(t)
}

/// RTP (not RTCP, RFC 5761 §4) sequence number of a datagram.
fn rtp_seq(b: &[u8]) -> Option<u16> {
    if b.len() >= 12 && !(192..=223).contains(&b[1]) {
        Some(u16::from_be_bytes([b[2], b[3]]))
    } else {
        None
    }
}

/// The payload of an RTP packet (after CSRCs and any header extension, RFC 3550 §5.1).
fn rtp_payload(b: &[u8]) -> &[u8] {
    let mut off = 12 + 4 * usize::from(b[0] & 0x0f);
    if b[0] & 0x10 != 0 && b.len() >= off + 4 {
        off += 4 + 4 * usize::from(u16::from_be_bytes([b[off + 2], b[off + 3]]));
    }
    b.get(off..).unwrap_or(&[])
}

/// What one pipeline's driver saw.
struct DriveLog {
    /// (instant, sequence number, payload) of RTP packets sent.
    sent: Vec<(Instant, u16, Vec<u8>)>,
    /// (instant, sequence number) of RTP packets received.
    received: Vec<(Instant, u16)>,
    stats: CallStats,
    /// (instant, current jitter-buffer delay ms, concealed frames so far) after every timeout.
    jitter: Vec<(Instant, f64, u64)>,
}

/// The media task: sleep on the socket until the next timeout, handle what comes.
fn drive(mut p: MediaPipeline, sock: UdpSocket, stop: Arc<AtomicBool>) -> DriveLog {
    let mut log = DriveLog {
        sent: Vec::with_capacity(512),
        received: Vec::with_capacity(512),
        stats: p.stats(),
        jitter: Vec::with_capacity(1024),
    };
    let mut buf = vec![0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let Some(deadline) = p.poll_timeout() else {
            break;
        };
        let now = Instant::now();
        if deadline <= now {
            p.handle_timeout(now);
            let st = p.stats();
            log.jitter
                .push((now, st.jitter_buffer_ms, st.concealed_frames));
        } else {
            sock.set_read_timeout(Some(deadline - now)).unwrap();
            match sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let t = Instant::now();
                    if let Some(seq) = rtp_seq(&buf[..n]) {
                        log.received.push((t, seq));
                    }
                    p.handle_datagram(t, from, &buf[..n]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("recv: {e}"),
            }
        }
        while let Some(t) = p.poll_transmit() {
            let sent_at = Instant::now();
            sock.send_to(&t.contents, t.destination).unwrap();
            if let Some(seq) = rtp_seq(&t.contents) {
                log.sent
                    .push((sent_at, seq, rtp_payload(&t.contents).to_vec()));
            }
            p.recycle(t.contents);
        }
    }
    log.stats = p.stats();
    log
}

/// One run's result, all in ms.
struct Run {
    total: f64,
    a_hold: f64,
    /// Part of `a_hold` spent waiting for the rest of the 20 ms frame to be captured.
    a_fill: f64,
    network: f64,
    b_side: f64,
    jb_ms: f64,
    /// B's current jitter-buffer delay at its first timeout after the burst packet arrived.
    jb_now_ms: f64,
    /// B's concealed frames before the burst (start-up and delay growth).
    conc_before: u64,
    /// Where the burst starts inside B's decoded frame: its offset in A's frame plus the codec
    /// look-ahead.
    in_frame_ms: f64,
    /// Playback-ring level when B's pipeline pushes a frame (standing slack).
    ring_ms: f64,
    late_wakeup_ms: f64,
    concealed: u64,
    capture_dropped: u64,
}

fn run_once(codec: Codec, rng: &mut impl Rng) -> Result<Run, String> {
    let sa = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let sb = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let (addr_a, addr_b) = (sa.local_addr().unwrap(), sb.local_addr().unwrap());
    let start = Instant::now();
    let make = |me, peer, seed| {
        let (cap_tx, cap_rx) = rtrb::RingBuffer::<i16>::new(RING);
        let (play_tx, play_rx) = rtrb::RingBuffer::<i16>::new(RING);
        let cfg = PipelineConfig {
            negotiated: negotiated(codec, me, peer),
            encoder: EncoderConfig::default(),
            latching: Default::default(),
            cname: format!("latency{seed}@127.0.0.1"),
            seed,
        };
        let mut p = MediaPipeline::new(cfg, cap_rx, play_tx, start, SystemTime::now()).unwrap();
        p.set_device_period(PERIOD);
        (p, cap_tx, play_rx)
    };
    let (pa, mut mic, _a_speaker) = make(addr_a, addr_b, rng.random());
    let (pb, _b_mic, mut speaker) = make(addr_b, addr_a, rng.random());
    let stop = Arc::new(AtomicBool::new(false));
    let da = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || drive(pa, sa, stop))
    };
    let db = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || drive(pb, sb, stop))
    };

    let burst_at = WARMUP + rng.random_range(0..4);
    let chunks = burst_at + TAIL;
    let mic_start = start + Duration::from_micros(rng.random_range(0..20_000));
    let speaker_start = start + Duration::from_micros(rng.random_range(0..20_000));

    // A's microphone.
    let mic_thread = thread::spawn(move || {
        let mut t0 = None;
        let mut late = Duration::ZERO;
        let mut buf = [0i16; CHUNK];
        // As long as the speaker, so that A keeps sending until the end.
        for k in 0..chunks + 10 {
            late = late.max(sleep_until(mic_start + PERIOD * k as u32));
            for (i, s) in buf.iter_mut().enumerate() {
                let n = k * CHUNK + i;
                let b = burst_at * CHUNK;
                *s = if n >= b && n < b + BURST * CHUNK {
                    let t = (n - b) as f64 / RATE;
                    (AMPLITUDE * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()) as i16
                } else {
                    0
                };
            }
            let (_, rest) = mic.push_partial_slice(&buf);
            assert!(rest.is_empty(), "capture ring overflow");
            if k == burst_at {
                t0 = Some(Instant::now());
            }
        }
        (t0, late)
    });
    // B's speaker.
    let speaker_thread = thread::spawn(move || {
        let mut t1 = None;
        let mut peak = 0i16;
        let mut late = Duration::ZERO;
        // Smallest level seen just before a pop, once past start-up.
        let mut min_fill = usize::MAX;
        let mut buf = [0i16; CHUNK];
        // The speaker runs a little longer than the mic to catch the burst.
        for k in 0..chunks + 10 {
            late = late.max(sleep_until(speaker_start + PERIOD * k as u32));
            if k >= 10 {
                min_fill = min_fill.min(speaker.slots());
            }
            let (got, missing) = speaker.pop_partial_slice(&mut buf);
            let popped = Instant::now();
            let n = got.len();
            missing.fill(0);
            peak = peak.max(
                buf[..n]
                    .iter()
                    .map(|s| s.saturating_abs())
                    .max()
                    .unwrap_or(0),
            );
            if t1.is_none() {
                if let Some(i) = buf[..n].iter().position(|s| s.abs() > THRESHOLD) {
                    t1 = Some(popped + Duration::from_secs_f64(i as f64 / RATE));
                }
            }
        }
        (t1, late, min_fill, peak)
    });

    let (t0, mic_late) = mic_thread.join().unwrap();
    let (t1, speaker_late, min_fill, peak) = speaker_thread.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let la = da.join().unwrap();
    let lb = db.join().unwrap();

    let t0 = t0.ok_or("no T0")?;
    let t1 = t1.ok_or_else(|| {
        format!(
            "burst never came out of B's speaker (peak {peak}, B late {}, concealed {}, \
             A capture dropped {})",
            lb.stats.late, lb.stats.concealed_frames, la.stats.capture_dropped
        )
    })?;
    if t1 < t0 {
        return Err("output crossed the threshold before the burst was captured".into());
    }
    // The packet carrying the burst: decode A's stream in order with a fresh decoder and
    // take the first packet whose audio crosses the threshold (codec look-ahead included).
    let mut dec = make_decoder(&negotiated(codec, addr_a, addr_b)).map_err(|e| e.to_string())?;
    let mut pcm = vec![0i16; MAX_FRAME_SAMPLES48];
    let mut burst_packet = None;
    for (t, seq, payload) in &la.sent {
        let n = dec.decode(payload, &mut pcm).map_err(|e| e.to_string())?;
        if pcm[..n].iter().any(|s| s.abs() > THRESHOLD) {
            burst_packet = Some((*t, *seq));
            break;
        }
    }
    let (ta, seq) = burst_packet.ok_or("no packet of A carries the burst")?;
    let &(tb, _) = lb
        .received
        .iter()
        .find(|(_, s)| *s == seq)
        .ok_or("B never received the burst packet")?;
    let &(_, jb_now, conc_before) = lb
        .jitter
        .iter()
        .find(|(t, _, _)| *t >= tb)
        .ok_or("B never ticked after the burst arrived")?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let samples_ms = |n: usize| n as f64 / RATE * 1000.0;
    // The burst starts at sample `burst_at * CHUNK` of A's capture stream, in 960-sample frames.
    let offset = (burst_at * CHUNK) % 960;
    let lookahead = if codec == Codec::Opus {
        OPUS_LOOKAHEAD_MS
    } else {
        0.0
    };
    Ok(Run {
        total: ms(t1 - t0),
        a_hold: ms(ta.saturating_duration_since(t0)),
        a_fill: samples_ms(960 - offset - CHUNK),
        network: ms(tb.saturating_duration_since(ta)),
        b_side: ms(t1.saturating_duration_since(tb)),
        jb_ms: lb.stats.jitter_buffer_mean_ms,
        jb_now_ms: jb_now,
        conc_before,
        in_frame_ms: samples_ms(offset) + lookahead,
        // A pop takes a period at once; what stays behind is what a pushed frame queues behind.
        ring_ms: samples_ms(min_fill.saturating_sub(CHUNK)),
        late_wakeup_ms: ms(mic_late.max(speaker_late)),
        concealed: lb.stats.concealed_frames,
        capture_dropped: la.stats.capture_dropped,
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Criterion's flags that take a value: skipped with their value, so that `--warm-up-time 1`
/// is not read as a run count.
const VALUE_FLAGS: &[&str] = &[
    "--warm-up-time",
    "--measurement-time",
    "--save-baseline",
    "--baseline",
    "--baseline-lenient",
    "--load-baseline",
    "--noise-threshold",
    "--significance-level",
    "--confidence-level",
    "--nresamples",
    "--profile-time",
    "--output-format",
    "--plotting-backend",
    "--color",
    "--format",
];

/// The run count from the command line (`cargo bench --bench latency -- …`): `--runs N`, or
/// criterion's `--sample-size N`, or a bare number; 20 by default. Other criterion flags are
/// accepted and ignored (with their values); a bad count is an error.
fn runs_from_args(args: impl Iterator<Item = String>) -> Result<usize, String> {
    let mut runs = None;
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (a.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        if flag == "--runs" || flag == "--sample-size" {
            let v = value(&flag)?;
            let n: usize = v
                .parse()
                .map_err(|_| format!("{flag} {v:?}: not a run count"))?;
            runs = Some(n.max(1));
        } else if VALUE_FLAGS.contains(&flag.as_str()) {
            value(&flag)?;
        } else if !a.starts_with('-') {
            if let Ok(n) = a.parse::<usize>() {
                runs = Some(n.max(1));
            }
        }
    }
    Ok(runs.unwrap_or(20))
}

fn check_runs_from_args() {
    let parse = |s: &str| runs_from_args(s.split_whitespace().map(str::to_owned));
    assert_eq!(parse("--bench"), Ok(20));
    assert_eq!(
        parse("--bench --warm-up-time 1 --measurement-time 3"),
        Ok(20)
    );
    assert_eq!(parse("--warm-up-time=1 --runs 5"), Ok(5));
    assert_eq!(parse("--bench --sample-size 10"), Ok(10));
    assert_eq!(parse("--bench 7"), Ok(7));
    assert!(parse("--runs x").is_err() && parse("--runs").is_err());
}

fn main() {
    // The bench has no test harness: its argument parser checks itself on every start.
    check_runs_from_args();
    let runs = match runs_from_args(std::env::args().skip(1)) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("latency: {e}");
            std::process::exit(2);
        }
    };
    let mut rng = rand::rng();
    println!("capture-to-playout latency, 127.0.0.1 UDP, real clock, 20 ms ptime, {runs} runs");
    println!(
        "{:>4} {:>7} {:>7} {:>6} {:>6} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>7} {:>4} {:>4} {:>4}",
        "run",
        "total",
        "A_hold",
        "fill",
        "net",
        "B_side",
        "jb_mean",
        "jb_now",
        "in_frm",
        "ring",
        "rest",
        "late_wk",
        "conc",
        "c<T0",
        "drop"
    );
    for codec in [Codec::Opus, Codec::Pcmu] {
        println!("--- {}", codec.encoding_name());
        let rest = |r: &Run| r.b_side - r.jb_now_ms - r.in_frame_ms - r.ring_ms;
        let mut results = Vec::new();
        for i in 0..runs {
            match run_once(codec, &mut rng) {
                Ok(r) => {
                    println!(
                        "{:>4} {:>7.2} {:>7.2} {:>6.1} {:>6.3} {:>7.2} {:>7.2} {:>7.2} {:>7.1} {:>6.2} {:>6.2} {:>7.2} {:>4} {:>4} {:>4}",
                        i,
                        r.total,
                        r.a_hold,
                        r.a_fill,
                        r.network,
                        r.b_side,
                        r.jb_ms,
                        r.jb_now_ms,
                        r.in_frame_ms,
                        r.ring_ms,
                        rest(&r),
                        r.late_wakeup_ms,
                        r.concealed,
                        r.conc_before,
                        r.capture_dropped
                    );
                    results.push(r);
                }
                Err(e) => println!("{i:>4} FAILED: {e}"),
            }
        }
        let col = |f: fn(&Run) -> f64| results.iter().map(f).collect::<Vec<f64>>();
        let mut total = col(|r| r.total);
        let worst = total.iter().copied().fold(f64::NAN, f64::max);
        let best = total.iter().copied().fold(f64::NAN, f64::min);
        println!(
            "{} summary over {} ok runs: median {:.2} ms, worst {:.2} ms, best {:.2} ms",
            codec.encoding_name(),
            results.len(),
            median(&mut total),
            worst,
            best
        );
        let mut calm: Vec<f64> = results
            .iter()
            .filter(|r| r.jb_now_ms < 30.0)
            .map(|r| r.total)
            .collect();
        let calm_worst = calm.iter().copied().fold(f64::NAN, f64::max);
        println!(
            "  runs whose jitter buffer stayed near its 20 ms floor (jb_now < 30 ms): {}, \
             median {:.2} ms, worst {:.2} ms",
            calm.len(),
            median(&mut calm),
            calm_worst
        );
        println!(
            "  composition (medians, ms): A hold {:.2} (of which frame fill {:.1}; the rest is \
             A's poll latency + encode) + network/wake-up {:.3} + B side {:.2}",
            median(&mut col(|r| r.a_hold)),
            median(&mut col(|r| r.a_fill)),
            median(&mut col(|r| r.network)),
            median(&mut col(|r| r.b_side)),
        );
        println!(
            "  B side = jitter buffer (stats, at the burst) {:.2} [call mean {:.2}] + burst position in frame incl. look-ahead \
             {:.2} + playback-ring slack {:.2} + rest {:.2} (decode, scheduling)",
            median(&mut col(|r| r.jb_now_ms)),
            median(&mut col(|r| r.jb_ms)),
            median(&mut col(|r| r.in_frame_ms)),
            median(&mut col(|r| r.ring_ms)),
            median(&mut results.iter().map(rest).collect::<Vec<f64>>()),
        );
    }
}

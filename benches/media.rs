//! Media benchmarks (issue 3).
//!
//! `codec_bare`: bare libopus (the `opus` crate directly) against wakeline's `Encoder`/`Decoder`
//! trait objects, per 20 ms frame (960 samples at 48 kHz) of a seeded speech-like signal, plus
//! G.711 through the trait (resampling included).
//!
//! `send_path`: one 20 ms frame through `MediaPipeline` (capture ring → encode → RTP packet
//! queued) against bare libopus encoding the same frames. `recv_path`: one RTP datagram through
//! `MediaPipeline` (depacketise → jitter buffer → decode → playback ring) against bare libopus
//! decoding the same payloads. Both pipeline benches run a whole tick, so they include the
//! other direction's idle work (silence out, or an underrun). `calls_per_core`: N two-way calls
//! (pipeline pairs wired back to back) ticking in one thread; the throughput is two-way ticks
//! per second, and one core sustains `throughput × 20 ms` real-time calls. Its baseline,
//! `…_codec_states_…`, is the codec work alone with as many codec states as the calls hold (an
//! encoder and a decoder per side, bare libopus for Opus): the pipelines' own cost is the
//! difference, and neither side gets the cache advantage of one shared codec state.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rand::{rngs::StdRng, Rng, SeedableRng};

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use criterion::Throughput;
use wakeline::media::codec::{
    make_decoder, make_encoder, EncoderConfig, MAX_FRAME_SAMPLES48, MAX_PAYLOAD,
};
use wakeline::media::pipeline::{MediaPipeline, PipelineConfig};
use wakeline::signaling::sdp::{Codec, Direction, Negotiated};

const FRAME: usize = 960;
const FRAMES: usize = 50;

/// One second of a speech-like signal: a few harmonics with a slow vibrato and an envelope,
/// plus seeded noise.
fn speech_like() -> Vec<i16> {
    let mut rng = StdRng::seed_from_u64(0x5EED);
    (0..FRAME * FRAMES)
        .map(|i| {
            let t = i as f64 / 48_000.0;
            let f0 = 140.0 + 20.0 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
            let env = 0.6 + 0.4 * (2.0 * std::f64::consts::PI * 4.0 * t).sin();
            let mut v = 0.0;
            for (k, a) in [
                (1.0, 3000.0),
                (2.0, 2000.0),
                (3.0, 1200.0),
                (5.0, 600.0),
                (8.0, 300.0),
            ] {
                v += a * (2.0 * std::f64::consts::PI * f0 * k * t).sin();
            }
            (env * v + rng.random_range(-500.0..500.0)) as i16
        })
        .collect()
}

fn negotiated(codec: Codec) -> Negotiated {
    let addr = "127.0.0.1:4000".parse().unwrap();
    Negotiated {
        local_rtp: addr,
        codec,
        payload_type: codec.default_payload_type(),
        clock_rate: codec.clock_rate(),
        telephone_event: None,
        remote_rtp: addr,
        remote_rtcp: addr,
        rtcp_mux: true,
        direction: Direction::SendRecv,
        ptime: 20,
        opus_fec: false,
        opus_max_average_bitrate: None,
        opus_max_playback_rate: None,
        opus_stereo: false,
    }
}

fn bare_encoder() -> opus::Encoder {
    let mut e = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    e.set_bitrate(opus::Bitrate::Bits(32_000)).unwrap();
    e.set_complexity(5).unwrap();
    e
}

fn codec_bare(c: &mut Criterion) {
    let pcm = speech_like();
    let frames: Vec<&[i16]> = pcm.chunks(FRAME).collect();
    // Packets for the decode benches, from the bare encoder (identical settings to ours).
    let packets: Vec<Vec<u8>> = {
        let mut e = bare_encoder();
        let mut buf = [0u8; MAX_PAYLOAD];
        frames
            .iter()
            .map(|f| {
                let n = e.encode(f, &mut buf).unwrap();
                buf[..n].to_vec()
            })
            .collect()
    };

    let mut g = c.benchmark_group("codec_bare");
    let mut buf = [0u8; MAX_PAYLOAD];
    let mut out = [0i16; MAX_FRAME_SAMPLES48];

    let mut e = bare_encoder();
    let mut i = 0;
    g.bench_function("libopus_encode_20ms", |b| {
        b.iter(|| {
            i = (i + 1) % FRAMES;
            black_box(e.encode(black_box(frames[i]), &mut buf).unwrap())
        })
    });
    let mut e = make_encoder(&negotiated(Codec::Opus), &EncoderConfig::default()).unwrap();
    g.bench_function("trait_opus_encode_20ms", |b| {
        b.iter(|| {
            i = (i + 1) % FRAMES;
            black_box(e.encode(black_box(frames[i]), &mut buf).unwrap())
        })
    });

    let mut d = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    g.bench_function("libopus_decode_20ms", |b| {
        b.iter(|| {
            i = (i + 1) % FRAMES;
            black_box(
                d.decode(black_box(&packets[i]), &mut out[..FRAME], false)
                    .unwrap(),
            )
        })
    });
    let mut d = make_decoder(&negotiated(Codec::Opus)).unwrap();
    g.bench_function("trait_opus_decode_20ms", |b| {
        b.iter(|| {
            i = (i + 1) % FRAMES;
            black_box(d.decode(black_box(&packets[i]), &mut out).unwrap())
        })
    });
    g.bench_function("trait_opus_conceal_20ms", |b| {
        b.iter(|| black_box(d.conceal(&mut out).unwrap()))
    });

    let mut e = make_encoder(&negotiated(Codec::Pcmu), &EncoderConfig::default()).unwrap();
    g.bench_function("trait_pcmu_encode_20ms", |b| {
        b.iter(|| {
            i = (i + 1) % FRAMES;
            black_box(e.encode(black_box(frames[i]), &mut buf).unwrap())
        })
    });
    let pcmu = [0x55u8; 160];
    let mut d = make_decoder(&negotiated(Codec::Pcmu)).unwrap();
    g.bench_function("trait_pcmu_decode_20ms", |b| {
        b.iter(|| black_box(d.decode(black_box(&pcmu), &mut out).unwrap()))
    });
    g.finish();
}

const TICK: Duration = Duration::from_millis(20);

/// A pipeline for `codec` at `me` talking to `peer`, with its capture-ring producer and
/// playback-ring consumer.
fn pipeline(
    codec: Codec,
    me: SocketAddr,
    peer: SocketAddr,
    now: Instant,
) -> (MediaPipeline, rtrb::Producer<i16>, rtrb::Consumer<i16>) {
    let (cap, cap_rx) = rtrb::RingBuffer::new(FRAME * 8);
    let (play_tx, play) = rtrb::RingBuffer::new(FRAME * 8);
    let mut n = negotiated(codec);
    n.local_rtp = me;
    n.remote_rtp = peer;
    n.remote_rtcp = peer;
    let cfg = PipelineConfig {
        negotiated: n,
        encoder: EncoderConfig::default(),
        latching: Default::default(),
        cname: "bench@example.com".into(),
        seed: 1,
    };
    let p = MediaPipeline::new(cfg, cap_rx, play_tx, now, SystemTime::UNIX_EPOCH).unwrap();
    (p, cap, play)
}

fn drain(ring: &mut rtrb::Consumer<i16>) {
    let n = ring.slots();
    if let Ok(chunk) = ring.read_chunk(n) {
        chunk.commit_all();
    }
}

fn addrs() -> (SocketAddr, SocketAddr) {
    (
        "10.0.0.1:4000".parse().unwrap(),
        "10.0.0.2:5000".parse().unwrap(),
    )
}

fn send_path(c: &mut Criterion) {
    let pcm = speech_like();
    let frames: Vec<&[i16]> = pcm.chunks(FRAME).collect();
    let mut g = c.benchmark_group("send_path");
    let mut buf = [0u8; MAX_PAYLOAD];
    let mut e = bare_encoder();
    let mut i = 0;
    g.bench_function("libopus_encode_20ms", |b| {
        b.iter(|| {
            i = (i + 1) % FRAMES;
            black_box(e.encode(black_box(frames[i]), &mut buf).unwrap())
        })
    });
    for codec in [Codec::Opus, Codec::Pcmu] {
        let (me, peer) = addrs();
        let mut now = Instant::now();
        let (mut p, mut cap, mut play) = pipeline(codec, me, peer, now);
        let name = format!(
            "pipeline_{}_tick_20ms",
            codec.encoding_name().to_lowercase()
        );
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % FRAMES;
                cap.push_entire_slice(frames[i]).unwrap();
                p.handle_tick(now);
                now += TICK;
                while let Some(t) = p.poll_transmit() {
                    black_box(&t.contents);
                    p.recycle(t.contents);
                }
                drain(&mut play);
            })
        });
    }
    g.finish();
}

/// Writes an RTP header (V=2, no CSRC) for `pt`, `seq`, `ts` and appends `payload`.
fn rtp(buf: &mut Vec<u8>, pt: u8, seq: u16, ts: u32, payload: &[u8]) {
    buf.clear();
    buf.extend_from_slice(&[0x80, pt]);
    buf.extend_from_slice(&seq.to_be_bytes());
    buf.extend_from_slice(&ts.to_be_bytes());
    buf.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    buf.extend_from_slice(payload);
}

fn recv_path(c: &mut Criterion) {
    let pcm = speech_like();
    let mut g = c.benchmark_group("recv_path");
    let mut out = [0i16; MAX_FRAME_SAMPLES48];
    for codec in [Codec::Opus, Codec::Pcmu] {
        let payloads: Vec<Vec<u8>> = {
            let mut e = make_encoder(&negotiated(codec), &EncoderConfig::default()).unwrap();
            let mut buf = [0u8; MAX_PAYLOAD];
            pcm.chunks(FRAME)
                .map(|f| {
                    let n = e.encode(f, &mut buf).unwrap();
                    buf[..n].to_vec()
                })
                .collect()
        };
        let lower = codec.encoding_name().to_lowercase();
        let mut i = 0;
        if codec == Codec::Opus {
            let mut d = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
            g.bench_function("libopus_decode_20ms", |b| {
                b.iter(|| {
                    i = (i + 1) % FRAMES;
                    black_box(
                        d.decode(black_box(&payloads[i]), &mut out[..FRAME], false)
                            .unwrap(),
                    )
                })
            });
        } else {
            let mut d = make_decoder(&negotiated(codec)).unwrap();
            g.bench_function(format!("trait_{lower}_decode_20ms"), |b| {
                b.iter(|| {
                    i = (i + 1) % FRAMES;
                    black_box(d.decode(black_box(&payloads[i]), &mut out).unwrap())
                })
            });
        }
        let (me, peer) = addrs();
        let mut now = Instant::now();
        let (mut p, _cap, mut play) = pipeline(codec, me, peer, now);
        let pt = codec.default_payload_type();
        let step = codec.clock_rate() / 50;
        let (mut seq, mut ts) = (0u16, 0u32);
        let mut datagram = Vec::with_capacity(MAX_PAYLOAD);
        let start = now;
        g.bench_function(format!("pipeline_{lower}_tick_20ms"), |b| {
            b.iter(|| {
                i = (i + 1) % FRAMES;
                rtp(&mut datagram, pt, seq, ts, &payloads[i]);
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(step);
                p.handle_datagram(now, peer, black_box(&datagram));
                p.handle_tick(now);
                now += TICK;
                drain(&mut play);
            })
        });
        // The ticks above (when a filter did not skip them) decoded real frames, not silence.
        let st = p.stats();
        assert!(
            now == start || (st.rtp_received > 0 && st.concealed_frames * 10 < st.rtp_received),
            "{st:?}"
        );
    }
    g.finish();
}

/// One side of a benchmarked call.
struct Side {
    p: MediaPipeline,
    addr: SocketAddr,
    cap: rtrb::Producer<i16>,
    play: rtrb::Consumer<i16>,
}

fn calls_per_core(c: &mut Criterion) {
    let pcm = speech_like();
    let frames: Vec<&[i16]> = pcm.chunks(FRAME).collect();
    let mut g = c.benchmark_group("calls_per_core");
    for codec in [Codec::Opus, Codec::Pcmu] {
        const N: usize = 8;
        let mut now = Instant::now();
        let mut calls: Vec<(Side, Side)> = (0..N)
            .map(|k| {
                let a: SocketAddr = format!("10.0.{k}.1:4000").parse().unwrap();
                let b: SocketAddr = format!("10.0.{k}.2:5000").parse().unwrap();
                let (pa, ca, qa) = pipeline(codec, a, b, now);
                let (pb, cb, qb) = pipeline(codec, b, a, now);
                let side = |p, addr, cap, play| Side { p, addr, cap, play };
                (side(pa, a, ca, qa), side(pb, b, cb, qb))
            })
            .collect();
        let mut i = 0;
        let start = now;
        g.throughput(Throughput::Elements(N as u64));
        let name = format!(
            "{}_{N}_calls_tick_20ms",
            codec.encoding_name().to_lowercase()
        );
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % FRAMES;
                for (x, y) in calls.iter_mut() {
                    for s in [&mut *x, &mut *y] {
                        let _ = s.cap.push_entire_slice(frames[i]);
                        s.p.handle_timeout(now);
                        drain(&mut s.play);
                    }
                    while let Some(t) = x.p.poll_transmit() {
                        y.p.handle_datagram(now, x.addr, &t.contents);
                        x.p.recycle(t.contents);
                    }
                    while let Some(t) = y.p.poll_transmit() {
                        x.p.handle_datagram(now, y.addr, &t.contents);
                        y.p.recycle(t.contents);
                    }
                }
                now += TICK;
            })
        });
        for (x, y) in &calls {
            let (sx, sy) = (x.p.stats(), y.p.stats());
            let ran = now > start;
            assert!(
                !ran || (sx.rtp_received > 0 && sy.rtp_received > 0),
                "{sx:?} {sy:?}"
            );
        }
        codec_states_baseline(&mut g, codec, N, &frames);
    }
    g.finish();
}

type EncodeFn = Box<dyn FnMut(&[i16], &mut [u8]) -> usize>;
type DecodeFn = Box<dyn FnMut(&[u8], &mut [i16]) -> usize>;

/// One side's codec states: bare libopus for Opus, the trait objects for G.711.
fn codec_side(codec: Codec) -> (EncodeFn, DecodeFn) {
    if codec == Codec::Opus {
        let mut e = bare_encoder();
        let mut d = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        (
            Box::new(move |pcm, out| e.encode(pcm, out).unwrap()),
            Box::new(move |p, out| d.decode(p, &mut out[..FRAME], false).unwrap()),
        )
    } else {
        let mut e = make_encoder(&negotiated(codec), &EncoderConfig::default()).unwrap();
        let mut d = make_decoder(&negotiated(codec)).unwrap();
        (
            Box::new(move |pcm, out| e.encode(pcm, out).unwrap()),
            Box::new(move |p, out| d.decode(p, out).unwrap()),
        )
    }
}

/// `calls_per_core`'s baseline: `n` calls' codec work alone, per 20 ms tick, with two encoder
/// and two decoder states per call (each side decodes what the other encoded).
fn codec_states_baseline(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    codec: Codec,
    n: usize,
    frames: &[&[i16]],
) {
    let mut sides: Vec<(EncodeFn, DecodeFn)> = (0..2 * n).map(|_| codec_side(codec)).collect();
    let mut payload = [0u8; MAX_PAYLOAD];
    let mut pcm = [0i16; MAX_FRAME_SAMPLES48];
    let mut i = 0;
    let (mut decoded, mut ticks) = (0usize, 0usize);
    g.throughput(Throughput::Elements(n as u64));
    let name = format!(
        "{}_{n}_calls_codec_states_20ms",
        codec.encoding_name().to_lowercase()
    );
    g.bench_function(name, |b| {
        b.iter(|| {
            i = (i + 1) % FRAMES;
            ticks += 1;
            for pair in sides.chunks_mut(2) {
                for (from, to) in [(0, 1), (1, 0)] {
                    let len = (pair[from].0)(black_box(frames[i]), &mut payload);
                    decoded += (pair[to].1)(black_box(&payload[..len]), &mut pcm);
                }
            }
        })
    });
    assert!(ticks == 0 || decoded > 0, "the baseline decoded nothing");
}

criterion_group!(benches, codec_bare, send_path, recv_path, calls_per_core);
criterion_main!(benches);

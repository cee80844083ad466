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
//! difference, and neither side gets the cache advantage of one shared codec state. `srtp_cost`: one two-way
//! call ticked per 20 ms, plain RTP against SDES SRTP (AES_CM_128_HMAC_SHA1_80 and
//! AEAD_AES_128_GCM) in the same run (issue 9 §4: within 1.10×). `opus_settings`: the floor of a
//! held two-way Opus call, one second of codec work (50 encodes and 50 decodes of 20 ms of a
//! 440 Hz tone, what scripts/compare.sh plays, and of the speech-like signal) per encoder
//! setting: ours (VOIP) with and without a packet-loss hint, complexity 5 and 7, and
//! baresip's (application audio, complexity 10). `opus_call_start`: the first second of a
//! call's codec work on the tone, from a reset encoder (what every new call codes), with the
//! signal left to libopus's analysis (`auto`: hybrid until the analysis moves to CELT) and
//! told as music (what a tone source gets). `codec_state`: creating a call's Opus encoder and
//! decoder fresh against reusing pooled states.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rand::{rngs::StdRng, Rng, SeedableRng};

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use criterion::Throughput;
use wakeline::media::codec::opus::OpusParams;
use wakeline::media::codec::{
    make_decoder, make_encoder, EncoderConfig, OpusSignal, MAX_FRAME_SAMPLES48, MAX_PAYLOAD,
};
use wakeline::media::pipeline::{MediaPipeline, PipelineConfig};
use wakeline::media::session::{MediaSession, Received, SessionConfig};
use wakeline::signaling::sdp::{Codec, MasterKey, Negotiated, SrtpKeys, SrtpSuite};

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
        opus_fec: false,
        ..Negotiated::sendrecv(codec, addr, addr)
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
    pipeline_with(codec, me, peer, now, None)
}

/// As [`pipeline`], protected with `srtp` when given.
fn pipeline_with(
    codec: Codec,
    me: SocketAddr,
    peer: SocketAddr,
    now: Instant,
    srtp: Option<SrtpKeys>,
) -> (MediaPipeline, rtrb::Producer<i16>, rtrb::Consumer<i16>) {
    let (cap, cap_rx) = rtrb::RingBuffer::new(FRAME * 8);
    let (play_tx, play) = rtrb::RingBuffer::new(FRAME * 8);
    let mut n = negotiated(codec);
    n.local_rtp = me;
    n.remote_rtp = peer;
    n.remote_rtcp = peer;
    n.srtp = srtp;
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
                    tick_call(x, y, frames[i], now);
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

/// One 20 ms tick of a two-way call: both sides capture a frame, tick, and hand each other
/// what they sent.
fn tick_call(x: &mut Side, y: &mut Side, frame: &[i16], now: Instant) {
    for s in [&mut *x, &mut *y] {
        let _ = s.cap.push_entire_slice(frame);
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

/// One two-way call, plain and with SRTP, in the same run.
fn srtp_cost(c: &mut Criterion) {
    let pcm = speech_like();
    let frames: Vec<&[i16]> = pcm.chunks(FRAME).collect();
    let mut g = c.benchmark_group("srtp_cost");
    for codec in [Codec::Opus, Codec::Pcmu] {
        let lower = codec.encoding_name().to_lowercase();
        let start = Instant::now();
        let mut calls: Vec<(&str, Side, Side, Instant)> = [
            None,
            Some(SrtpSuite::AesCm128HmacSha1_80),
            Some(SrtpSuite::AeadAes128Gcm),
        ]
        .into_iter()
        .map(|suite| {
            let (k1, k2) = (
                MasterKey::random(SrtpSuite::AesCm128HmacSha1_80),
                MasterKey::random(SrtpSuite::AesCm128HmacSha1_80),
            );
            let keys = |flip: bool| {
                suite.map(|s| {
                    let (l, r) = if flip { (&k2, &k1) } else { (&k1, &k2) };
                    let cut = |k: &MasterKey| MasterKey(k.0[..s.key_len() + s.salt_len()].to_vec());
                    SrtpKeys {
                        suite: s,
                        local: cut(l),
                        remote: cut(r),
                    }
                })
            };
            let (a, b) = addrs();
            let (pa, ca, qa) = pipeline_with(codec, a, b, start, keys(false));
            let (pb, cb, qb) = pipeline_with(codec, b, a, start, keys(true));
            let x = Side {
                p: pa,
                addr: a,
                cap: ca,
                play: qa,
            };
            let y = Side {
                p: pb,
                addr: b,
                cap: cb,
                play: qb,
            };
            (suite.map_or("plain", |s| s.report_name()), x, y, start)
        })
        .collect();
        let mut i = 0;
        for (tag, x, y, now) in calls.iter_mut() {
            g.bench_function(format!("{lower}_call_{tag}_tick_20ms"), |bch| {
                bch.iter(|| {
                    i = (i + 1) % FRAMES;
                    tick_call(x, y, frames[i], *now);
                    *now += TICK;
                })
            });
        }
        // The same ticks interleaved (plain, SRTP, SRTP, plain, ...), so the machine's load
        // hits every variant alike: the ratio to plain, printed.
        let mut spent = vec![Duration::ZERO; calls.len()];
        for round in 0..3000 {
            i = (i + 1) % FRAMES;
            for k in 0..calls.len() {
                let k = if round % 2 == 0 {
                    k
                } else {
                    calls.len() - 1 - k
                };
                let (_, x, y, now) = &mut calls[k];
                let t = Instant::now();
                tick_call(x, y, frames[i], *now);
                spent[k] += t.elapsed();
                *now += TICK;
            }
        }
        for (k, (tag, x, y, _)) in calls.iter().enumerate() {
            let (sx, sy) = (x.p.stats(), y.p.stats());
            assert!(
                sx.rtp_received > 0 && sy.rtp_received * 10 > sx.rtp_sent * 9,
                "{tag}: {sx:?} {sy:?}"
            );
            println!(
                "srtp_cost interleaved {lower} {tag}: {:.2} µs per two-way tick, {:.3}× plain",
                spent[k].as_secs_f64() * 1e6 / 3000.0,
                spent[k].as_secs_f64() / spent[0].as_secs_f64()
            );
        }
    }
    // What a stranger's garbage costs: each packet carries a new SSRC, so it is tried on a
    // fresh context (a key derivation) and refused.
    let suite = SrtpSuite::AesCm128HmacSha1_80;
    let mut n = negotiated(Codec::Pcmu);
    n.srtp = Some(SrtpKeys {
        suite,
        local: MasterKey::random(suite),
        remote: MasterKey::random(suite),
    });
    let cfg = SessionConfig {
        negotiated: n,
        latching: Default::default(),
        cname: "bench@example.com".into(),
    };
    let now = Instant::now();
    let mut rng = StdRng::seed_from_u64(3);
    let mut s = MediaSession::new(cfg, now, SystemTime::UNIX_EPOCH, &mut rng);
    let (_, peer) = addrs();
    let mut packet = Vec::new();
    rtp(&mut packet, 0, 1, 160, &[0x55; 170]);
    let mut ssrc = 0u32;
    g.bench_function("garbage_new_ssrc_refused", |b| {
        b.iter(|| {
            ssrc = ssrc.wrapping_add(1);
            packet[8..12].copy_from_slice(&ssrc.to_be_bytes());
            black_box(matches!(
                s.handle_datagram(now, peer, &packet),
                Received::Dropped(_)
            ))
        })
    });
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

/// One second of the 440 Hz tone scripts/compare.sh plays, at half of full scale.
fn tone_440() -> Vec<i16> {
    (0..FRAME * FRAMES)
        .map(|i| (16384.0 * (std::f64::consts::TAU * 440.0 * i as f64 / 48_000.0).sin()) as i16)
        .collect()
}

/// One encoder setting of the `opus_settings` group.
struct OpusSetting {
    name: &'static str,
    app: opus::Application,
    complexity: i32,
    /// The packet-loss hint; FEC is on when it is `Some`.
    fec_loss: Option<i32>,
}

fn opus_settings(c: &mut Criterion) {
    use opus::Application::{Audio, Voip};
    let tone = tone_440();
    let speech = speech_like();
    let settings = [
        ("voip_c5_fec_loss10", Voip, 5, Some(10)),
        ("voip_c5_fec_loss0", Voip, 5, Some(0)),
        ("voip_c7_fec_loss0", Voip, 7, Some(0)),
        ("voip_c7_fec_loss10", Voip, 7, Some(10)),
        ("audio_c10_fec_loss0_baresip", Audio, 10, Some(0)),
    ]
    .map(|(name, app, complexity, fec_loss)| OpusSetting {
        name,
        app,
        complexity,
        fec_loss,
    });
    let mut g = c.benchmark_group("opus_settings");
    g.throughput(Throughput::Elements(1));
    let mut buf = [0u8; MAX_PAYLOAD];
    let mut out = [0i16; MAX_FRAME_SAMPLES48];
    for (s, (signal, pcm)) in settings
        .iter()
        .flat_map(|s| [("tone", &tone), ("speech", &speech)].map(|x| (s, x)))
    {
        let mut e = opus::Encoder::new(48_000, opus::Channels::Mono, s.app).unwrap();
        e.set_bitrate(opus::Bitrate::Bits(32_000)).unwrap();
        e.set_complexity(s.complexity).unwrap();
        e.set_inband_fec(s.fec_loss.is_some()).unwrap();
        e.set_packet_loss_perc(s.fec_loss.unwrap_or(0)).unwrap();
        let mut d = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        // One call-second: 50 frames each way.
        g.bench_function(format!("{}_{signal}_call_second", s.name), |b| {
            b.iter(|| {
                for f in pcm.chunks(FRAME) {
                    let n = e.encode(black_box(f), &mut buf).unwrap();
                    black_box(d.decode(&buf[..n], &mut out[..FRAME], false).unwrap());
                }
            })
        });
    }
    g.finish();
}

/// The first second of a call's Opus work on the test tone (50 encodes and 50 decodes from
/// reset states) per signal hint: what setting up many calls at once costs beyond their
/// steady state (`opus_settings`).
fn opus_call_start(c: &mut Criterion) {
    let tone = tone_440();
    let n = negotiated(Codec::Opus);
    let mut g = c.benchmark_group("opus_call_start");
    g.throughput(Throughput::Elements(1));
    let mut buf = [0u8; MAX_PAYLOAD];
    let mut out = [0i16; MAX_FRAME_SAMPLES48];
    for (name, signal) in [("auto", OpusSignal::Auto), ("music", OpusSignal::Music)] {
        let cfg = EncoderConfig {
            signal,
            ..EncoderConfig::default()
        };
        let params = OpusParams::from_negotiated(&n, &cfg, 20);
        let mut e =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let mut d = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        g.bench_function(format!("{name}_tone_first_second"), |b| {
            b.iter(|| {
                e.reset_state().unwrap();
                d.reset_state().unwrap();
                params.apply(&mut e).unwrap();
                for f in tone.chunks(FRAME) {
                    let n = e.encode(black_box(f), &mut buf).unwrap();
                    black_box(d.decode(&buf[..n], &mut out[..FRAME], false).unwrap());
                }
            })
        });
    }
    g.finish();
}

/// What a call's set-up pays for its Opus pair: libopus states created fresh (allocation and
/// `opus_select_arch`) against states reused from the pool (`codec::pool`: reset, then
/// configured).
fn codec_state(c: &mut Criterion) {
    let n = negotiated(Codec::Opus);
    let cfg = EncoderConfig::default();
    let params = OpusParams::from_negotiated(&n, &cfg, 20);
    let mut g = c.benchmark_group("codec_state");
    g.bench_function("opus_pair_fresh", |b| {
        b.iter(|| {
            let mut e =
                opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
            params.apply(&mut e).unwrap();
            let d = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
            black_box((e, d))
        })
    });
    g.bench_function("opus_pair_pooled", |b| {
        b.iter(|| black_box((make_encoder(&n, &cfg).unwrap(), make_decoder(&n).unwrap())))
    });
    g.finish();
}

criterion_group!(
    benches,
    codec_state,
    opus_settings,
    opus_call_start,
    codec_bare,
    send_path,
    recv_path,
    calls_per_core,
    srtp_cost
);
criterion_main!(benches);

//! Media benchmarks (issue 3).
//!
//! `codec_bare`: bare libopus (the `opus` crate directly) against wakeline's `Encoder`/`Decoder`
//! trait objects, per 20 ms frame (960 samples at 48 kHz) of a seeded speech-like signal, plus
//! G.711 through the trait (resampling included).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rand::{rngs::StdRng, Rng, SeedableRng};

use wakeline::media::codec::{
    make_decoder, make_encoder, EncoderConfig, MAX_FRAME_SAMPLES48, MAX_PAYLOAD,
};
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

criterion_group!(benches, codec_bare);
criterion_main!(benches);

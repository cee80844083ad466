//! Proves that encoding, decoding, concealment and FEC recovery do not allocate once a codec is
//! built: a counting global allocator (the `assert_no_alloc` pattern) counts allocations made
//! by this thread while the per-frame calls run.

use wakeline::media::codec::{
    make_decoder, make_encoder, EncoderConfig, MAX_FRAME_SAMPLES48, MAX_PAYLOAD,
};
use wakeline::signaling::sdp::{Codec, Negotiated};

mod alloc_count;
use alloc_count::allocations;

#[global_allocator]
static GLOBAL: alloc_count::Counting = alloc_count::Counting;

fn negotiated(codec: Codec) -> Negotiated {
    let addr = "127.0.0.1:4000".parse().unwrap();
    Negotiated::sendrecv(codec, addr, addr)
}

#[test]
fn counter_sees_allocations() {
    // The check must be able to fail.
    let (n, v) = allocations(|| vec![1u8; 64]);
    assert!(n >= 1 && v.len() == 64);
}

#[test]
fn per_frame_calls_do_not_allocate() {
    for codec in [Codec::Opus, Codec::Pcmu, Codec::Pcma] {
        let n = negotiated(codec);
        let mut enc = make_encoder(&n, &EncoderConfig::default()).unwrap();
        let mut dec = make_decoder(&n).unwrap();
        let frame = enc.frame_samples48();
        let pcm: Vec<i16> = (0..frame * 50)
            .map(|i| (8000.0 * (i as f64 * 0.0576).sin()) as i16)
            .collect();
        let mut pkt = [0u8; MAX_PAYLOAD];
        let mut out = [0i16; MAX_FRAME_SAMPLES48];

        let (count, produced) = allocations(|| {
            let mut produced = 0usize;
            for (i, f) in pcm.chunks(frame).enumerate() {
                let len = enc.encode(f, &mut pkt).unwrap();
                match i % 10 {
                    // Lose this packet: conceal it, or recover it from the next one's FEC.
                    3 => produced += dec.conceal(&mut out).unwrap(),
                    7 => {}
                    8 => {
                        std::hint::black_box(dec.has_fec(&pkt[..len]));
                        produced += dec.decode_fec(&pkt[..len], &mut out).unwrap();
                        produced += dec.decode(&pkt[..len], &mut out).unwrap();
                    }
                    _ => produced += dec.decode(&pkt[..len], &mut out).unwrap(),
                }
            }
            produced
        });
        assert_eq!(
            count, 0,
            "{codec:?}: {count} allocations in the per-frame path"
        );
        assert_eq!(produced, pcm.len(), "{codec:?}: samples produced");
    }
}

//! Signaling benchmarks (criterion).
//!
//! Group `parse`: rsip alone on a real ~900-byte INVITE against our full receive path
//! (framer + `Message::parse`, which normalises and still runs rsip underneath).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::time::Instant;
use wakeline::signaling::framing::{Frame, Framer, FramerLimits};
use wakeline::signaling::message::{testdata, Message};

fn parse(c: &mut Criterion) {
    let bytes = testdata::INVITE;
    let mut group = c.benchmark_group("parse");
    group.bench_function("rsip_bare", |b| {
        b.iter(|| rsip::SipMessage::try_from(black_box(bytes)).map(drop))
    });
    let now = Instant::now();
    group.bench_function("framing_parse", |b| {
        b.iter(|| {
            let mut framer = Framer::new(FramerLimits::default());
            framer.push(black_box(bytes), now);
            match framer.poll() {
                Some(Ok(Frame::Message(m))) => Message::parse(&m).map(drop),
                other => panic!("no frame: {other:?}"),
            }
        })
    });
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);

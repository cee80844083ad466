//! Tests of the adaptive jitter buffer: playout order, delay growth and shrinking, holds,
//! loss, FEC look-ahead, resets and storage.

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

/// `n` packets of 20 ms, each arriving when due (payloads count 1..=250 and wrap).
fn stream(n: u16) -> Vec<(u64, u16, u32, u32, Vec<u8>)> {
    (0..n)
        .map(|i| {
            (
                20 * u64::from(i),
                i,
                960 * u32::from(i),
                7,
                vec![(i % 250) as u8 + 1],
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

/// A 24 s stream in which, every 5 s from 2 s on, `n` packets are held up on the way and come
/// together `wait` ms after the first of them was due. Returns the frames concealed around each
/// spike (from just before it to 1 s after) and the stats at the end.
fn spikes(n: usize, wait: u64) -> (Vec<usize>, JitterStats) {
    let mut b = jb();
    let t0 = Instant::now();
    let mut arr = stream(1200);
    let starts: Vec<usize> = (100..1200).step_by(250).collect();
    for &k in &starts {
        for a in &mut arr[k..k + n] {
            a.0 = 20 * k as u64 + wait;
        }
    }
    let (outs, _) = sim(&mut b, t0, arr, 1200);
    let per_spike = starts
        .iter()
        .map(|&k| {
            outs[k - 5..k + 50]
                .iter()
                .filter(|o| matches!(o, Out::Missing(_)))
                .count()
        })
        .collect();
    (per_spike, b.stats())
}

#[test]
fn spikes_that_recur_cost_concealment_once() {
    let (per_spike, s) = spikes(3, 70);
    assert!(per_spike[0] >= 2, "{per_spike:?}");
    // The delay the first spike needed is kept while spikes keep coming.
    assert_eq!(per_spike[1..], [0, 0, 0, 0], "{per_spike:?} {s:?}");
    assert_eq!((s.late, s.lost), (0, 0), "{s:?}");
    assert!(s.target_ms >= 70.0, "{s:?}");
}

#[test]
fn a_single_spike_is_forgotten_after_the_hold() {
    let mut b = jb();
    let t0 = Instant::now();
    let mut arr = stream(1200);
    for a in &mut arr[100..103] {
        a.0 = 2070;
    }
    let (outs, _) = sim(&mut b, t0, arr, 1200);
    assert!(outs[95..150].iter().any(|o| matches!(o, Out::Missing(_))));
    // 22 s after the spike: the hold (10 s) and the window are over, and the delay came down.
    let s = b.stats();
    assert_eq!(s.target_ms, 20.0, "{s:?}");
    assert!(s.delay_ms <= 35.0, "{s:?}");
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

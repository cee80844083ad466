//! The receive side: datagrams → jitter buffer (or the DTMF receiver) → decoder → playback
//! ring and record tap, following the playback device.

use super::*;

impl MediaPipeline {
    /// Samples in the playback ring.
    pub(super) fn playback_level(&self) -> usize {
        self.playback
            .buffer()
            .capacity()
            .saturating_sub(self.playback.slots())
    }

    /// Handles one datagram received at `now` from `from` (RTP or RTCP, either socket). Media
    /// goes to the jitter buffer (when our direction receives), telephone events to the DTMF
    /// receiver; anything invalid or foreign is counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.seen(now);
        if self.closed {
            return;
        }
        match self.session.handle_datagram(now, from, bytes) {
            Received::Rtp {
                seq,
                ts,
                ssrc,
                pt,
                payload,
                ..
            } => {
                if Some(pt) == self.cfg.negotiated.telephone_event {
                    // Its slot plays out after the jitter buffer's delay; keep two frames of
                    // margin for the audio that follows the event.
                    let js = self.jitter.stats();
                    let hold_ms =
                        js.delay_ms.max(js.target_ms) + 2.0 * self.period.as_secs_f64() * 1000.0;
                    self.dtmf_quiet_until = Some(now + Duration::from_secs_f64(hold_ms / 1000.0));
                    if let Ok(Some(d)) = self.dtmf_rx.handle_payload(payload, ts) {
                        self.counters.dtmf_received += 1;
                        self.events.push_back(MediaEvent::Dtmf(d));
                    }
                } else if self.cfg.negotiated.direction.receives() {
                    // Outcomes are counted by the jitter buffer.
                    self.counters.audio_received += 1;
                    let _ = self.jitter.push(now, seq, ts, ssrc, payload);
                }
            }
            Received::Rtcp => {
                let st = self.session.stats();
                // Tell the encoder how lossy our stream is, so Opus FEC spends bits to match
                // (none until the peer reports a loss; any loss counts).
                let mut percent = (st.remote_fraction_lost * 100.0).ceil().min(100.0) as u8;
                if st.remote_lost > 0 {
                    percent = percent.max(1);
                }
                let _ = self.encoder.set_packet_loss_perc(percent);
                if st.remote_bye && !self.bye_reported {
                    self.bye_reported = true;
                    self.events.push_back(MediaEvent::RemoteBye);
                }
            }
            Received::Dropped(_) => {}
        }
    }

    /// Plays out a frame whenever the device is about to run short; drains on our clock when
    /// it takes nothing.
    pub(super) fn play_needed(&mut self, now: Instant) {
        let mut played = 0;
        while self.playback_level() < self.low_water && played <= MAX_CATCH_UP {
            self.receive_path(now, true);
            played += 1;
            self.play_due = now + self.period.max(self.device_period) * STALL_PERIODS;
        }
        let mut drained = 0;
        while now >= self.play_due && drained <= MAX_CATCH_UP {
            self.receive_path(now, false);
            self.play_due += self.period;
            drained += 1;
        }
        if now >= self.play_due {
            self.play_due = now + self.period;
        }
    }

    /// Pops and decodes one frame; pushes it into the playback ring when `to_device`.
    pub(super) fn receive_path(&mut self, now: Instant, to_device: bool) {
        if let Some(floor) = self.fec_min_delay {
            if self.jitter.stats().lost > 0 {
                // Loss seen: make room for the next packet's FEC from now on.
                self.jitter.set_min_delay(floor);
                self.fec_min_delay = None;
            }
        }
        let frame = self.encoder.frame_samples48();
        let in_dtmf = self.dtmf_quiet_until.is_some_and(|t| now < t);
        let popped = self.jitter.pop(now);
        let silent = match popped {
            Playout::Buffering => true,
            Playout::Missing { .. } => in_dtmf,
            Playout::Frame(_) => false,
        };
        if silent && self.tone.is_none() {
            // Nothing to decode (the buffer primes, or the gap a telephone event leaves): a
            // frame of silence, with no PCM buffer to fill or scan.
            self.meters.1.add_silence(frame);
            if to_device {
                let rest = push_silence(&mut self.playback, frame);
                self.counters.playback_overflow += rest as u64;
            }
            if let Some(tap) = self.record.as_mut() {
                push_silence(tap, frame);
            }
            return;
        }
        if self.pcm.len() < frame {
            self.pcm = vec![0; MAX_FRAME_SAMPLES48.max(frame)];
        }
        let pcm = &mut self.pcm[..];
        let dec = &mut self.decoder;
        let c = &mut self.counters;
        let n = match popped {
            // The gap a telephone event leaves in the audio: silence, not loss.
            Playout::Missing { .. } if in_dtmf => 0,
            Playout::Frame(p) => match dec.decode(p, pcm) {
                Ok(n) => n,
                Err(_) => {
                    c.decode_errors += 1;
                    c.concealed += 1;
                    dec.conceal(pcm).unwrap_or(0)
                }
            },
            Playout::Missing { next: Some(p) } if dec.has_fec(p) => match dec.decode_fec(p, pcm) {
                Ok(n) => {
                    c.fec_recovered += 1;
                    n
                }
                Err(_) => {
                    c.concealed += 1;
                    dec.conceal(pcm).unwrap_or(0)
                }
            },
            Playout::Missing { .. } => {
                c.concealed += 1;
                dec.conceal(pcm).unwrap_or(0)
            }
            Playout::Buffering => 0,
        };
        if n > 0 {
            let js = self.jitter.stats();
            c.delay_sum_ms += js.delay_ms;
            c.delay_ticks += 1;
        }
        // Always hand the device exactly one frame per tick; pad short output with silence.
        let n = n.min(pcm.len());
        pcm[n..frame.max(n)].fill(0);
        let out = &pcm[..frame.max(n)];
        self.meters.1.add(out);
        if let Some(t) = self.tone.as_mut() {
            t.add(out);
        }
        if to_device {
            let (_, rest) = self.playback.push_partial_slice(out);
            c.playback_overflow += rest.len() as u64;
        }
        if let Some(tap) = self.record.as_mut() {
            let _ = tap.push_partial_slice(out);
        }
    }
}

/// Pushes `n` samples of silence into `ring` (as many as fit); returns how many did not fit.
fn push_silence(ring: &mut rtrb::Producer<i16>, n: usize) -> usize {
    let fit = n.min(ring.slots());
    if let Ok(chunk) = ring.write_chunk_uninit(fit) {
        chunk.fill_from_iter(std::iter::repeat(0));
    }
    n - fit
}

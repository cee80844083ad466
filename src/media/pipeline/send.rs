//! The send side: captured frames → encoder (or RFC 4733 events) → RTP, one slot per frame.

use super::*;

impl MediaPipeline {
    /// Whether DTMF digits are queued or still being sent (their final packets included).
    pub fn dtmf_busy(&self) -> bool {
        self.dtmf_tx.is_busy()
    }

    pub(super) fn sends(&self) -> bool {
        let n = &self.cfg.negotiated;
        !self.closed && n.direction.sends() && !n.remote_rtp.ip().is_unspecified()
    }

    /// Sends every complete captured frame; skips slots on our clock when the device stalls.
    pub(super) fn send_ready(&mut self, now: Instant) {
        let frame = self.encoder.frame_samples48();
        let mut sent = 0;
        while self.capture.slots() >= frame && sent <= MAX_CATCH_UP {
            self.send_path(now);
            sent += 1;
            self.send_due = now + self.period * UNDERRUN_FRAMES;
        }
        let mut skipped = 0;
        while now >= self.send_due && skipped <= MAX_CATCH_UP {
            // Less than a frame in the ring: an underrun slot that keeps the timestamp moving.
            self.send_path(now);
            self.send_due += self.period;
            skipped += 1;
        }
        if now >= self.send_due {
            self.send_due = now + self.period;
        }
    }

    pub(super) fn send_path(&mut self, now: Instant) {
        let frame = self.encoder.frame_samples48();
        let ts_step = self.encoder.rtp_ts_per_frame();
        let backlog = self.capture.slots() / frame;
        if backlog > MAX_CAPTURE_BACKLOG {
            let drop = (backlog - MAX_CAPTURE_BACKLOG) * frame;
            if let Ok(chunk) = self.capture.read_chunk(drop) {
                chunk.commit_all();
            }
            self.counters.capture_dropped += (backlog - MAX_CAPTURE_BACKLOG) as u64;
        }
        let have_frame = self.capture.slots() >= frame && {
            if self.frame.len() < frame {
                self.frame = vec![0; MAX_FRAME_SAMPLES48.max(frame)];
                self.payload = vec![0; MAX_PAYLOAD];
            }
            self.capture
                .pop_entire_slice(&mut self.frame[..frame])
                .is_ok()
        };
        if have_frame {
            self.meters.0.add(&self.frame[..frame]);
            if self.muted {
                self.frame[..frame].fill(0);
            }
        }
        if !self.sends() {
            self.session.advance_timestamp(ts_step);
            self.marker = true;
            return;
        }
        if self.dtmf_tx.is_busy() {
            if let Some(pkt) = self.dtmf_tx.poll_packet(self.session.next_timestamp()) {
                if pkt.marker {
                    self.counters.dtmf_sent += 1;
                }
                if let Ok(rtp) =
                    self.session
                        .send_dtmf(now, &pkt.payload, pkt.timestamp, pkt.marker)
                {
                    let (dest, bytes) = (rtp.destination, rtp.contents);
                    queue(&mut self.out, &mut self.pool, dest, bytes);
                }
                self.session.advance_timestamp(ts_step);
                self.marker = true;
                return;
            }
        }
        if !have_frame {
            self.counters.capture_underruns += 1;
            self.session.advance_timestamp(ts_step);
            self.marker = true;
            return;
        }
        let n = match self.encoder.encode(&self.frame[..frame], &mut self.payload) {
            Ok(n) => n,
            Err(_) => {
                self.counters.encode_errors += 1;
                0
            }
        };
        if n == 0 {
            // DTX (or an encoder error): nothing this frame; the timestamp still moves.
            self.session.advance_timestamp(ts_step);
            self.marker = true;
            return;
        }
        if let Ok(rtp) = self
            .session
            .send_audio(now, &self.payload[..n], ts_step, self.marker)
        {
            let (dest, bytes) = (rtp.destination, rtp.contents);
            queue(&mut self.out, &mut self.pool, dest, bytes);
            self.marker = false;
        }
    }

    /// Queues the DTMF `digit` (`0-9 * # A-D`); it goes out over the next ticks as RFC 4733
    /// telephone events instead of audio.
    pub fn send_dtmf(&mut self, _now: Instant, digit: char) -> Result<(), MediaError> {
        if self.cfg.negotiated.telephone_event.is_none() {
            return Err(MediaError::NoTelephoneEvent);
        }
        let mut buf = [0u8; 4];
        self.dtmf_tx.queue(digit.encode_utf8(&mut buf))?;
        Ok(())
    }
}

/// Copies an outgoing RTP packet into a pooled buffer and queues it.
fn queue(out: &mut VecDeque<Transmit>, pool: &mut Vec<Vec<u8>>, dest: SocketAddr, bytes: &[u8]) {
    if pool.capacity() == 0 {
        // The first packet: the spare buffers a burst of catch-up ticks will need.
        *pool = (0..POOL).map(|_| Vec::with_capacity(MAX_PAYLOAD)).collect();
    }
    let mut buf = pool.pop().unwrap_or_default();
    buf.clear();
    buf.extend_from_slice(bytes);
    out.push_back(Transmit {
        destination: dest,
        contents: buf,
    });
}

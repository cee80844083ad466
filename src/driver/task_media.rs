//! The driver's side of a call's media: preparing it (sockets, addresses), handing commands
//! to its running media task, the audio session, rebinding after a network change, and what
//! the media tasks report back (DTMF, snapshots, the final report) turned into app events.

use super::*;

impl DriverTask {
    /// The app's audio session for `call` is now active (`on`) or not: the running media
    /// task opens or closes the audio I/O; before media starts, the call starts that way.
    pub(super) fn audio_session(&mut self, call: CallHandle, on: bool) -> Result<(), Error> {
        if self.media_tasks.contains_key(&call) {
            return self.media_ctl(call, MediaCtl::Session(on));
        }
        if !self.live_calls.contains(&call) {
            return Err(Error::Core(crate::signaling::core::CoreError::NoSuchCall));
        }
        self.early_session.insert(call, on);
        Ok(())
    }

    /// Hands a command to the call's running media task.
    pub(super) fn media_ctl(&self, call: CallHandle, ctl: MediaCtl) -> Result<(), Error> {
        use crate::signaling::core::CoreError;
        match self.media_tasks.get(&call) {
            Some(task) => task
                .ctl
                .send(ctl)
                .map_err(|_| Error::Core(CoreError::NoSuchCall)),
            None => Err(Error::Core(CoreError::InvalidState("no media yet"))),
        }
    }

    /// Prepares a call's or an answer's media (`prepare.rs`): in place when nothing in it
    /// waits on the network, off the loop otherwise. A rebind always goes off the loop (it
    /// goes on with the next call from `media_prepared`).
    pub(super) fn prepare(&mut self, plan: route::MediaPlan, purpose: Purpose) {
        if !matches!(purpose, Purpose::Rebind { .. }) {
            let home = self.home.as_deref();
            if let Some(media) = prepare::now(&plan, self.stun.as_deref(), home) {
                return self.media_prepared(Prepared { purpose, media });
            }
        }
        let (resolver, stun) = (self.resolver.clone(), self.stun.clone());
        self.preparing += 1;
        prepare::spawn(plan, resolver, stun, purpose, self.prep_tx.clone());
    }

    /// Media prepared off the loop: the core makes the call or the answer now (at the time it
    /// really happens), and the waiting API call hears the outcome. Shutdown started meanwhile:
    /// `Stopped`, the core is not asked; a call ended meanwhile: the core's error, the sockets
    /// are dropped.
    pub(super) fn media_prepared(&mut self, done: Prepared) {
        let stopped = self.shutting_down.is_some();
        match done.purpose {
            Purpose::Call {
                target,
                media,
                reply,
            } => {
                let result = match done.media {
                    _ if stopped => Err(Error::Stopped),
                    Err(e) => Err(e.into()),
                    Ok((sockets, addr)) => match self.core.call(Instant::now(), target, addr) {
                        Ok(call) => {
                            self.keep_media(call, sockets, media);
                            self.live_calls.insert(call);
                            Ok(call)
                        }
                        Err(e) => Err(e.into()),
                    },
                };
                let _ = reply.send(result);
            }
            Purpose::Answer { call, media, reply } => {
                let result = match done.media {
                    _ if stopped => Err(Error::Stopped),
                    Err(e) => Err(e.into()),
                    Ok((sockets, addr)) => self
                        .core
                        .answer(Instant::now(), call, addr)
                        .map_err(Error::from)
                        .map(|()| self.keep_media(call, sockets, media)),
                };
                if let Err(Err(e)) = reply.send(result) {
                    tracing::debug!(?call, "answer (nobody waiting): {e}"); // answer_detached
                }
            }
            Purpose::Rebind { call, rest, reply } => {
                let result = match done.media {
                    _ if stopped => Err(Error::Stopped),
                    Err(e) => Err(e.into()),
                    Ok((sockets, addr)) => self.rebind(call, sockets, addr),
                };
                match result {
                    Ok(()) => self.rebind_next(rest, reply),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
        }
    }

    /// Keeps a call's sockets and its own media options until its media starts.
    pub(super) fn keep_media(
        &mut self,
        call: CallHandle,
        sockets: MediaSockets,
        options: Option<Box<MediaOptions>>,
    ) {
        self.media.insert(call, sockets);
        if let Some(options) = options {
            self.call_media.insert(call, *options);
        }
    }

    /// New network: the core opens a new control flow and re-registers (`Command::NetworkChanged`);
    /// each connected call, one after the other, gets fresh media sockets (prepared off the
    /// loop) and a re-INVITE announcing them. The reply comes after the last call, or with
    /// the first failure (the calls after it keep their media, as before).
    pub(super) fn rebind_next(&mut self, mut calls: Vec<CallHandle>, reply: Reply<()>) {
        if calls.is_empty() {
            let _ = reply.send(Ok(()));
            return;
        }
        let call = calls.remove(0);
        let plan = route::media_plan(&self.core, self.media_ip, Some(call), None, &self.hints);
        let rest = calls;
        self.prepare(plan, Purpose::Rebind { call, rest, reply });
    }

    /// A call's new media after a network change: the re-INVITE, and the sockets to its media
    /// task (or kept until it starts). A call that ended while they were prepared is skipped.
    pub(super) fn rebind(
        &mut self,
        call: CallHandle,
        sockets: MediaSockets,
        addr: SocketAddr,
    ) -> Result<(), Error> {
        use crate::signaling::core::CoreError;
        match self.core.update_media(Instant::now(), call, addr) {
            Err(CoreError::NoSuchCall) => {
                tracing::debug!(?call, "ended before its new media was ready");
                return Ok(());
            }
            other => other?,
        }
        match self.media_tasks.get(&call) {
            Some(task) => {
                let _ = task.ctl.send(MediaCtl::Rebind(sockets));
            }
            None => {
                self.media.insert(call, sockets);
            }
        }
        Ok(())
    }

    /// The SIP Call-ID of `call` (empty once the call is forgotten).
    pub(super) fn call_id_of(&self, call: CallHandle) -> String {
        self.call_ids.get(&call).cloned().unwrap_or_default()
    }

    /// Tells the app a call's media snapshot.
    pub(super) fn media_stats(&self, call: CallHandle, snapshot: Box<MediaSnapshot>) {
        self.events.send(Event::MediaStats {
            call,
            call_id: self.call_id_of(call),
            snapshot,
        });
    }

    pub(super) fn handle_media_note(&mut self, note: MediaNote) {
        match note {
            MediaNote::Dtmf(call, digit) => {
                self.events.send(Event::Dtmf {
                    call,
                    call_id: self.call_id_of(call),
                    digit,
                });
            }
            MediaNote::Stats(call, snapshot) => self.media_stats(call, snapshot),
            MediaNote::Done(call, report, last) => {
                self.media_tasks.remove(&call);
                if let Some(snapshot) = last {
                    self.media_stats(call, snapshot);
                }
                if let Some(e) = &report.error {
                    tracing::warn!(?call, "media did not run: {e}");
                }
                // The call's last event but its `Ended`: the report takes its Call-ID.
                let ended = self.pending_ended.remove(&call);
                let call_id = match ended {
                    Some(_) => self.call_ids.remove(&call).unwrap_or_default(),
                    None => self.call_id_of(call),
                };
                self.events.send(Event::MediaReport {
                    call,
                    call_id,
                    report,
                });
                if let Some(ended) = ended {
                    self.events.send(ended);
                }
            }
        }
    }
}

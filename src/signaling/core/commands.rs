//! The application's commands: register, call, answer, reject, hang up, hold.

use super::{CallHandle, CoreError, SignalingCore};
use crate::signaling::invite::{Deferred, Phase, Role};
use crate::signaling::message::Uri;
use std::net::SocketAddr;
use std::time::Instant;

impl SignalingCore {
    /// Start registering (connects the control flow if needed).
    pub fn register(&mut self, now: Instant) -> Result<(), CoreError> {
        self.control_register(now)?;
        self.drain_control(now);
        Ok(())
    }

    /// Remove our binding (Expires: 0).
    pub fn unregister(&mut self, now: Instant) -> Result<(), CoreError> {
        self.control_unregister(now)?;
        self.drain_control(now);
        Ok(())
    }

    /// Place a call; `media` is the local RTP address announced in the SDP offer.
    pub fn call(
        &mut self,
        now: Instant,
        target: Uri,
        media: SocketAddr,
    ) -> Result<CallHandle, CoreError> {
        let h = self.uac_call(now, target, media)?;
        self.drain_control(now);
        Ok(h)
    }

    /// A command for a pushed call without INVITE yet, or a detached call: remembered.
    fn early_command(
        &mut self,
        now: Instant,
        call: CallHandle,
        cmd: Deferred,
    ) -> Option<Result<(), CoreError>> {
        self.push_command(call, cmd)
            .or_else(|| self.defer(now, call, cmd))
    }

    /// Send 180 Ringing for an incoming call.
    ///
    /// For a call pre-created by a push, or one whose control flow is down, this (like
    /// `answer`, `reject`, `hangup`, `hold` and `update_media`) is remembered and done when
    /// the INVITE, or the next control flow, comes.
    pub fn ring(&mut self, now: Instant, call: CallHandle) -> Result<(), CoreError> {
        if let Some(r) = self.early_command(now, call, Deferred::Ring) {
            return r;
        }
        self.uas_ring(now, call)
    }

    /// Answer an incoming call with 200 OK and an SDP answer announcing `media`.
    pub fn answer(
        &mut self,
        now: Instant,
        call: CallHandle,
        media: SocketAddr,
    ) -> Result<(), CoreError> {
        if let Some(r) = self.early_command(now, call, Deferred::Answer(media)) {
            return r;
        }
        self.uas_answer(now, call, media)
    }

    /// Reject an incoming call with a 3xx-6xx status.
    pub fn reject(&mut self, now: Instant, call: CallHandle, status: u16) -> Result<(), CoreError> {
        if !(300..=699).contains(&status) {
            return Err(CoreError::InvalidState("reject needs a 3xx-6xx status"));
        }
        if let Some(r) = self.early_command(now, call, Deferred::Reject(status)) {
            return r;
        }
        self.uas_reject(now, call, status)
    }

    /// End a call: CANCEL before answer (UAC), 603 Decline (UAS unanswered), BYE after.
    pub fn hangup(&mut self, now: Instant, call: CallHandle) -> Result<(), CoreError> {
        if let Some(r) = self.early_command(now, call, Deferred::Hangup) {
            return r;
        }
        self.hangup_now(now, call)
    }

    /// Announce a new local RTP address for a connected call (after a network change) with a
    /// re-INVITE; on success `Event::Media` reports the renegotiated session.
    pub fn update_media(
        &mut self,
        now: Instant,
        call: CallHandle,
        media: SocketAddr,
    ) -> Result<(), CoreError> {
        if let Some(r) = self.early_command(now, call, Deferred::Media(media)) {
            return r;
        }
        self.reinvite_media(now, call, media)
    }

    pub(crate) fn hangup_now(&mut self, now: Instant, call: CallHandle) -> Result<(), CoreError> {
        let role = self
            .calls
            .get(&call)
            .filter(|c| c.phase != Phase::Ended)
            .map(|c| c.role)
            .ok_or(CoreError::NoSuchCall)?;
        match role {
            Role::Uac => self.uac_hangup(now, call),
            Role::Uas => self.uas_hangup(now, call),
        }
    }

    /// Put a call on hold (`true`) or resume it (`false`) with a re-INVITE.
    pub fn hold(&mut self, now: Instant, call: CallHandle, on: bool) -> Result<(), CoreError> {
        if let Some(r) = self.early_command(now, call, Deferred::Hold(on)) {
            return r;
        }
        self.send_reinvite(now, call, on)
    }
}

//! A call's audio session on the app's word (CallKit's didActivate / didDeactivate): while it
//! is inactive the call's media task runs on silent backends — silence goes out, the far end's
//! audio is decoded (statistics, DTMF and a recording keep working) and then dropped — and
//! activating it swaps in the call's real source and sink without touching RTP.

use super::media::{open_audio, Closing, MediaOptions};
use super::paced_clock::PacedClock;
use crate::media::audio::rt::RtStats;
use crate::media::audio::{AudioSink, AudioSource, AudioStreams};
use crate::media::pipeline::MediaPipeline;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

/// The backends a call runs on: its own when its audio session is `active`, else silence out
/// and a null sink (neither touches a device or a file, so opening them never blocks).
pub(super) fn backends(options: &MediaOptions, active: bool) -> Cow<'_, MediaOptions> {
    if active {
        Cow::Borrowed(options)
    } else {
        Cow::Owned(MediaOptions {
            source: AudioSource::Silence,
            sink: AudioSink::Null,
            ..options.clone()
        })
    }
}

/// Opens the backends for `active`, connects the pipeline to them, and closes the ones it
/// used until now (off the runtime when that can block). On error nothing changes.
pub(super) async fn switch(
    options: &MediaOptions,
    active: bool,
    pipeline: &mut MediaPipeline,
    closing: &mut Closing,
    clock: &mut PacedClock,
    stats: (&mut Arc<RtStats>, &mut Arc<RtStats>),
) -> Result<(), String> {
    let (streams, paced) = open_audio(&backends(options, active)).await?;
    let AudioStreams {
        capture,
        playback,
        capture_stats,
        playback_stats,
        handle,
        ..
    } = streams;
    // The old rings go with the old backends.
    drop(pipeline.replace_audio(capture, playback));
    let old = Closing {
        handle: std::mem::replace(&mut closing.handle, handle),
        paced: std::mem::replace(&mut closing.paced, paced),
        recorder: None,
    };
    *clock = PacedClock::new(&closing.paced, Instant::now());
    (*stats.0, *stats.1) = (capture_stats, playback_stats);
    if let Some(e) = old.close_off_runtime().await {
        tracing::warn!("closing the inactive audio: {e}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inactive_session_uses_silent_backends_and_keeps_the_rest() {
        let options = MediaOptions {
            source: AudioSource::Tone(440.0),
            sink: AudioSink::Wav("out.wav".into()),
            record: Some("rec.wav".into()),
            ..MediaOptions::default()
        };
        assert_eq!(*backends(&options, true), options);
        let off = backends(&options, false);
        assert_eq!(off.source, AudioSource::Silence);
        assert_eq!(off.sink, AudioSink::Null);
        assert_eq!(
            off.record, options.record,
            "the recording does not depend on it"
        );
        assert!(!crate::media::audio::open_blocks(&off.source, &off.sink));
    }
}

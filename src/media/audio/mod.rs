//! Audio I/O: the real-time callback core and the backends that drive it.
//!
//! Every backend — a cpal device ([`device`]), a WAV file
//! ([`file`](mod@file)), a tone ([`tone`]), silence, a null sink — moves
//! samples through the same
//! [`rt::RtCapture`] / [`rt::RtPlayback`] code. The pipeline sees two SPSC
//! rings of 48 kHz mono `i16`: the capture [`Consumer`] and the playback
//! [`Producer`] in [`AudioStreams`], which also stops the backends when
//! dropped.
//!
//! Device backends are clocked by the sound card; the others ([`paced`])
//! call the same `process_*` functions once per period of a clock they are
//! given: the call's media task with [`open`], or one small thread with
//! [`start`].

pub mod device;
pub mod file;
pub mod paced;
pub mod resample;
pub mod rt;
pub mod tone;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rtrb::{Consumer, Producer, RingBuffer};

pub use paced::PacedAudio;

use rt::{RtCapture, RtPlayback, RtStats, PIPELINE_RATE};

/// Errors of the audio layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// No audio device is available (or none with the given name).
    #[error("no audio device: {0}")]
    NoDevice(String),
    /// The device offers no configuration this layer can drive.
    #[error("unsupported audio configuration: {0}")]
    UnsupportedConfig(String),
    /// The audio backend (cpal) reported an error.
    #[error("audio backend error: {0}")]
    Backend(#[from] cpal::Error),
    /// Reading or writing a WAV file failed.
    #[error("WAV file error: {0}")]
    Wav(#[from] hound::Error),
    /// A `--mic` / `--speaker` argument could not be parsed.
    #[error("invalid audio argument {0:?}: expected {1}")]
    Parse(String, &'static str),
    /// A backend thread could not be started.
    #[error("cannot start audio thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Where captured audio comes from (`--mic`).
///
/// Parsed from `default`, `silence`, `tone:HZ`, `FILE.wav` (a WAV file,
/// looped), or any other string as a device name.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioSource {
    /// The system's default input device.
    Default,
    /// The input device with this name.
    Device(String),
    /// A WAV file (any rate, channels, 16-bit integer or float samples).
    Wav(PathBuf),
    /// A sine tone at this frequency in Hz.
    Tone(f32),
    /// Digital silence.
    Silence,
}

/// Where played audio goes (`--speaker`).
///
/// Parsed from `default`, `null`, `FILE.wav` (48 kHz mono 16-bit), or any
/// other string as a device name.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioSink {
    /// The system's default output device.
    Default,
    /// The output device with this name.
    Device(String),
    /// A WAV file written at 48 kHz mono `i16`.
    Wav(PathBuf),
    /// Discard the audio (still paced and counted).
    Null,
}

fn is_wav(s: &str) -> bool {
    s.len() > 4
        && s.get(s.len() - 4..)
            .is_some_and(|ext| ext.eq_ignore_ascii_case(".wav"))
}

const SOURCE_SYNTAX: &str = "default|DEVICE|FILE.wav|tone:HZ|silence";
const SINK_SYNTAX: &str = "default|DEVICE|FILE.wav|null";

impl FromStr for AudioSource {
    type Err = AudioError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || AudioError::Parse(s.to_owned(), SOURCE_SYNTAX);
        match s {
            "" => Err(bad()),
            "default" => Ok(AudioSource::Default),
            "silence" => Ok(AudioSource::Silence),
            _ => {
                if let Some(hz) = s.strip_prefix("tone:") {
                    let hz: f32 = hz.parse().map_err(|_| bad())?;
                    if hz.is_finite() && hz > 0.0 && hz < (PIPELINE_RATE / 2) as f32 {
                        Ok(AudioSource::Tone(hz))
                    } else {
                        Err(bad())
                    }
                } else if is_wav(s) {
                    Ok(AudioSource::Wav(PathBuf::from(s)))
                } else {
                    Ok(AudioSource::Device(s.to_owned()))
                }
            }
        }
    }
}

impl FromStr for AudioSink {
    type Err = AudioError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" => Err(AudioError::Parse(s.to_owned(), SINK_SYNTAX)),
            "default" => Ok(AudioSink::Default),
            "null" => Ok(AudioSink::Null),
            _ if is_wav(s) => Ok(AudioSink::Wav(PathBuf::from(s))),
            _ => Ok(AudioSink::Device(s.to_owned())),
        }
    }
}

/// Settings shared by all backends.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioConfig {
    /// Period length in milliseconds (device buffer size and pacing step);
    /// 20 ms = 960 frames at 48 kHz.
    pub period_ms: u32,
    /// Capacity of each ring in 48 kHz samples (a paced backend's ring holds at most
    /// [`paced::MAX_BEHIND`] + 2 periods).
    pub ring_samples: usize,
    /// Loop a WAV source at its end (otherwise silence follows it).
    pub loop_wav: bool,
}

impl Default for AudioConfig {
    fn default() -> Self {
        AudioConfig {
            period_ms: 20,
            ring_samples: 9600, // 200 ms
            loop_wav: true,
        }
    }
}

impl AudioConfig {
    /// Frames in one period at `rate` Hz (at least 1).
    pub fn period_frames(&self, rate: u32) -> usize {
        ((u64::from(rate) * u64::from(self.period_ms.max(1)) / 1000) as usize).max(1)
    }
}

/// What one running stream is connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// Backend and device, e.g. `cpal:default`, `tone:440`, `wav:in.wav`.
    pub backend: String,
    /// The device-side sample rate in Hz.
    pub sample_rate: u32,
    /// The device-side channel count.
    pub channels: u16,
    /// The device-side sample format, e.g. `i16` or `f32`.
    pub sample_format: String,
    /// The requested fixed buffer size in frames, if one was granted.
    pub buffer_frames: Option<u32>,
}

/// Keeps the backends running; stops them when dropped.
pub struct AudioHandle {
    devices: Vec<cpal::Stream>,
    threads: Vec<paced::PacedThread>,
}

impl AudioHandle {
    fn new() -> Self {
        AudioHandle {
            devices: Vec::new(),
            threads: Vec::new(),
        }
    }

    /// True when a sound card drives one of the rings (it changes between
    /// the paced ticks).
    pub fn has_devices(&self) -> bool {
        !self.devices.is_empty()
    }

    /// Stop every backend now (device streams closed, paced threads joined;
    /// a WAV sink is finalised).
    pub fn stop(&mut self) {
        self.devices.clear();
        for t in &mut self.threads {
            t.stop();
        }
        self.threads.clear();
    }
}

impl Drop for AudioHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for AudioHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioHandle")
            .field("devices", &self.devices.len())
            .field("threads", &self.threads.len())
            .finish()
    }
}

/// The pipeline's ends of the two rings, plus what keeps them fed.
#[derive(Debug)]
pub struct AudioStreams {
    /// Captured audio, 48 kHz mono `i16` (to the encoder).
    pub capture: Consumer<i16>,
    /// Audio to play, 48 kHz mono `i16` (from the decoder).
    pub playback: Producer<i16>,
    /// Counters of the capture callback (overruns).
    pub capture_stats: Arc<RtStats>,
    /// Counters of the playback callback (underruns).
    pub playback_stats: Arc<RtStats>,
    /// What the capture side is connected to.
    pub capture_info: StreamInfo,
    /// What the playback side is connected to.
    pub playback_info: StreamInfo,
    /// Stops both backends when dropped.
    pub handle: AudioHandle,
}

/// Start `source` and `sink` and return the pipeline's ring ends.
///
/// Devices start playing at once; the paced backends (file, tone, silence,
/// null) share one thread that ticks them (see [`open`] to tick them from
/// your own clock instead). If either side fails, nothing keeps running. On
/// a machine without a sound device, `default` fails with
/// [`AudioError::NoDevice`].
pub fn start(
    source: &AudioSource,
    sink: &AudioSink,
    config: &AudioConfig,
) -> Result<AudioStreams, AudioError> {
    let (mut streams, paced) = open(source, sink, config)?;
    if !paced.is_empty() {
        let t = paced::PacedThread::spawn(
            "wakeline-paced",
            paced.period(),
            paced,
            PacedAudio::tick,
            |p| {
                if let Err(e) = p.finish() {
                    tracing::warn!("WAV sink: {e}");
                }
            },
        )?;
        streams.handle.threads.push(t);
    }
    Ok(streams)
}

/// True when opening `source` and `sink` touches a device or a file (call
/// [`open`] off an async runtime then); tones, silence and the null sink
/// open without blocking.
pub fn open_blocks(source: &AudioSource, sink: &AudioSink) -> bool {
    !matches!(source, AudioSource::Tone(_) | AudioSource::Silence)
        || !matches!(sink, AudioSink::Null)
}

/// Open `source` and `sink` without starting any thread of ours: devices
/// start playing at once (on their own callback threads); the paced backends
/// come back as a [`PacedAudio`] for the caller to tick once per
/// [`PacedAudio::period`] and [`PacedAudio::finish`] at the end.
pub fn open(
    source: &AudioSource,
    sink: &AudioSink,
    config: &AudioConfig,
) -> Result<(AudioStreams, PacedAudio), AudioError> {
    let ring = config.ring_samples.max(1);
    // A paced backend and its pipeline take turns each period, so its ring never holds more
    // than a catch-up burst: no need for a device's headroom (memory per call).
    let paced_ring =
        ring.min(config.period_frames(PIPELINE_RATE) * (paced::MAX_BEHIND as usize + 2));
    let mut handle = AudioHandle::new();
    let mut paced = PacedAudio::new(Duration::from_millis(u64::from(config.period_ms.max(1))));

    let (capture, capture_stats, capture_info) = match source {
        AudioSource::Default | AudioSource::Device(_) => {
            let name = match source {
                AudioSource::Device(n) => Some(n.as_str()),
                _ => None,
            };
            let d = device::open_input(name, config)?;
            handle.devices.push(d.stream);
            (d.ring, d.stats, d.info)
        }
        _ => {
            let (tx, rx) = RingBuffer::<i16>::new(paced_ring);
            let (s, stats, info) = match source {
                AudioSource::Wav(path) => file::wav_source(path, tx, config)?,
                AudioSource::Tone(hz) => tone::tone_source(*hz, tx, config),
                _ => tone::silence_source(tx, config),
            };
            paced.source = Some(s);
            (rx, stats, info)
        }
    };

    let (playback, playback_stats, playback_info) = match sink {
        AudioSink::Default | AudioSink::Device(_) => {
            let name = match sink {
                AudioSink::Device(n) => Some(n.as_str()),
                _ => None,
            };
            let d = device::open_output(name, config)?;
            handle.devices.push(d.stream);
            (d.ring, d.stats, d.info)
        }
        _ => {
            let (tx, rx) = RingBuffer::<i16>::new(paced_ring);
            let (s, stats, info) = match sink {
                AudioSink::Wav(path) => file::wav_sink(path, rx, config)?,
                _ => tone::null_sink(rx, config),
            };
            paced.sink = Some(s);
            (tx, stats, info)
        }
    };

    Ok((
        AudioStreams {
            capture,
            playback,
            capture_stats,
            playback_stats,
            capture_info,
            playback_info,
            handle,
        },
        paced,
    ))
}

/// Build the capture core for a backend (shared by every backend).
pub(crate) fn capture_core(ring: Producer<i16>, rate: u32, channels: u16) -> RtCapture {
    RtCapture::new(ring, rate, channels)
}

/// Build the playback core for a backend (shared by every backend).
pub(crate) fn playback_core(ring: Consumer<i16>, rate: u32, channels: u16) -> RtPlayback {
    RtPlayback::new(ring, rate, channels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources() {
        assert_eq!(
            "default".parse::<AudioSource>().unwrap(),
            AudioSource::Default
        );
        assert_eq!(
            "silence".parse::<AudioSource>().unwrap(),
            AudioSource::Silence
        );
        assert_eq!(
            "tone:440".parse::<AudioSource>().unwrap(),
            AudioSource::Tone(440.0)
        );
        assert_eq!(
            "a/b/In.WAV".parse::<AudioSource>().unwrap(),
            AudioSource::Wav(PathBuf::from("a/b/In.WAV"))
        );
        assert_eq!(
            "hw:1,0".parse::<AudioSource>().unwrap(),
            AudioSource::Device("hw:1,0".into())
        );
        for bad in ["", "tone:", "tone:abc", "tone:-5", "tone:30000", "tone:NaN"] {
            assert!(bad.parse::<AudioSource>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_sinks() {
        assert_eq!("default".parse::<AudioSink>().unwrap(), AudioSink::Default);
        assert_eq!("null".parse::<AudioSink>().unwrap(), AudioSink::Null);
        assert_eq!(
            "out.wav".parse::<AudioSink>().unwrap(),
            AudioSink::Wav(PathBuf::from("out.wav"))
        );
        assert_eq!(
            "pulse".parse::<AudioSink>().unwrap(),
            AudioSink::Device("pulse".into())
        );
        assert!("".parse::<AudioSink>().is_err());
        assert!(".wav".parse::<AudioSink>().unwrap() == AudioSink::Device(".wav".into()));
    }

    #[test]
    fn start_and_stop_paced_backends() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("rec.wav");
        let mut s = start(
            &AudioSource::Tone(440.0),
            &AudioSink::Wav(out.clone()),
            &AudioConfig::default(),
        )
        .unwrap();
        assert_eq!(s.capture_info.backend, "tone:440");
        assert_eq!(s.playback_info.sample_rate, 48000);
        s.handle.stop();
        // Stopped: the counters are final and the WAV file is finalised
        // with whole periods of 48 kHz mono audio.
        let ticks = s.playback_stats.snapshot().callbacks;
        let r = hound::WavReader::open(&out).unwrap();
        assert_eq!((r.spec().sample_rate, r.spec().channels), (48000, 1));
        assert_eq!(u64::from(r.duration()), ticks * 960);
        assert_eq!(s.capture.slots() as u64, s.capture_stats.snapshot().frames);
    }

    #[test]
    fn streams_can_move_to_another_thread() {
        fn is_send<T: Send>(_: &T) -> bool {
            true
        }
        let s = start(
            &AudioSource::Silence,
            &AudioSink::Null,
            &AudioConfig::default(),
        )
        .unwrap();
        assert!(is_send(&s));
        // Moved to another thread, it still stops cleanly there.
        let t = std::thread::spawn(move || drop(s));
        assert!(t.join().is_ok());
    }

    #[test]
    fn missing_wav_source_is_an_error() {
        let r = start(
            &AudioSource::Wav("/nonexistent/in.wav".into()),
            &AudioSink::Null,
            &AudioConfig::default(),
        );
        assert!(matches!(r, Err(AudioError::Wav(_))), "{r:?}");
    }

    #[test]
    fn period_frames_follow_rate() {
        let c = AudioConfig::default();
        assert_eq!(c.period_frames(48000), 960);
        assert_eq!(c.period_frames(44100), 882);
        assert_eq!(c.period_frames(8000), 160);
    }
}

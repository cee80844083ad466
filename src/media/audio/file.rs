//! WAV file backends: a source (looped or once) and a 48 kHz mono sink.
//!
//! The source reads the whole file before starting (any rate, any channel
//! count, integer or float samples) and hands one period of device frames
//! per tick to the shared [`RtCapture`], which mixes and resamples exactly as
//! for a sound card. Calls playing the same unchanged file share one decoded
//! copy ([`load_shared`]): a load test with hundreds of calls holds the file
//! once, not once per call. The sink pulls one period per tick from the shared
//! [`RtPlayback`] and appends it to a 16-bit mono 48 kHz WAV file.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::SystemTime;

use rtrb::{Consumer, Producer};

use super::paced::{PacedSink, PacedSource};
use super::rt::{RtCapture, RtPlayback, RtStats, PIPELINE_RATE};
use super::{capture_core, playback_core, AudioConfig, AudioError, StreamInfo};

/// A decoded WAV file: interleaved samples, full scale ±1.0, whole frames only.
#[derive(Debug)]
pub struct WavData {
    samples: Box<[f32]>,
    channels: usize,
    rate: u32,
}

impl WavData {
    /// Decodes `path` (any rate, any channel count, integer or float samples).
    pub fn load(path: &Path) -> Result<Self, AudioError> {
        let mut reader = hound::WavReader::open(path)?;
        let spec = reader.spec();
        let mut samples: Vec<f32> = match spec.sample_format {
            hound::SampleFormat::Float => reader.samples::<f32>().collect::<Result<_, _>>()?,
            hound::SampleFormat::Int => {
                let scale =
                    1.0 / (1u64 << spec.bits_per_sample.clamp(1, 32).saturating_sub(1)) as f32;
                reader
                    .samples::<i32>()
                    .map(|s| s.map(|v| v as f32 * scale))
                    .collect::<Result<_, _>>()?
            }
        };
        let channels = usize::from(spec.channels.max(1));
        samples.truncate(samples.len() - samples.len() % channels);
        Ok(WavData {
            samples: samples.into_boxed_slice(),
            channels,
            rate: spec.sample_rate,
        })
    }
}

/// What identifies a file's content for the cache: path, length and modification time.
type FileKey = (PathBuf, u64, Option<SystemTime>);

/// Files decoded for calls still playing them (weak), and the file loaded last (strong: a
/// tester's `--mic FILE` stays decoded between calls, so a call that starts after the
/// previous one ended does not decode it again).
#[derive(Default)]
struct Shared {
    playing: HashMap<FileKey, Weak<WavData>>,
    last: Option<(FileKey, Arc<WavData>)>,
}

static SHARED: LazyLock<Mutex<Shared>> = LazyLock::new(Mutex::default);

/// `path` decoded, shared with every call that plays the same unchanged file. The copy lives
/// while a call holds it or while it is the file loaded last; a changed file (another length
/// or modification time) is decoded again.
pub fn load_shared(path: &Path) -> Result<Arc<WavData>, AudioError> {
    load_via(&SHARED, path)
}

fn load_via(cache: &Mutex<Shared>, path: &Path) -> Result<Arc<WavData>, AudioError> {
    // A missing or unreadable file is a WAV error, as when hound opens it.
    let meta = std::fs::metadata(path).map_err(hound::Error::IoError)?;
    let key: FileKey = (path.to_path_buf(), meta.len(), meta.modified().ok());
    let lock = || cache.lock().unwrap_or_else(|p| p.into_inner());
    {
        // The file loaded last is among `playing` too, kept alive by `last`.
        let mut shared = lock();
        if let Some(data) = shared.playing.get(&key).and_then(Weak::upgrade) {
            shared.last = Some((key, data.clone()));
            return Ok(data);
        }
    }
    // Decoded without the lock: another call may decode the same file meanwhile, and the
    // last one stored wins; both copies are correct.
    let data = Arc::new(WavData::load(path)?);
    let mut shared = lock();
    shared.playing.retain(|_, w| w.strong_count() > 0);
    shared.playing.insert(key.clone(), Arc::downgrade(&data));
    shared.last = Some((key, data.clone()));
    Ok(data)
}

/// A WAV file loaded into memory, played one period per tick.
#[derive(Debug)]
pub struct WavSource {
    data: Arc<WavData>,
    pos: usize,
    looped: bool,
    period_samples: usize,
    silence: Vec<f32>,
}

impl WavSource {
    /// Load `path` (or share the copy other calls already hold); each tick delivers
    /// `config.period_ms` of audio.
    pub fn open(path: &Path, config: &AudioConfig) -> Result<Self, AudioError> {
        let data = load_shared(path)?;
        let period_samples = config.period_frames(data.rate) * data.channels;
        Ok(WavSource {
            data,
            pos: 0,
            looped: config.loop_wav,
            period_samples,
            silence: vec![0.0; period_samples],
        })
    }

    /// The file's sample rate in Hz.
    pub fn rate(&self) -> u32 {
        self.data.rate
    }

    /// The file's channel count.
    pub fn channels(&self) -> u16 {
        self.data.channels as u16
    }

    /// True once a non-looping source has delivered the whole file.
    pub fn is_finished(&self) -> bool {
        !self.looped && self.pos >= self.data.samples.len()
    }

    /// Deliver one period to `rt` (the file, wrapping when looped; silence
    /// after its end otherwise).
    pub fn tick(&mut self, rt: &mut RtCapture) {
        let mut need = self.period_samples;
        let (samples, channels) = (&self.data.samples, self.data.channels);
        // At most two slices when looping: the file's tail, then its head
        // (repeated only if the file is shorter than a period).
        while need > 0 {
            if self.pos >= samples.len() {
                if self.looped && !samples.is_empty() {
                    self.pos = 0;
                } else {
                    rt.process_capture(&self.silence[..need]);
                    return;
                }
            }
            let end = (self.pos + need).min(samples.len());
            // Whole frames only, so channels never shift between slices.
            let end = end - (end - self.pos) % channels;
            if end == self.pos {
                // Unreachable with whole-frame files and periods; be safe.
                return;
            }
            rt.process_capture(&samples[self.pos..end]);
            need -= end - self.pos;
            self.pos = end;
        }
    }
}

/// A 48 kHz mono 16-bit WAV writer fed one period per tick.
pub struct WavSink {
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    buf: Vec<i16>,
}

impl std::fmt::Debug for WavSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavSink")
            .field("open", &self.writer.is_some())
            .finish()
    }
}

impl WavSink {
    /// Create (or truncate) `path`; each tick writes `config.period_ms`.
    pub fn create(path: &Path, config: &AudioConfig) -> Result<Self, AudioError> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: PIPELINE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        Ok(WavSink {
            writer: Some(hound::WavWriter::create(path, spec)?),
            buf: vec![0; config.period_frames(PIPELINE_RATE)],
        })
    }

    /// Pull one period from `rt` and append it to the file. After a write
    /// error the file is abandoned and later periods are discarded.
    pub fn tick(&mut self, rt: &mut RtPlayback) {
        rt.process_playback(&mut self.buf);
        if let Some(w) = &mut self.writer {
            let mut out = w.get_i16_writer(self.buf.len() as u32);
            for &s in &self.buf {
                out.write_sample(s);
            }
            if out.flush().is_err() {
                self.writer = None;
            }
        }
    }

    /// Write the header's final lengths and close the file.
    pub fn finalize(&mut self) -> Result<(), AudioError> {
        match self.writer.take() {
            Some(w) => Ok(w.finalize()?),
            None => Ok(()),
        }
    }
}

/// A paced WAV source feeding `ring`.
pub fn wav_source(
    path: &Path,
    ring: Producer<i16>,
    config: &AudioConfig,
) -> Result<(PacedSource, Arc<RtStats>, StreamInfo), AudioError> {
    let src = WavSource::open(path, config)?;
    let rt = capture_core(ring, src.rate(), src.channels());
    let stats = rt.stats();
    let info = StreamInfo {
        backend: format!("wav:{}", path.display()),
        sample_rate: src.rate(),
        channels: src.channels(),
        sample_format: "f32".into(),
        buffer_frames: None,
    };
    Ok((PacedSource::Wav(src, rt), stats, info))
}

/// A paced WAV sink draining `ring` into `path` (48 kHz mono i16).
pub fn wav_sink(
    path: &Path,
    ring: Consumer<i16>,
    config: &AudioConfig,
) -> Result<(PacedSink, Arc<RtStats>, StreamInfo), AudioError> {
    let sink = WavSink::create(path, config)?;
    let rt = playback_core(ring, PIPELINE_RATE, 1);
    let stats = rt.stats();
    let info = StreamInfo {
        backend: format!("wav:{}", path.display()),
        sample_rate: PIPELINE_RATE,
        channels: 1,
        sample_format: "i16".into(),
        buffer_frames: None,
    };
    Ok((PacedSink::Wav(sink, rt), stats, info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtrb::RingBuffer;

    fn write_wav(path: &Path, rate: u32, channels: u16, frames: usize) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..frames {
            for _ in 0..channels {
                w.write_sample((i % 1000) as i16).unwrap();
            }
        }
        w.finalize().unwrap();
    }

    #[test]
    fn source_once_then_silence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.wav");
        write_wav(&path, 48000, 2, 1500);
        let cfg = AudioConfig {
            loop_wav: false,
            ..AudioConfig::default()
        };
        let mut src = WavSource::open(&path, &cfg).unwrap();
        let (p, mut c) = RingBuffer::new(4000);
        let mut rt = RtCapture::new(p, src.rate(), src.channels());
        src.tick(&mut rt);
        src.tick(&mut rt);
        assert!(src.is_finished());
        src.tick(&mut rt);
        let got: Vec<i16> = std::iter::from_fn(|| c.pop().ok()).collect();
        assert_eq!(got.len(), 3 * 960);
        assert!(got[..1500]
            .iter()
            .enumerate()
            .all(|(i, &s)| s == (i % 1000) as i16));
        assert!(got[1500..].iter().all(|&s| s == 0));
    }

    #[test]
    fn source_loops_and_resamples() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.wav");
        write_wav(&path, 44100, 1, 500); // shorter than one 882-frame period
        let mut src = WavSource::open(&path, &AudioConfig::default()).unwrap();
        let (p, c) = RingBuffer::new(100_000);
        let mut rt = RtCapture::new(p, src.rate(), src.channels());
        for _ in 0..50 {
            src.tick(&mut rt);
        }
        assert!(!src.is_finished());
        // 50 periods of 20 ms → one second at 48 kHz.
        assert!(c.slots().abs_diff(48000) <= 2, "{}", c.slots());
    }

    #[test]
    fn calls_share_one_copy_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.wav");
        write_wav(&path, 48000, 1, 4800);
        // A cache of the test's own: other tests load other files into the process's.
        let cache = Mutex::default();
        let a = load_via(&cache, &path).unwrap();
        let b = load_via(&cache, &path).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        // A different file at the same path (another length) is decoded anew.
        write_wav(&path, 48000, 1, 9600);
        let c = load_via(&cache, &path).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(c.samples.len(), 9600);
        // The file loaded last stays decoded for the next call; an older copy is freed once
        // no call holds it.
        let (old, last) = (Arc::downgrade(&a), Arc::downgrade(&c));
        drop((a, b, c));
        assert!(old.upgrade().is_none());
        assert!(last.upgrade().is_some());
    }

    #[test]
    fn sink_writes_48k_mono() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.wav");
        let mut sink = WavSink::create(&path, &AudioConfig::default()).unwrap();
        let (mut p, c) = RingBuffer::new(2000);
        for i in 0..1000 {
            p.push(i as i16).unwrap();
        }
        let mut rt = RtPlayback::new(c, PIPELINE_RATE, 1);
        sink.tick(&mut rt);
        sink.tick(&mut rt);
        sink.finalize().unwrap();
        let mut r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.spec().sample_rate, 48000);
        assert_eq!(r.spec().channels, 1);
        let s: Vec<i16> = r.samples::<i16>().map(|x| x.unwrap()).collect();
        assert_eq!(s.len(), 1920);
        assert_eq!(&s[..3], &[0, 1, 2]);
        assert!(s[1000..].iter().all(|&v| v == 0));
        assert_eq!(rt.stats().snapshot().underruns, 1);
    }
}

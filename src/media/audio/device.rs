//! The cpal backend: list, choose and open sound devices.
//!
//! The device callback only calls
//! [`RtCapture::process_capture`](super::rt::RtCapture::process_capture) or
//! [`RtPlayback::process_playback`](super::rt::RtPlayback::process_playback). The stream format is chosen for the
//! least conversion work: 48 kHz when offered, then `i16` over `f32` over
//! other types, then the fewest channels; the buffer is fixed at one period
//! (960 frames at 48 kHz for 20 ms) when the device allows it.
//!
//! On ALSA the default device always "exists"; on a machine without a sound
//! card it fails when its configurations are queried, which is reported as
//! [`AudioError::NoDevice`] (cpal returns, it does not block).

use std::sync::Arc;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{
    BufferSize, SampleFormat, SizedSample, StreamConfig, SupportedBufferSize,
    SupportedStreamConfig, SupportedStreamConfigRange,
};
use rtrb::{Consumer, Producer, RingBuffer};

use super::rt::{RtStats, Sample, PIPELINE_RATE};
use super::{capture_core, playback_core, AudioConfig, AudioError, StreamInfo};

/// One device as listed by [`list_devices`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The name to pass as `--mic` / `--speaker`.
    pub name: String,
    /// True if the device can capture.
    pub input: bool,
    /// True if the device can play.
    pub output: bool,
}

/// List the devices of the default host (`--list-devices`).
pub fn list_devices() -> Result<Vec<DeviceInfo>, AudioError> {
    let host = cpal::default_host();
    let mut out = Vec::new();
    for d in host.devices()? {
        let Ok(desc) = d.description() else { continue };
        out.push(DeviceInfo {
            name: desc.name().to_owned(),
            input: d.supports_input(),
            output: d.supports_output(),
        });
    }
    Ok(out)
}

/// Rank of a sample format (lower is better); `None` if unsupported here.
fn format_rank(f: SampleFormat) -> Option<u8> {
    match f {
        SampleFormat::I16 => Some(0),
        SampleFormat::F32 => Some(1),
        SampleFormat::I32 => Some(2),
        SampleFormat::F64 => Some(3),
        SampleFormat::U16 => Some(4),
        _ => None,
    }
}

/// Choose a stream format from `ranges` (see the module docs for the order).
pub fn choose_config(
    ranges: impl IntoIterator<Item = SupportedStreamConfigRange>,
) -> Option<SupportedStreamConfig> {
    ranges
        .into_iter()
        .filter_map(|r| {
            let rank = format_rank(r.sample_format())?;
            let rate = if r.contains_rate(PIPELINE_RATE) {
                PIPELINE_RATE
            } else if r.max_sample_rate() < PIPELINE_RATE {
                r.max_sample_rate()
            } else {
                r.min_sample_rate()
            };
            if rate == 0 || r.channels() == 0 {
                return None;
            }
            let key = (rate.abs_diff(PIPELINE_RATE), rank, r.channels());
            Some((key, r.try_with_sample_rate(rate)?))
        })
        .min_by_key(|(key, _)| *key)
        .map(|(_, c)| c)
}

/// The stream config for `chosen`, with a fixed one-period buffer when the
/// device allows it (clamped into its range), else the device default.
pub fn stream_config(chosen: &SupportedStreamConfig, config: &AudioConfig) -> StreamConfig {
    let want = config.period_frames(chosen.sample_rate()) as u32;
    let buffer_size = match *chosen.buffer_size() {
        SupportedBufferSize::Range { min, max } if min <= max => {
            BufferSize::Fixed(want.clamp(min, max))
        }
        SupportedBufferSize::Range { .. } => BufferSize::Default,
        SupportedBufferSize::Unknown => BufferSize::Fixed(want),
    };
    StreamConfig {
        channels: chosen.channels(),
        sample_rate: chosen.sample_rate(),
        buffer_size,
    }
}

fn find_device(
    host: &cpal::Host,
    name: Option<&str>,
    input: bool,
) -> Result<cpal::Device, AudioError> {
    let kind = if input { "input" } else { "output" };
    let Some(name) = name else {
        let d = if input {
            host.default_input_device()
        } else {
            host.default_output_device()
        };
        return d.ok_or_else(|| AudioError::NoDevice(format!("no default {kind} device")));
    };
    let devices = if input {
        host.input_devices().map(|d| d.collect::<Vec<_>>())
    } else {
        host.output_devices().map(|d| d.collect::<Vec<_>>())
    }
    .map_err(|e| AudioError::NoDevice(format!("cannot list {kind} devices: {e}")))?;
    devices
        .into_iter()
        .find(|d| {
            d.description().is_ok_and(|desc| desc.name() == name)
                || d.id().is_ok_and(|id| id.id() == name)
        })
        .ok_or_else(|| AudioError::NoDevice(format!("no {kind} device named {name:?}")))
}

fn describe(name: Option<&str>, sc: &StreamConfig, format: SampleFormat) -> StreamInfo {
    StreamInfo {
        backend: format!("cpal:{}", name.unwrap_or("default")),
        sample_rate: sc.sample_rate,
        channels: sc.channels,
        sample_format: format.to_string(),
        buffer_frames: match sc.buffer_size {
            BufferSize::Fixed(n) => Some(n),
            BufferSize::Default => None,
        },
    }
}

fn on_error(e: cpal::Error) {
    // The error callback is not the real-time data path.
    tracing::warn!("audio stream error: {e}");
}

/// A started device stream with the pipeline's end of its ring.
pub struct DeviceStream<R> {
    /// The running cpal stream (stops when dropped).
    pub stream: cpal::Stream,
    /// The pipeline's end of the ring.
    pub ring: R,
    /// The callback's counters.
    pub stats: Arc<RtStats>,
    /// What was opened.
    pub info: StreamInfo,
}

impl<R> std::fmt::Debug for DeviceStream<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceStream")
            .field("info", &self.info)
            .finish()
    }
}

fn build_input<T: Sample + SizedSample>(
    device: &cpal::Device,
    sc: StreamConfig,
    ring_samples: usize,
) -> Result<(cpal::Stream, Consumer<i16>, Arc<RtStats>), cpal::Error> {
    let (tx, rx) = RingBuffer::new(ring_samples.max(1));
    let mut rt = capture_core(tx, sc.sample_rate, sc.channels);
    let stats = rt.stats();
    let stream = device.build_input_stream::<T, _, _>(
        sc,
        move |data: &[T], _| rt.process_capture(data),
        on_error,
        None,
    )?;
    Ok((stream, rx, stats))
}

fn build_output<T: Sample + SizedSample>(
    device: &cpal::Device,
    sc: StreamConfig,
    ring_samples: usize,
) -> Result<(cpal::Stream, Producer<i16>, Arc<RtStats>), cpal::Error> {
    let (tx, rx) = RingBuffer::new(ring_samples.max(1));
    let mut rt = playback_core(rx, sc.sample_rate, sc.channels);
    let stats = rt.stats();
    let stream = device.build_output_stream::<T, _, _>(
        sc,
        move |data: &mut [T], _| rt.process_playback(data),
        on_error,
        None,
    )?;
    Ok((stream, tx, stats))
}

type Built<R> = (cpal::Stream, R, Arc<RtStats>);

/// Build with the fixed buffer; if the device refuses it, once more with
/// its default buffer size. Then start the stream.
fn build_and_play<R>(
    name: Option<&str>,
    format: SampleFormat,
    sc: StreamConfig,
    build: impl Fn(StreamConfig) -> Result<Built<R>, cpal::Error>,
) -> Result<DeviceStream<R>, AudioError> {
    let (built, sc) = match build(sc) {
        Ok(b) => (b, sc),
        Err(e) if matches!(sc.buffer_size, BufferSize::Fixed(_)) => {
            tracing::debug!("fixed buffer refused ({e}); using the device default");
            let sc = StreamConfig {
                buffer_size: BufferSize::Default,
                ..sc
            };
            (build(sc)?, sc)
        }
        Err(e) => return Err(e.into()),
    };
    let (stream, ring, stats) = built;
    stream.play()?;
    Ok(DeviceStream {
        stream,
        ring,
        stats,
        info: describe(name, &sc, format),
    })
}

fn no_config(kind: &str, name: Option<&str>, e: impl std::fmt::Display) -> AudioError {
    let name = name.unwrap_or("default");
    AudioError::NoDevice(format!(
        "{kind} device {name:?} is unusable (is there a sound card?): {e}"
    ))
}

/// Open and start the input device `name` (or the default); the returned
/// ring end receives its audio as 48 kHz mono `i16`.
pub fn open_input(
    name: Option<&str>,
    config: &AudioConfig,
) -> Result<DeviceStream<Consumer<i16>>, AudioError> {
    let host = cpal::default_host();
    let device = find_device(&host, name, true)?;
    let ranges = device
        .supported_input_configs()
        .map_err(|e| no_config("input", name, e))?;
    let chosen = choose_config(ranges)
        .ok_or_else(|| AudioError::UnsupportedConfig("no usable input format".into()))?;
    let format = chosen.sample_format();
    let n = config.ring_samples;
    build_and_play(
        name,
        format,
        stream_config(&chosen, config),
        |sc| match format {
            SampleFormat::I16 => build_input::<i16>(&device, sc, n),
            SampleFormat::F32 => build_input::<f32>(&device, sc, n),
            SampleFormat::I32 => build_input::<i32>(&device, sc, n),
            SampleFormat::F64 => build_input::<f64>(&device, sc, n),
            _ => build_input::<u16>(&device, sc, n),
        },
    )
}

/// Open and start the output device `name` (or the default); audio pushed
/// into the returned ring end (48 kHz mono `i16`) is played.
pub fn open_output(
    name: Option<&str>,
    config: &AudioConfig,
) -> Result<DeviceStream<Producer<i16>>, AudioError> {
    let host = cpal::default_host();
    let device = find_device(&host, name, false)?;
    let ranges = device
        .supported_output_configs()
        .map_err(|e| no_config("output", name, e))?;
    let chosen = choose_config(ranges)
        .ok_or_else(|| AudioError::UnsupportedConfig("no usable output format".into()))?;
    let format = chosen.sample_format();
    let n = config.ring_samples;
    build_and_play(
        name,
        format,
        stream_config(&chosen, config),
        |sc| match format {
            SampleFormat::I16 => build_output::<i16>(&device, sc, n),
            SampleFormat::F32 => build_output::<f32>(&device, sc, n),
            SampleFormat::I32 => build_output::<i32>(&device, sc, n),
            SampleFormat::F64 => build_output::<f64>(&device, sc, n),
            _ => build_output::<u16>(&device, sc, n),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(ch: u16, min: u32, max: u32, f: SampleFormat) -> SupportedStreamConfigRange {
        SupportedStreamConfigRange::new(
            ch,
            min,
            max,
            SupportedBufferSize::Range { min: 64, max: 8192 },
            f,
        )
    }

    #[test]
    fn prefers_48k_then_i16_then_fewest_channels() {
        let c = choose_config(vec![
            range(2, 8000, 192000, SampleFormat::F32),
            range(1, 44100, 44100, SampleFormat::I16),
            range(2, 8000, 192000, SampleFormat::I16),
            range(1, 8000, 192000, SampleFormat::U8),
        ])
        .unwrap();
        assert_eq!(
            (c.sample_rate(), c.sample_format(), c.channels()),
            (48000, SampleFormat::I16, 2)
        );
        let c = choose_config(vec![
            range(2, 44100, 44100, SampleFormat::F32),
            range(1, 96000, 96000, SampleFormat::F32),
        ])
        .unwrap();
        assert_eq!(c.sample_rate(), 44100);
        assert!(choose_config(vec![range(1, 8000, 48000, SampleFormat::U8)]).is_none());
    }

    #[test]
    fn fixed_buffer_of_one_period_when_allowed() {
        let c = choose_config(vec![range(1, 8000, 48000, SampleFormat::I16)]).unwrap();
        let sc = stream_config(&c, &AudioConfig::default());
        assert_eq!(sc.buffer_size, BufferSize::Fixed(960));
        let small = SupportedStreamConfig::new(
            1,
            48000,
            SupportedBufferSize::Range { min: 64, max: 512 },
            SampleFormat::I16,
        );
        assert_eq!(
            stream_config(&small, &AudioConfig::default()).buffer_size,
            BufferSize::Fixed(512)
        );
        let unknown =
            SupportedStreamConfig::new(1, 44100, SupportedBufferSize::Unknown, SampleFormat::F32);
        assert_eq!(
            stream_config(&unknown, &AudioConfig::default()).buffer_size,
            BufferSize::Fixed(882)
        );
    }

    #[test]
    fn listing_devices_returns() {
        // Must return (not hang) with or without a sound card.
        if let Ok(list) = list_devices() {
            assert!(list.iter().all(|d| !d.name.is_empty()), "{list:?}");
        }
    }

    #[test]
    fn default_device_fails_fast_or_opens() {
        // On a machine without a sound card this must return NoDevice, not
        // hang; with one, it opens. Either way it returns.
        let r = open_output(None, &AudioConfig::default());
        eprintln!("default output: {r:?}");
        match r {
            Ok(s) => assert!(s.info.sample_rate > 0),
            Err(e) => assert!(
                matches!(e, AudioError::NoDevice(_) | AudioError::Backend(_)),
                "{e}"
            ),
        }
    }
}

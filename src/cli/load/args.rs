//! `wakeline load`'s flags.

use crate::cli::args::{parse_media_ip, AccountArgs, CommonArgs};
use clap::Args;
use std::net::IpAddr;
use std::path::PathBuf;

/// What `wakeline load --help` says after the flags.
pub const LOAD_HELP: &str = "\
Each call is judged on its own: answered (2xx), then held --duration and hung up with BYE.
Audio received: the far end's tone was heard in at least half of what we played (the
--expect-tone, by default our own --mic tone:HZ, which is what `wakeline listen --mic tone:HZ`,
SIPp -rtp_echo and a tone-playing baresip send); without a known tone, RTP came with a level
above -60 dBFS.
Audio sent: we sent RTP and the far end showed it got it: its RTCP carried a report block on
our stream (needs calls longer than the far end's first report: 1.25-3.75 s for wakeline,
up to 7.5 s for baresip);
or, with --echo, our own tone came back; or, with --peer-summary, the answering `wakeline
listen --summary FILE --expect-tone HZ` wrote for that Call-ID that it received our RTP (and
heard our tone when it looked for one; its line, when there is one, decides). Nothing else
counts: an unproven direction is a failure.

Output: a line on stderr about once a second (calls up, attempted/answered, INVITE->200 p50/p99,
failures by code, mean MOS); at the end a table on stdout; --summary FILE.json: one JSON object
{attempted, answered, failed {code|cause: count}, ringing_ms and setup_ms {p50,p90,p99,max},
loss_percent, jitter_ms and mos {min,mean,p50,max}, audio_sent, audio_received,
audio_both_ways, audio_sent_by, max_concurrent, elapsed_s}.

Exit status: 0 when every call was answered with audio both ways; 1 otherwise, with one line
on stderr saying how many calls failed and why; 2 usage; 3 network (e.g. the registrar);
130/143 interrupted.";

/// `wakeline load`
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Who to call, e.g. 'sip:load@127.0.0.1:5070;transport=tcp'.
    #[arg(value_name = "URI")]
    pub uri: String,
    /// New calls per second.
    #[arg(long, value_name = "R", default_value_t = 10.0)]
    pub rate: f64,
    /// Calls to place in all.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub calls: usize,
    /// At most this many calls up at once; a new call waits for a free slot.
    #[arg(long, value_name = "C", default_value_t = 10)]
    pub concurrent: usize,
    /// Hold each answered call this long, then hang up (BYE).
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub duration: f64,
    /// Give up (CANCEL) on a call not answered within SECS; it counts as `setup timeout`.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub setup_timeout: f64,
    #[command(flatten)]
    pub account: AccountArgs,
    /// Our audio in every call: tone:HZ|FILE.wav|silence.
    #[arg(long, value_name = "SOURCE", default_value = "tone:440")]
    pub mic: String,
    /// Where the far end's audio goes: null|FILE.wav|default|DEVICE.
    #[arg(long, value_name = "SINK", default_value = "null")]
    pub speaker: String,
    /// Codec preference order; also restricts what we offer.
    #[arg(long, value_name = "LIST", default_value = "opus,pcmu,pcma")]
    pub codecs: String,
    #[command(flatten)]
    pub encoder: crate::cli::args::EncoderArgs,
    /// The tone the far end plays (Hz); default: our --mic tone:HZ. `0`: none, judge the far
    /// end's audio by its level.
    #[arg(long, value_name = "HZ")]
    pub expect_tone: Option<f32>,
    /// The far end echoes our audio (SIPp -rtp_echo): our tone coming back shows it arrived.
    #[arg(long)]
    pub echo: bool,
    /// The answering `wakeline listen`'s --summary file: its line for a call shows that our
    /// audio arrived.
    #[arg(long, value_name = "FILE.jsonl")]
    pub peer_summary: Option<PathBuf>,
    /// Write the run's numbers as one JSON object.
    #[arg(long, value_name = "FILE.json")]
    pub summary: Option<PathBuf>,
    /// Draw a histogram of INVITE->200 times to an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub report: Option<PathBuf>,
    /// Bind RTP/RTCP to this address and announce it in SDP.
    #[arg(long, value_name = "ADDR", value_parser = parse_media_ip)]
    pub media_ip: Option<IpAddr>,
    #[command(flatten)]
    pub common: CommonArgs,
}

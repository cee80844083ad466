#!/usr/bin/env bash
# Side-by-side load comparison (issue 12 §5): the same SIPp load over TCP (-t t1) against
# `wakeline listen --answer auto --mic tone:440 --speaker null` and a headless baresip
# (ausine tone source, aubridge/nil player: paced, no ALSA), both answering with Opus
# (--audio speech: both send a generated speech-like WAV instead).
# sipp echoes each side's RTP back (-rtp_echo), so both encode and decode one stream.
# All user agents run side by side; the held phases come one after the other, then the
# batches alternate between the user agents (round 1: each one's first batch, ...), and the
# last lines give each wakeline's CPU per call against baresip's, round by round.
#
# Prints, per user agent, from the same run:
#   threads   OS threads idle and while holding calls (per held call)
#   wake/s    context switches (voluntary + involuntary, all threads; `perf stat` when it works,
#             else /proc/PID/task/*/status) per held call per second
#   cpu/call  utime+stime from /proc/PID/stat before/after a batch, per call (CPU time, not
#             wall time: the machine may be shared)
#   setup     INVITE→200 percentiles from sipp's -trace_rtt, and failed calls
#   memory    RSS while holding minus RSS idle, per call held and answered (VmRSS of
#             /proc/PID/status)
#   drops     wakeline only, from the `--events` media_report of every held call: captured
#             frames dropped or missing (capture_dropped + capture_underruns: send slots without
#             a frame) and played frames concealed (concealed_frames: lost, late or missing
#             packets), against the frames a call of that duration has (50/s each way at 20 ms);
#             for each batch with media, each direction's share: captured-dropped (our side
#             could not keep up) and concealed (the far end's packets missing or late, and
#             frames the jitter buffer inserts to grow); and for the held phase, the frames
#             concealed while all its calls were up (from the calls' media_stats, once a
#             second each, over the window the wake-ups and CPU are measured in: the set-up
#             ramp excluded)
#
# Usage: scripts/compare.sh [--wakeline BIN]... [--no-baresip] [--batches "R:MS ..."] [--calls N]
#                           [--limit L] [--held C] [--held-s S] [--held-rate R]
#                           [--audio tone|speech]
#   --wakeline BIN  a wakeline binary to measure (repeat to compare builds; default
#                   target/release/wakeline; `none`: baresip only)
#   --batches       one batch of --calls calls per RATE:HOLD_MS pair: call attempts per second
#                   and how long each call holds media (default "10:1000 20:1000 50:1000 10:0 50:0")
#   --calls         calls per batch (default 200)
#   --limit         most simultaneous calls sipp keeps up (default 200; a wakeline without
#                   `listen --max-concurrent` answers one call at a time and gets limit 1: sipp
#                   then waits, and the achieved rate is printed)
#   --held, --held-s  the held phase (wake-ups, CPU, memory, drops): C calls held S seconds
#                   (default 20 calls, 10 s; `--held 0`: none; --limit does not cap C)
#   --held-rate     how fast the held calls are set up (calls per second; default C: all of
#                   them within the first second)
#   --audio         what both user agents send: `tone` (440 Hz, default) or `speech` (a generated
#                   25 s speech-like WAV: voiced harmonics with vibrato, syllables and pauses,
#                   noise; wakeline --mic FILE (mono), baresip aufile (the same, stereo); keep
#                   --held-s under 25). Opus codes a steady tone in its cheapest mode (CELT;
#                   wakeline tells libopus a tone source is music, so from the first frame), so
#                   `speech` is the fairer CPU comparison; wakeline's WAV source holds the
#                   whole file per call, so read memory from a `tone` run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
scenario="$here/compare/uac_hold.xml"
bins=()
baresip=1
batches="10:1000 20:1000 50:1000 10:0 50:0"
calls=200
limit=200
held=20
held_s=10
held_rate=
audio=tone
while [ $# -gt 0 ]; do
    case "$1" in
        --wakeline) bins+=("$2"); shift 2 ;;
        --no-baresip) baresip=0; shift ;;
        --batches) batches="$2"; shift 2 ;;
        --calls) calls="$2"; shift 2 ;;
        --limit) limit="$2"; shift 2 ;;
        --held) held="$2"; shift 2 ;;
        --held-s) held_s="$2"; shift 2 ;;
        --held-rate) held_rate="$2"; shift 2 ;;
        --audio) audio="$2"; shift 2 ;;
        -h|--help) sed -n '2,51p' "$0"; exit 0 ;;
        *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ ${#bins[@]} -gt 0 ] || bins=("$here/../target/release/wakeline")
for t in sipp python3; do
    command -v "$t" >/dev/null || { echo "compare.sh: $t is not installed" >&2; exit 2; }
done
[ $baresip -eq 0 ] || command -v baresip >/dev/null || { echo "compare.sh: no baresip" >&2; exit 2; }

work=$(mktemp -d /tmp/wl-compare.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
hz=$(getconf CLK_TCK)

# What both sides send: wakeline's --mic and baresip's audio_source.
case "$audio" in
    tone) mic=tone:440; ausrc="ausine,440" ;;
    speech)
        mic="$work/speech.wav"; ausrc="aufile,$work/speech2.wav"
        python3 - "$mic" "$work/speech2.wav" <<'PY'
import array, math, random, sys, wave
rate, secs = 48000, 25
rnd = random.Random(5)
out = array.array("h")
phase = 0.0
for i in range(rate * secs):
    t = i / rate
    f0 = 140.0 + 20.0 * math.sin(2 * math.pi * 3.0 * t)
    phase += 2 * math.pi * f0 / rate
    # Syllables of ~200 ms, a pause every 1.5 s.
    env = max(0.0, math.sin(2 * math.pi * 2.5 * t)) * (0.0 if t % 1.5 > 1.2 else 1.0)
    v = sum(a * math.sin(k * phase) for k, a in ((1, 3000), (2, 2000), (3, 1200), (5, 600), (8, 300)))
    out.append(int(max(-32768, min(32767, env * v + rnd.uniform(-300, 300)))))
stereo = array.array("h", (s for v in out for s in (v, v)))
for path, ch, pcm in ((sys.argv[1], 1, out), (sys.argv[2], 2, stereo)):
    with wave.open(path, "wb") as w:
        w.setnchannels(ch); w.setsampwidth(2); w.setframerate(rate); w.writeframes(pcm.tobytes())
PY
        ;;
    *) echo "compare.sh: --audio tone|speech" >&2; exit 2 ;;
esac

# free_port, wait_tcp
. "$here/compare/common.sh"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
threads() { awk '/^Threads:/ {print $2}' "/proc/$1/status"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
ctxt_proc() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n}'; }

# Context switches of process $1 over $2 seconds (perf counts threads that exit, too).
ctxt_over() {
    if perf stat -x, -e context-switches -p "$1" -o "$work/perf" -- sleep "$2" 2>/dev/null &&
        c=$(awk -F, '/context-switches/ {print $1}' "$work/perf") && [ -n "$c" ] &&
        [ "$c" != "<not" ]; then
        echo "$c perf"
    else
        local a b
        a=$(ctxt_proc "$1"); sleep "$2"; b=$(ctxt_proc "$1")
        echo "$((b - a)) proc"
    fi
}

run_sipp() { # name port ncalls rate limit hold_ms -> prints "ok failed elapsed_s"
    local dir="$work/sipp-${1//\//_}" start end
    rm -rf "$dir"; mkdir -p "$dir"
    start=$(date +%s.%N)
    (cd "$dir" && sipp -sf "$scenario" -t t1 -i 127.0.0.1 -nostdin -p "$(free_port)" \
        -mp "$(free_media_port)" -rtp_echo -m "$3" -r "$4" -l "$5" -d "$6" -trace_rtt -rtt_freq 1 \
        -timeout 120s -timeout_error "127.0.0.1:$2" >sipp.out 2>&1) || true
    end=$(date +%s.%N)
    local ok
    ok=$(cat "$dir"/*_rtt.csv 2>/dev/null | grep -c '^[0-9]' || true)
    echo "$ok $(($3 - ok)) $(echo "$end - $start" | bc -l)"
}

# INVITE→200 percentiles (ms) of the last batch: p50 p90 p99 max.
setup_pcts() {
    cat "$work/sipp-${1//\//_}"/*_rtt.csv 2>/dev/null | awk -F';' '/^[0-9]/ {print $2}' | sort -g |
        awk '{v[NR] = $1} END {
            if (NR == 0) { print "- - - -"; exit }
            i50 = int(NR * 0.50 + 0.999); i90 = int(NR * 0.90 + 0.999); i99 = int(NR * 0.99 + 0.999)
            printf "%.1f %.1f %.1f %.1f\n", v[i50], v[i90], v[i99], v[NR] }'
}

# Frames dropped over the media_report lines in events file $1 (after line $2): prints
# "calls dropped expected percent captured_percent concealed_percent" (captured: frames we
# dropped or had none for; concealed: frames played without the far end's packet).
frame_drops() {
    tail -n +"$(($2 + 1))" "$1" | python3 -c '
import json, sys
calls = dropped = expected = captured = 0
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("event") != "media_report":
        continue
    calls += 1
    ours = sum(e.get(k) or 0 for k in ("capture_dropped", "capture_underruns"))
    captured += ours
    dropped += ours + (e.get("concealed_frames") or 0)
    expected += 2 * round((e.get("duration_s") or 0) * 50)
pct = lambda n: "%.3f" % (100.0 * n / expected if expected else 0.0)
print(calls, dropped, expected, pct(dropped), pct(2 * captured), pct(2 * (dropped - captured)))'
}

# Frames concealed between the epoch seconds $3 and $4, from the media_stats lines of events
# file $1 (after line $2): per call, from its first snapshot at or after $3 to its last at
# or before $4. Prints "calls concealed expected percent" (expected: both directions' frames over
# the same spans, 50/s each way; percent as frame_drops counts it, over both directions).
held_window_drops() {
    tail -n +"$(($2 + 1))" "$1" | python3 -c '
import json, sys
from datetime import datetime
w0, w1 = float(sys.argv[1]), float(sys.argv[2])
first, last = {}, {}
for line in sys.stdin:
    try:
        e = json.loads(line)
        t = datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp()
    except (ValueError, KeyError, TypeError):
        continue
    if e.get("event") != "media_stats" or t < w0 or t > w1:
        continue
    snap = (e.get("elapsed_s") or 0.0, (e.get("concealed_ms") or 0.0) / 20.0)
    last[e.get("call_id")] = snap
    first.setdefault(e.get("call_id"), snap)
calls = concealed = expected = 0
for call, (s0, c0) in first.items():
    s1, c1 = last[call]
    if s1 > s0:
        calls += 1
        concealed += c1 - c0
        expected += 2 * round((s1 - s0) * 50)
pct = 100.0 * concealed / expected if expected else 0.0
print(calls, round(concealed), expected, "%.3f" % pct)' "$3" "$4"
}

measure_held() { # label pid port limit [events-file]
    local label=$1 pid=$2 port=$3 limit=$4 events=${5:-} idle c0 c1 ctx mid held=$held
    local rss0 rss1 ev0=0 rate ramp w0 w1
    # `--held 0`: no held phase (the rate batches only).
    [ "$held" -gt 0 ] || return 0
    # A user agent that answers one call at a time holds one.
    [ "$limit" -gt 1 ] || held=1
    idle=$(threads "$pid")
    rss0=$(rss_kb "$pid")
    [ -z "$events" ] || ev0=$(wc -l <"$events")
    # Wake-up phase: $held calls set up over $ramp s and held $held_s s each; measured over
    # the middle of the hold, once all are up.
    rate=${held_rate:-$held}
    ramp=$(((held + rate - 1) / rate))
    run_sipp "$label-held" "$port" "$held" "$rate" "$held" "$((held_s * 1000))" >"$work/held.out" &
    local sp=$!
    sleep "$ramp.5"
    mid=$(threads "$pid")
    local span=$((held_s - ramp - 2))
    [ "$span" -ge 1 ] || span=1
    w0=$(date +%s.%N)
    c0=$(cpu_ticks "$pid")
    ctx=$(ctxt_over "$pid" "$span")
    c1=$(cpu_ticks "$pid")
    w1=$(date +%s.%N)
    rss1=$(rss_kb "$pid")
    wait "$sp" || true
    read -r hok hfail _ <"$work/held.out" || { hok=0; hfail=$held; }
    printf '%-22s threads idle %s, holding %s call(s) %s (%s per call); held ok %s failed %s\n' \
        "$label" "$idle" "$held" "$mid" "$(echo "scale=1; ($mid - $idle) / $held" | bc -l)" "$hok" "$hfail"
    printf '%-22s wake-ups per held call per second: %s (%s); CPU while holding: %s ms/s per call\n' \
        "$label" "$(echo "scale=1; ${ctx% *} / $held / $span" | bc -l)" "${ctx#* }" \
        "$(echo "scale=2; ($c1 - $c0) * 1000 / $hz / $held / $span" | bc -l)"
    # Per call that was answered and held (a user agent that refused some holds fewer).
    local held_ok=$hok
    [ "$held_ok" -gt 0 ] || held_ok=1
    printf '%-22s memory: RSS idle %s kB, holding %s kB, %s kB per held call (%s held)\n' \
        "$label" "$rss0" "$rss1" "$(echo "scale=1; ($rss1 - $rss0) / $held_ok" | bc -l)" "$hok"
    if [ -n "$events" ]; then
        sleep 1 # the last media reports
        read -r dcalls dropped expected pct cap con < <(frame_drops "$events" "$ev0")
        printf '%-22s frames dropped over %s held call(s): %s of %s (%s %%: captured frames dropped or missing + played frames concealed; each direction: captured-dropped %s %%, concealed %s %%)\n' \
            "$label" "$dcalls" "$dropped" "$expected" "$pct" "$cap" "$con"
        read -r dcalls con expected pct < <(held_window_drops "$events" "$ev0" "$w0" "$w1")
        printf '%-22s while all were held (%s s, after %s set-ups in %s s): %s call(s) concealed %s of %s frames (%s %%)\n' \
            "$label" "$span" "$held" "$ramp" "$dcalls" "$con" "$expected" "$pct"
    fi
}

measure_batch() { # label pid port limit RATE:HOLD_MS [events-file]
    local label=$1 pid=$2 port=$3 limit=$4 b=$5 events=${6:-} t0 t1 r hold_ms frames ev0=0
    local ok failed secs p50 p90 p99 max cap con
    r=${b%%:*}; hold_ms=${b#*:}
    [ -z "$events" ] || ev0=$(wc -l <"$events")
    t0=$(cpu_ticks "$pid")
    read -r ok failed secs < <(run_sipp "$label-r$r-$hold_ms" "$port" "$calls" "$r" "$limit" "$hold_ms")
    t1=$(cpu_ticks "$pid")
    read -r p50 p90 p99 max < <(setup_pcts "$label-r$r-$hold_ms")
    frames=""
    if [ -n "$events" ] && [ "$hold_ms" -gt 0 ]; then
        sleep 1 # the last media reports
        read -r _ _ _ _ cap con < <(frame_drops "$events" "$ev0")
        # Each direction's own share: captured frames dropped (our side is overloaded),
        # played frames concealed (the far end's packets missing or late).
        frames=", frames captured-dropped $cap %, concealed $con %"
    fi
    printf '%-22s rate %s/s (achieved %s/s, limit %s, hold %s ms): %s calls, %s failed, cpu/call %s ms, INVITE->200 p50 %s p90 %s p99 %s max %s ms%s\n' \
        "$label" "$r" "$(echo "scale=2; $calls / $secs" | bc -l)" "$limit" "$hold_ms" "$calls" \
        "$failed" "$(echo "scale=2; ($t1 - $t0) * 1000 / $hz / $calls" | bc -l)" "$p50" "$p90" "$p99" "$max" "$frames"
    last_cpu=$(echo "scale=4; ($t1 - $t0) * 1000 / $hz / $calls" | bc -l)
}

echo "# $(date -u '+%F %T') UTC, $(nproc) cores, audio $audio; CPU figures are CPU time (utime+stime), not wall time"
# Every user agent is started first and runs side by side with the others (idle, they cost
# nothing measurable); each one's held phase comes in turn, and then the batches alternate
# between them (batch 1 of each, batch 2 of each, ...): on a shared machine whose speed drifts
# over minutes, the figures of one batch round are taken under the same conditions.
labels=(); uas_pid=(); uas_port=(); uas_lim=(); uas_events=()
for bin in "${bins[@]}"; do
    [ "$bin" != none ] || continue
    port=$(free_port)
    many=(--max-concurrent 100000)
    lim=$limit
    if ! "$bin" listen --help 2>/dev/null | grep -q -- --max-concurrent; then
        many=(); lim=1
    fi
    events="$work/events-${#labels[@]}-$(basename "$bin").jsonl"
    : >"$events"
    "$bin" listen --bind "127.0.0.1:$port" --answer auto --mic "$mic" --speaker null \
        --events "$events" "${many[@]}" >"$work/wakeline-${#labels[@]}.log" 2>&1 &
    pid=$!; pids+=("$pid")
    wait_tcp "$port" "$pid"
    labels+=("wakeline:$(basename "$(dirname "$bin")")/$(basename "$bin")")
    uas_pid+=("$pid"); uas_port+=("$port"); uas_lim+=("$lim"); uas_events+=("$events")
done

if [ $baresip -eq 1 ]; then
    home="$work/baresip"; mkdir -p "$home"
    port=$(free_port)
    cat >"$home/config" <<CFG
poll_method		epoll
sip_listen		127.0.0.1:$port
sip_trans_def		tcp
net_interface		127.0.0.1
audio_source		$ausrc
audio_player		aubridge,nil
audio_alert		aubridge,nil
call_max_calls		1000
module_path		/usr/lib/baresip/modules
module			opus.so
module			g711.so
module			ausine.so
module			aufile.so
module			aubridge.so
module_app		account.so
module_app		menu.so
opus_bitrate		32000
CFG
    echo "<sip:load@127.0.0.1>;regint=0;answermode=auto;audio_codecs=opus/48000/2,pcmu" \
        >"$home/accounts"
    baresip -f "$home" </dev/null >"$work/baresip.log" 2>&1 &
    pid=$!; pids+=("$pid")
    wait_tcp "$port" "$pid"
    labels+=("baresip")
    uas_pid+=("$pid"); uas_port+=("$port"); uas_lim+=("$limit"); uas_events+=("")
fi

n=${#labels[@]}
for i in $(seq 0 $((n - 1))); do
    measure_held "${labels[$i]}" "${uas_pid[$i]}" "${uas_port[$i]}" "${uas_lim[$i]}" \
        "${uas_events[$i]}" >>"$work/out-$i"
done
round=0
ratios=""
for b in $batches; do
    round=$((round + 1))
    cpus=()
    for i in $(seq 0 $((n - 1))); do
        measure_batch "${labels[$i]}" "${uas_pid[$i]}" "${uas_port[$i]}" "${uas_lim[$i]}" "$b" \
            "${uas_events[$i]}" >>"$work/out-$i"
        cpus+=("$last_cpu")
    done
    # CPU per call against baresip's in the same round.
    if [ $baresip -eq 1 ] && [ "$n" -gt 1 ]; then
        base=${cpus[$((n - 1))]}
        line="round $round ($b):"
        for i in $(seq 0 $((n - 2))); do
            line="$line ${labels[$i]} $(printf '%.2f' "${cpus[$i]}")/$(printf '%.2f' "$base") ms ="
            line="$line $(echo "scale=3; ${cpus[$i]} / $base" | bc -l | sed 's/^\./0./')x;"
        done
        ratios="$ratios$line"$'\n'
    fi
done
for i in $(seq 0 $((n - 1))); do
    cat "$work/out-$i"
done
[ -z "$ratios" ] || printf 'cpu/call against baresip, batch round by batch round:\n%s' "$ratios"

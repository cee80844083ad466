#!/usr/bin/env bash
# How far a build's call set-up is from the floor on this machine: CPU per short call of
# `wakeline listen --answer auto --mic tone:440 --speaker null --events FILE` against
# setup_floor.c (a minimal C user agent doing the same kernel work per call: the same TCP
# messages, two UDP sockets handed to a media thread and back, an RTCP BYE; no SIP stack, no
# codec, no log), the two alternated ROUNDS times under the same sipp load as compare.sh's
# set-up batches (scripts/compare/uac_hold.xml over TCP, 0 ms hold). CPU time is perf stat's
# task-clock of the whole process (all threads), over the batch only (after 5 warm-up calls).
#
# Usage: scripts/compare/setup_floor.sh [--wakeline BIN] [--calls N] [--rate R] [--rounds K]
#        (needs cc, sipp and perf)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin="$here/../../target/release/wakeline"
calls=600
rate=50
rounds=4
while [ $# -gt 0 ]; do
    case "$1" in
        --wakeline) bin="$2"; shift 2 ;;
        --calls) calls="$2"; shift 2 ;;
        --rate) rate="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "setup_floor.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
for t in cc sipp perf python3; do
    command -v "$t" >/dev/null || { echo "setup_floor.sh: $t is not installed" >&2; exit 2; }
done
work=$(mktemp -d /tmp/wl-floor.XXXXXX)
pid=
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cc -O2 -pthread -o "$work/setup_floor" "$here/setup_floor.c"

# free_port
. "$here/common.sh"

place() { # port calls
    (cd "$work" && sipp -sf "$here/uac_hold.xml" -t t1 -i 127.0.0.1 -nostdin -p "$(free_port)" \
        -mp "$(free_media_port)" -rtp_echo -m "$2" -r "$rate" -l 200 -d 0 -timeout 120s \
        -timeout_error "127.0.0.1:$1" >"$work/sipp.out" 2>&1) ||
        { echo "setup_floor.sh: sipp failed" >&2; tail -5 "$work/sipp.out" >&2; exit 1; }
}

measure() { # name command... -> prints ms of CPU per call
    local name=$1 port
    shift
    port=$(free_port)
    # The command is a function that execs the user agent: $! is its pid.
    "$@" "$port" >"$work/$name.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 250); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.02
    done
    place "$port" 5
    perf stat -x, -e task-clock -p "$pid" -o "$work/perf" &
    local st=$!
    sleep 0.3
    place "$port" "$calls"
    sleep 0.5
    kill -INT "$st"; wait "$st" || true
    kill "$pid"; wait "$pid" 2>/dev/null || true
    pid=
    awk -F, -v c="$calls" '/task-clock/ {printf "%.3f", $1 / c}' "$work/perf"
}

wakeline() { exec "$bin" listen --bind "127.0.0.1:$1" --answer auto --mic tone:440 --speaker null \
    --events "$work/events.jsonl" --max-concurrent 100000; }
floor() { exec "$work/setup_floor" "$1"; }

echo "# $(date -u '+%F %T') UTC, $(nproc) cores; $calls calls at $rate/s per batch; ms of CPU per call"
for r in $(seq 1 "$rounds"); do
    w=$(measure wakeline wakeline)
    f=$(measure floor floor)
    echo "round $r: wakeline $w  floor $f  ratio $(echo "scale=2; $w / $f" | bc -l)"
done

#!/usr/bin/env bash
# User-space instructions per short call, counted by valgrind (callgrind): the same figure on
# every run, where CPU time on a shared virtual machine moves by ±20 % from one batch to the
# next. Use it to compare builds of the set-up path; the CPU figures of scripts/compare.sh
# remain the ones the goals are judged by (they include the kernel, which this does not).
#
# `wakeline listen --answer auto --mic tone:440 --speaker null --events FILE` runs under
# callgrind; one warm-up call, then the counters are zeroed and sipp places CALLS calls over
# TCP (scripts/compare/uac_hold.xml, 0 ms hold, 5 calls/s: valgrind is ~50x slower) and
# echoes their RTP. Prints the instructions of the whole process (every thread) per call,
# and the ten functions with the most (inclusive) instructions.
#
# Usage: scripts/compare/instructions.sh BIN [CALLS]    (needs valgrind and sip-tester)
set -euo pipefail

bin=$(realpath "$1")
calls=${2:-100}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/wl-instr.XXXXXX)
pid=
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
# free_port
. "$here/common.sh"
port=$(free_port)
sipp_port=$(free_port)
media_port=$(free_media_port)

valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$bin" listen \
    --bind "127.0.0.1:$port" --answer auto --mic tone:440 --speaker null \
    --events "$work/events.jsonl" --max-concurrent 100000 >"$work/listen.log" 2>&1 &
pid=$!
for _ in $(seq 1 120); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.5
done

place() { # calls
    (cd "$work" && sipp -sf "$here/uac_hold.xml" -t t1 -i 127.0.0.1 -nostdin -p "$sipp_port" \
        -mp "$media_port" \
        -rtp_echo -m "$1" -r 5 -l 200 -d 0 -timeout 300s "127.0.0.1:$port" >"$work/sipp.out" 2>&1)
}
place 1
callgrind_control -z "$pid" >/dev/null 2>&1
place "$calls" || { echo "instructions.sh: sipp failed" >&2; tail -5 "$work/sipp.out" >&2; exit 1; }
sleep 2 # the last media reports
callgrind_control -d "$pid" >/dev/null 2>&1
sleep 1
dump=$(ls -t "$work"/cg.out.* | head -1)
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",", "", $1); print $1}')
echo "$(basename "$bin"): $total instructions over $calls calls: $((total / calls)) per call"
callgrind_annotate --inclusive=yes "$dump" 2>/dev/null | grep -E '^ *[0-9,]+ .*wakeline::' |
    grep -v 'wakeline::main \[' | head -10

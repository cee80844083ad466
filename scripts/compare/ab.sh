#!/usr/bin/env bash
# Two builds of wakeline side by side, at the same time: CPU per short call of build B against
# build A, for changes too small for scripts/compare.sh to see. On this shared virtual machine
# the speed of one batch differs from the next by ±20 %, so two builds measured one after the
# other are compared under different conditions; measured at once, each with its own sipp, they
# share them. The first slot runs 3-7 % faster than the second here: each round swaps the slots,
# and the mean of the ratios cancels that (two copies of one build: rounds within 4 %, and a
# mean of 0.988 over two). Trust a difference that every round shows.
#
# Each round starts `wakeline listen --answer auto --mic tone:440 --speaker null --events FILE`
# from both builds, places one warm-up call on each, then CALLS short calls on each at RATE
# calls/s (scripts/compare/uac_hold.xml over TCP, 0 ms hold, RTP echoed by sipp), both sipps at
# once, and takes each process's CPU time over its calls: `perf stat` task-clock where perf
# is installed, else utime + stime from /proc (10 ms ticks: keep CALLS × CPU per call well
# above a second).
#
# Usage: scripts/compare/ab.sh BIN_A BIN_B [CALLS] [RATE] [ROUNDS]   (defaults 1500, 50, 4)
# Prints each round's CPU per call of both, B/A per round, and the mean of B/A.
set -euo pipefail

a=$(realpath "$1")
b=$(realpath "$2")
calls=${3:-1500}
rate=${4:-50}
rounds=${5:-4}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/wl-ab.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
command -v sipp >/dev/null || { echo "ab.sh: needs sipp (sip-tester)" >&2; exit 2; }
perf=0
if command -v perf >/dev/null && perf stat -e task-clock true >/dev/null 2>&1; then perf=1; fi

# free_port, wait_tcp
. "$here/common.sh"
cpu_ms() { # pid: utime + stime in ms
    awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f", ($14 + $15) * 1000 / hz}' "/proc/$1/stat"
}
place() { # slot calls
    sipp -sf "$here/uac_hold.xml" -t t1 -i 127.0.0.1 -nostdin -p "${sipp_port[$1]}" \
        -mp "${media_port[$1]}" -rtp_echo -m "$2" -r "$rate" -l 200 -d 0 -timeout 300s \
        "127.0.0.1:${uas_port[$1]}" >"$work/sipp-$1.out" 2>&1 \
        || { echo "ab.sh: sipp failed against slot $1:" >&2; tail -5 "$work/sipp-$1.out" >&2; return 1; }
}

ratios=()
for round in $(seq 1 "$rounds"); do
    # Odd rounds: A in slot 0; even rounds: B in slot 0.
    if [ $((round % 2)) -eq 1 ]; then order=("$a" "$b"); names=(A B); else order=("$b" "$a"); names=(B A); fi
    uas_pid=(); uas_port=(); sipp_port=(); media_port=()
    for slot in 0 1; do
        uas_port[$slot]=$(free_port); sipp_port[$slot]=$(free_port); media_port[$slot]=$(free_media_port)
        "${order[$slot]}" listen --bind "127.0.0.1:${uas_port[$slot]}" --answer auto \
            --mic tone:440 --speaker null --events "$work/events-$slot.jsonl" \
            --max-concurrent 100000 >"$work/listen-$slot.log" 2>&1 &
        uas_pid[$slot]=$!; pids+=("$!")
        wait_tcp "${uas_port[$slot]}" "${uas_pid[$slot]}"
        place "$slot" 1
    done
    stat_pid=(); before=()
    for slot in 0 1; do
        if [ $perf -eq 1 ]; then
            perf stat -x, -e task-clock -p "${uas_pid[$slot]}" -o "$work/stat-$slot.txt" &
            stat_pid[$slot]=$!
        else
            before[$slot]=$(cpu_ms "${uas_pid[$slot]}")
        fi
    done
    sleep 0.3
    place 0 "$calls" & s0=$!
    place 1 "$calls" & s1=$!
    wait "$s0" "$s1"
    sleep 0.5
    cpu=()
    for slot in 0 1; do
        if [ $perf -eq 1 ]; then
            kill -INT "${stat_pid[$slot]}"; wait "${stat_pid[$slot]}" || true
            ms=$(awk -F, '/task-clock/ {print $1}' "$work/stat-$slot.txt")
        else
            ms=$(echo "$(cpu_ms "${uas_pid[$slot]}") - ${before[$slot]}" | bc -l)
        fi
        cpu[$slot]=$(echo "scale=4; $ms / $calls" | bc -l)
        kill "${uas_pid[$slot]}"; wait "${uas_pid[$slot]}" 2>/dev/null || true
    done
    if [ "${names[0]}" = A ]; then ca=${cpu[0]}; cb=${cpu[1]}; else ca=${cpu[1]}; cb=${cpu[0]}; fi
    r=$(echo "scale=4; $cb / $ca" | bc -l)
    ratios+=("$r")
    printf 'round %d (slot 0: %s): A %.3f ms/call, B %.3f ms/call, B/A %.3f\n' \
        "$round" "${names[0]}" "$ca" "$cb" "$r"
done
mean=$(printf '%s\n' "${ratios[@]}" | awk '{s += $1} END {printf "%.3f", s / NR}')
echo "B/A over $rounds rounds: mean $mean (A: $a; B: $b; $calls calls at $rate/s per round)"

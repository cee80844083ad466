#!/usr/bin/env bash
# Idle wake-ups and keep-alive CPU (issue 12 §3): `wakeline register` over TCP to a local
# Kamailio (tests/interop/kamailio.cfg), registered and idle for --seconds; prints how often the
# process woke (context switches of all its threads from /proc/PID/task/*/status, per thread
# name), its CPU time (utime+stime), and, with --strace, the epoll_wait/futex returns that
# `strace -f -c` counted over the same window. Only the keep-alive (CRLF ping every 30 s by
# default) and the registration refresh may wake an idle user agent.
#
# Usage: scripts/idle_wakeups.sh [--wakeline BIN] [--seconds S] [--keepalive S] [--strace] [--floor]
#   --wakeline BIN  the binary (default target/release/wakeline)
#   --seconds S     the idle window (default 120)
#   --keepalive S   CRLF keep-alive interval in seconds (default: wakeline's, 30 s); a short one
#                   (e.g. 0.05) measures the CPU per ping: CPU delta / pings
#   --strace        then count syscalls with strace -f -c over a second window as long
#   --floor         then the same round by a minimal C event loop (scripts/keepalive_floor.c,
#                   built with cc): the CPU per ping this machine's kernel alone costs
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin="$here/../target/release/wakeline"
secs=120
keepalive=""
use_strace=0
floor=0
while [ $# -gt 0 ]; do
    case "$1" in
        --wakeline) bin="$2"; shift 2 ;;
        --seconds) secs="$2"; shift 2 ;;
        --keepalive) keepalive="$2"; shift 2 ;;
        --strace) use_strace=1; shift ;;
        --floor) floor=1; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "idle_wakeups.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
for t in kamailio python3; do
    command -v "$t" >/dev/null || { echo "idle_wakeups.sh: $t is not installed" >&2; exit 2; }
done
[ -x "$bin" ] || { echo "idle_wakeups.sh: no binary $bin" >&2; exit 2; }
[ $use_strace -eq 0 ] || command -v strace >/dev/null || { echo "idle_wakeups.sh: no strace" >&2; exit 2; }

work=$(mktemp -d /tmp/wl-idle.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
hz=$(getconf CLK_TCK)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Bytes the user agent sent to Kamailio's port: once registered, only 4-byte CRLFCRLF pings.
sent_bytes() {
    ss -tinH state established "( dport = :$1 )" | grep -o 'bytes_sent:[0-9]*' | cut -d: -f2 |
        awk '{n += $1} END {print n + 0}'
}
# Per thread: "name switches" (voluntary + involuntary).
switches() {
    for t in /proc/"$1"/task/*; do
        printf '%s %s\n' "$(tr ' ' '_' < "$t/comm")" \
            "$(awk '/ctxt_switches/ {n += $2} END {print n}' "$t/status")"
    done 2>/dev/null | awk '{n[$1] += $2} END {for (k in n) print k, n[k]}' | sort
}

port=$(free_port)
kamailio -f "$here/../tests/interop/kamailio.cfg" -E -DD -m 32 -M 4 \
    -l "tcp:127.0.0.1:$port" -l "udp:127.0.0.1:$port" \
    -P "$work/kamailio.pid" -Y "$work" -w "$work" >"$work/kamailio.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 250); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.02
done

config=()
if [ -n "$keepalive" ]; then
    printf '[transport]\nkeepalive_interval_s = %s\n' "$keepalive" >"$work/config.toml"
    config=(--config "$work/config.toml")
fi
events="$work/events.jsonl"
WAKELINE_PASSWORD=secret "$bin" register "${config[@]}" --registrar "sip:127.0.0.1:$port;transport=tcp" \
    --user alice --domain 127.0.0.1 --events "$events" >"$work/wakeline.log" 2>&1 &
pid=$!
pids+=($pid)
for _ in $(seq 1 500); do
    grep -q '"registered"' "$events" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/wakeline.log" >&2; exit 1; }
    sleep 0.02
done
grep -q '"registered"' "$events" || { echo "idle_wakeups.sh: not registered" >&2; exit 1; }
sleep 2 # let the registration's own traffic settle

before=$(switches "$pid")
cpu0=$(cpu_ticks "$pid")
b0=$(sent_bytes "$port")
sleep "$secs"
after=$(switches "$pid")
cpu1=$(cpu_ticks "$pid")
b1=$(sent_bytes "$port")
if [ $use_strace -eq 1 ]; then
    # A second window of the same length: ptrace stops are context switches themselves.
    strace -f -c -p "$pid" -o "$work/strace.txt" 2>/dev/null &
    spid=$!
    sleep "$secs"
    kill -TERM "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
fi
pings=$(( (b1 - b0) / 4 ))

total=$(join -a2 <(echo "$before") <(echo "$after") | awk 'NF==3 {n += $3 - $2} NF==2 {n += $2} END {print n}')
echo "wakeline idle and registered (TCP to Kamailio, keep-alive ${keepalive:-default 30} s) for ${secs} s:"
names=$(cat /proc/"$pid"/task/*/comm 2>/dev/null | sort | uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}')
echo "  threads                     : $(ls /proc/"$pid"/task | wc -l) ($names)"
echo "  context switches (wake-ups) : $total"
join -a2 <(echo "$before") <(echo "$after") | awk 'NF==3 && $3 > $2 {printf "    %-24s %d\n", $1, $3 - $2} NF==2 && $2 > 0 {printf "    %-24s %d (new)\n", $1, $2}'
cpu_ms=$(( (cpu1 - cpu0) * 1000 / hz ))
echo "  CPU (utime+stime)           : ${cpu_ms} ms"
echo "  keep-alive pings sent       : $pings ($((b1 - b0)) bytes to the registrar)"
if [ "$pings" -gt 0 ]; then
    echo "  CPU per keep-alive ping     : $(python3 -c "print(f'{($cpu1 - $cpu0) * 1e6 / $hz / $pings:.1f}')") us (${hz} Hz ticks)"
    echo "  wake-ups per ping           : $(python3 -c "print(f'{$total / $pings:.2f}')")"
fi
if [ $use_strace -eq 1 ] && [ -s "$work/strace.txt" ]; then
    echo "  strace -f -c over a second window of ${secs} s (calls):"
    awk '$NF ~ /^(epoll_wait|epoll_pwait|futex|timerfd_settime|read|recvfrom|write|sendto|writev|sched_yield|clock_nanosleep|nanosleep)$/ {
            calls = ($4 ~ /^[0-9]+$/) ? $4 : $5; printf "    %-20s %s\n", $NF, calls; n++ }
         END { if (!n) print "    (no epoll_wait, futex, read or write returned)" }' "$work/strace.txt"
fi
if [ $floor -eq 1 ]; then
    if cc -O2 -o "$work/floor" "$here/keepalive_floor.c"; then
        echo "  floor (scripts/keepalive_floor.c, same registrar):"
        echo "    $("$work/floor" "$port" 1000)"
    else
        echo "  floor: cc failed" >&2
    fi
fi

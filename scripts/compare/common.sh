# Helpers shared by scripts/compare.sh and the scripts in scripts/compare/ (sourced, not run).

# A port on 127.0.0.1 free for TCP and for UDP now: `listen` binds SIP over UDP on its TCP
# port too.
free_port() {
    python3 -c '
import socket
for _ in range(100):
    t = socket.socket()
    t.bind(("127.0.0.1", 0))
    port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        continue
    print(port)
    break
'
}

# A base port for sipp's RTP echo (-mp): it binds UDP ports from there up to base + 3. Taken
# below the kernel's ephemeral range, where the user agent under test binds its own RTP ports,
# so that one of its calls cannot take sipp's port between this check and sipp's bind (then
# sipp exited at once and a whole batch counted as failed).
free_media_port() {
    python3 -c '
import random, socket
lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(200):
    base = random.randrange(10000, lo - 4, 4)
    socks = []
    try:
        for p in range(base, base + 4):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(s)
            s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
    print(base)
    break
'
}

# Waits up to 5 s for a listener on 127.0.0.1:PORT; fails when process PID has exited first.
wait_tcp() { # port pid
    local me
    me=$(basename "$0")
    for _ in $(seq 1 250); do
        kill -0 "$2" 2>/dev/null || { echo "$me: the user agent exited" >&2; return 1; }
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.02
    done
    echo "$me: nothing listens on $1" >&2
    return 1
}

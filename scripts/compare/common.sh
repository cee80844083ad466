# Helpers shared by scripts/compare.sh and the scripts in scripts/compare/ (sourced, not run).

# A TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
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

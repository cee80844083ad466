// The floor of one CRLF keep-alive round on this machine (scripts/idle_wakeups.sh --floor):
// a minimal event loop over TCP to the registrar that sleeps 20 ms on a timerfd, sends
// "\r\n\r\n" and waits for the pong with epoll, N times; prints its CPU time per ping.
// Usage: keepalive_floor PORT N
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <sys/resource.h>
#include <netinet/tcp.h>
int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s PORT N\n", argv[0]); return 2; }
    int port = atoi(argv[1]), n = atoi(argv[2]);
    if (n <= 0) { fprintf(stderr, "N must be > 0\n"); return 2; }
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0}; a.sin_family = AF_INET; a.sin_port = htons(port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(s, (void*)&a, sizeof a)) { perror("connect"); return 1; }
    int one = 1; setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int ep = epoll_create1(0), tf = timerfd_create(CLOCK_MONOTONIC, 0);
    if (ep < 0 || tf < 0) { perror("epoll/timerfd"); return 1; }
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = s}; epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    ev.data.fd = tf; epoll_ctl(ep, EPOLL_CTL_ADD, tf, &ev);
    struct rusage r0, r1; getrusage(RUSAGE_SELF, &r0);
    char buf[64]; int pongs = 0;
    for (int i = 0; i < n; i++) {
        struct itimerspec t = {{0,0},{0,20000000}}; timerfd_settime(tf, 0, &t, NULL);
        for (;;) { struct epoll_event e; epoll_wait(ep, &e, 1, -1); if (e.data.fd == tf) { unsigned long long x; read(tf, &x, 8); break; } else read(s, buf, sizeof buf); }
        send(s, "\r\n\r\n", 4, 0);
        for (;;) {
            struct epoll_event e;
            if (epoll_wait(ep, &e, 1, 1000) != 1) { fprintf(stderr, "no pong within 1 s\n"); return 1; }
            if (e.data.fd == s) { if (read(s, buf, sizeof buf) > 0) pongs++; break; }
        }
    }
    getrusage(RUSAGE_SELF, &r1);
    double us = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) * 1e6
              + (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec - r0.ru_stime.tv_usec);
    printf("floor: %d pings, %d pongs, CPU per ping %.1f us (user+sys, getrusage)\n", n, pongs, us / n);
    return 0;
}

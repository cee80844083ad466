// The floor of one short call's set-up on this machine (scripts/compare/setup_floor.sh): a
// minimal answering user agent in C doing the kernel work `wakeline listen --answer auto` does
// per call, and nothing else. Over one TCP connection from sipp (scripts/compare/uac_hold.xml):
// an INVITE gets 100 Trying, two UDP sockets (RTP on an even port, RTCP above it, DSCP EF),
// a hand-over of both to a media thread (eventfd), and 200 OK with SDP; a BYE gets a stop to
// the media thread (which sends an RTCP BYE, deregisters and closes both sockets and tells the
// main thread, eventfd) and 200 OK. No SIP stack (the headers sipp matches on are copied), no
// codec, no timers, no log, no events: what is left of a user agent's cost when its own code
// costs nothing.
// Usage: setup_floor PORT
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXCALLS 4096
struct call { char id[128]; int rtp, rtcp, peer_rtcp, used; };
static struct call calls[MAXCALLS];

// Hand-overs to the media thread and back: a queue under a mutex, an eventfd each way.
struct job { int start, rtp, rtcp, peer_rtcp; };
static struct job jobs[MAXCALLS];
static int njobs;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int media_ev, main_ev;

static void *media(void *arg) {
    (void)arg;
    int ep = epoll_create1(0);
    struct epoll_event e = {.events = EPOLLIN, .data.fd = media_ev};
    epoll_ctl(ep, EPOLL_CTL_ADD, media_ev, &e);
    for (;;) {
        struct epoll_event got[64];
        int n = epoll_wait(ep, got, 64, -1);
        for (int i = 0; i < n; i++) {
            if (got[i].data.fd != media_ev) {
                char b[2048];
                while (recv(got[i].data.fd, b, sizeof b, MSG_DONTWAIT) > 0) {}
                continue;
            }
            uint64_t v;
            if (read(media_ev, &v, sizeof v) < 0) continue;
            pthread_mutex_lock(&mu);
            struct job mine[MAXCALLS];
            int m = njobs;
            memcpy(mine, jobs, sizeof(struct job) * (size_t)m);
            njobs = 0;
            pthread_mutex_unlock(&mu);
            int stopped = 0;
            for (int j = 0; j < m; j++) {
                struct epoll_event s = {.events = EPOLLIN | EPOLLET};
                if (mine[j].start) {
                    s.data.fd = mine[j].rtp; epoll_ctl(ep, EPOLL_CTL_ADD, mine[j].rtp, &s);
                    s.data.fd = mine[j].rtcp; epoll_ctl(ep, EPOLL_CTL_ADD, mine[j].rtcp, &s);
                } else {
                    unsigned char bye[48] = {0x81, 203, 0, 1};
                    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(mine[j].peer_rtcp)};
                    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
                    sendto(mine[j].rtcp, bye, 8, MSG_NOSIGNAL, (void *)&to, sizeof to);
                    epoll_ctl(ep, EPOLL_CTL_DEL, mine[j].rtp, NULL);
                    epoll_ctl(ep, EPOLL_CTL_DEL, mine[j].rtcp, NULL);
                    close(mine[j].rtp); close(mine[j].rtcp);
                    stopped++;
                }
            }
            if (stopped) { uint64_t one = 1; if (write(main_ev, &one, sizeof one) < 0) perror("write"); }
        }
    }
    return NULL;
}

static void hand_over(struct job j) {
    pthread_mutex_lock(&mu);
    if (njobs < MAXCALLS) jobs[njobs++] = j;
    pthread_mutex_unlock(&mu);
    uint64_t one = 1;
    if (write(media_ev, &one, sizeof one) < 0) perror("write");
}

static int udp(int port) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int tos = 0xb8; setsockopt(s, IPPROTO_IP, IP_TOS, &tos, sizeof tos);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(s, (void *)&a, sizeof a)) { close(s); return -1; }
    return s;
}

// Copies the header line found by `name` (e.g. "\nVia:", from the newline before it) from
// `msg` into `out`, without that newline and with its CRLF; empty when it is not there.
static int header(const char *msg, const char *name, char *out, size_t cap) {
    out[0] = 0;
    const char *p = strstr(msg, name);
    const char *e = p ? strstr(p, "\r\n") : NULL;
    if (!e || (size_t)(e - p) + 1 >= cap) return 0;
    size_t n = (size_t)(e - p) + 1;  // from after the newline, through the CRLF
    memcpy(out, p + 1, n); out[n] = 0;
    return (int)n;
}

static void respond(int fd, const char *msg, const char *status, const char *extra, const char *body) {
    char via[512], from[512], to[512], cid[256], cseq[128], out[4096];
    header(msg, "\nVia:", via, sizeof via); header(msg, "\nFrom:", from, sizeof from);
    header(msg, "\nTo:", to, sizeof to); header(msg, "\nCall-ID:", cid, sizeof cid);
    header(msg, "\nCSeq:", cseq, sizeof cseq);
    char tagged[600];
    // To with our tag (the header ends in CRLF: put the tag before it).
    size_t tl = strlen(to);
    if (tl >= 2 && !strstr(to, "tag=")) { to[tl - 2] = 0; snprintf(tagged, sizeof tagged, "%s;tag=floor\r\n", to); }
    else snprintf(tagged, sizeof tagged, "%s", to);
    int n = snprintf(out, sizeof out, "SIP/2.0 %s\r\n%s%s%s%s%s%sContent-Length: %zu\r\n\r\n%s", status,
                     via, from, tagged, cid, cseq, extra, strlen(body), body);
    if (send(fd, out, (size_t)n, MSG_NOSIGNAL) < 0) perror("send");
}

static void handle(int fd, const char *msg) {
    char cid[256] = {0};
    header(msg, "\nCall-ID:", cid, sizeof cid);
    if (!strncmp(msg, "INVITE ", 7)) {
        respond(fd, msg, "100 Trying", "", "");
        int rtp = -1, rtcp = -1;
        for (int tries = 0; tries < 32 && rtcp < 0; tries++) {
            rtp = udp(0);
            struct sockaddr_in a; socklen_t al = sizeof a;
            getsockname(rtp, (void *)&a, &al);
            int port = ntohs(a.sin_port);
            if (port % 2) { close(rtp); continue; }
            rtcp = udp(port + 1);
            if (rtcp < 0) close(rtp);
        }
        if (rtcp < 0) { respond(fd, msg, "503 Service Unavailable", "", ""); return; }
        const char *m = strstr(msg, "\nm=audio ");
        int peer = m ? atoi(m + 9) : 6000;
        struct sockaddr_in a; socklen_t al = sizeof a;
        getsockname(rtp, (void *)&a, &al);
        for (int i = 0; i < MAXCALLS; i++)
            if (!calls[i].used) {
                calls[i] = (struct call){.rtp = rtp, .rtcp = rtcp, .peer_rtcp = peer + 1, .used = 1};
                snprintf(calls[i].id, sizeof calls[i].id, "%s", cid);
                break;
            }
        hand_over((struct job){.start = 1, .rtp = rtp, .rtcp = rtcp});
        char sdp[512];
        snprintf(sdp, sizeof sdp,
                 "v=0\r\no=floor 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                 "m=audio %d RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\na=ptime:20\r\na=sendrecv\r\n",
                 ntohs(a.sin_port));
        respond(fd, msg, "200 OK",
                "Contact: <sip:floor@127.0.0.1;transport=tcp>\r\nContent-Type: application/sdp\r\n", sdp);
    } else if (!strncmp(msg, "BYE ", 4)) {
        for (int i = 0; i < MAXCALLS; i++)
            if (calls[i].used && !strcmp(calls[i].id, cid)) {
                hand_over((struct job){.start = 0, .rtp = calls[i].rtp, .rtcp = calls[i].rtcp,
                                       .peer_rtcp = calls[i].peer_rtcp});
                calls[i].used = 0;
                break;
            }
        respond(fd, msg, "200 OK", "", "");
    }
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s PORT\n", argv[0]); return 2; }
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(l, (void *)&a, sizeof a) || listen(l, 16)) { perror("listen"); return 1; }
    media_ev = eventfd(0, EFD_NONBLOCK); main_ev = eventfd(0, EFD_NONBLOCK);
    pthread_t t; pthread_create(&t, NULL, media, NULL);
    int ep = epoll_create1(0);
    struct epoll_event e = {.events = EPOLLIN, .data.fd = l};
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &e);
    e.data.fd = main_ev; epoll_ctl(ep, EPOLL_CTL_ADD, main_ev, &e);
    static char buf[1 << 16];
    size_t have = 0;
    for (;;) {
        struct epoll_event got[16];
        int n = epoll_wait(ep, got, 16, -1);
        for (int i = 0; i < n; i++) {
            int fd = got[i].data.fd;
            if (fd == l) {
                int c = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (c < 0) continue;
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
            } else if (fd == main_ev) {
                uint64_t v;
                if (read(main_ev, &v, sizeof v) < 0) continue;  // a media report
            } else {
                ssize_t r = recv(fd, buf + have, sizeof buf - have - 1, 0);
                if (r <= 0) { epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL); close(fd); have = 0; continue; }
                have += (size_t)r; buf[have] = 0;
                // Whole messages: headers, then Content-Length bytes of body.
                for (;;) {
                    char *end = strstr(buf, "\r\n\r\n");
                    if (!end) break;
                    char *cl = strstr(buf, "\nContent-Length:");
                    size_t body = (cl && cl < end) ? (size_t)atoi(cl + 16) : 0;
                    size_t len = (size_t)(end + 4 - buf) + body;
                    if (len > have) break;
                    char save = buf[len]; buf[len] = 0;
                    handle(fd, buf);
                    buf[len] = save;
                    memmove(buf, buf + len, have - len); have -= len; buf[have] = 0;
                }
            }
        }
    }
}

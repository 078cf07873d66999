/*
 * Goridge RPC load generator for benchmarks/run.py (built there with `cc -O2`).
 *
 *   loadgen HOST PORT CONNECTIONS DEPTH SECONDS FRAMES_FILE
 *
 * FRAMES_FILE holds request frames back to back (20-byte Goridge v3 RPC header + method +
 * body). Each of CONNECTIONS connections keeps DEPTH requests in flight (pipelining): every
 * answer read is replaced by the next frame of the file, round robin over all connections, so
 * distinct frames (distinct keys) are spread over all of them. Each request is stamped with a
 * per-connection sequence number (the header's first option, outside the CRC). One thread,
 * epoll, non-blocking sockets; all answers read in one read() are answered by one write().
 *
 * After SECONDS no new request is sent; the run ends when every request in flight is answered
 * (or 30 s later). Printed on stdout, one line:
 *
 *   calls=N errors=E seconds=S
 *
 * S is the time from the first request to the last answer; N counts every answer, E those with
 * the ERROR flag (0x40); the first error's text goes to stderr. Exit 1 on a socket error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEADER 20
#define FLAG_ERROR 0x40

typedef struct {
    char *data;
    size_t len, cap, off;
} buf_t;

typedef struct {
    int fd;
    long inflight;
    uint32_t seq;
    buf_t in, out;
    int want_out;
} conn_t;

static char *frames_data;
static size_t *frame_off, *frame_len;
static size_t nframes, next_frame;
static int epfd;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void reserve(buf_t *b, size_t more) {
    if (b->len + more <= b->cap) return;
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->len + more) cap *= 2;
    b->data = realloc(b->data, cap);
    if (!b->data) die("realloc");
    b->cap = cap;
}

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void queue_request(conn_t *c) {
    size_t i = next_frame++ % nframes;
    reserve(&c->out, frame_len[i]);
    unsigned char *dst = (unsigned char *)c->out.data + c->out.len;
    memcpy(dst, frames_data + frame_off[i], frame_len[i]);
    uint32_t seq = ++c->seq;
    dst[12] = seq & 0xff;
    dst[13] = (seq >> 8) & 0xff;
    dst[14] = (seq >> 16) & 0xff;
    dst[15] = (seq >> 24) & 0xff;
    c->out.len += frame_len[i];
    c->inflight++;
}

static void set_out_interest(conn_t *c, int want) {
    if (c->want_out == want) return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
    c->want_out = want;
}

static void flush(conn_t *c) {
    while (c->out.off < c->out.len) {
        ssize_t n = write(c->fd, c->out.data + c->out.off, c->out.len - c->out.off);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            die("write");
        }
        c->out.off += (size_t)n;
    }
    if (c->out.off == c->out.len) c->out.off = c->out.len = 0;
    set_out_interest(c, c->out.len > 0);
}

static int load_frames(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    frames_data = malloc(size > 0 ? (size_t)size : 1);
    if (size > 0 && fread(frames_data, 1, (size_t)size, f) != (size_t)size) die("fread");
    fclose(f);
    size_t cap = 1024;
    frame_off = malloc(cap * sizeof(size_t));
    frame_len = malloc(cap * sizeof(size_t));
    size_t pos = 0;
    while (pos + HEADER <= (size_t)size) {
        const unsigned char *h = (const unsigned char *)frames_data + pos;
        size_t len = (size_t)(h[0] & 0x0f) * 4 + le32(h + 2);
        if (pos + len > (size_t)size) break;
        if (nframes == cap) {
            cap *= 2;
            frame_off = realloc(frame_off, cap * sizeof(size_t));
            frame_len = realloc(frame_len, cap * sizeof(size_t));
        }
        frame_off[nframes] = pos;
        frame_len[nframes] = len;
        nframes++;
        pos += len;
    }
    return nframes > 0 && pos == (size_t)size;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s HOST PORT CONNECTIONS DEPTH SECONDS FRAMES_FILE\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]), nconns = atoi(argv[3]);
    long depth = atol(argv[4]);
    double seconds = atof(argv[5]);
    if (nconns < 1 || depth < 1 || seconds <= 0) {
        fprintf(stderr, "loadgen: bad arguments\n");
        return 2;
    }
    if (!load_frames(argv[6])) {
        fprintf(stderr, "loadgen: %s holds no whole frames\n", argv[6]);
        return 2;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "loadgen: bad IPv4 address %s\n", host);
        return 2;
    }
    epfd = epoll_create1(0);
    if (epfd < 0) die("epoll_create1");
    conn_t *conns = calloc((size_t)nconns, sizeof(conn_t));
    for (int i = 0; i < nconns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) die("socket");
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0) die("fcntl");
        conns[i].fd = fd;
        conns[i].want_out = -1;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[i]};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
        conns[i].want_out = 0;
    }
    unsigned long long calls = 0, errors = 0;
    long inflight = 0;
    double start = now(), stop_at = start + seconds, last = start;
    for (int i = 0; i < nconns; i++) {
        for (long d = 0; d < depth; d++) queue_request(&conns[i]);
        inflight += depth;
        flush(&conns[i]);
    }
    struct epoll_event events[256];
    int sending = 1;
    while (inflight > 0) {
        double t = now();
        if (sending && t >= stop_at) sending = 0;
        if (!sending && t >= stop_at + 30) {
            fprintf(stderr, "loadgen: %ld calls unanswered 30 s after the end\n", inflight);
            break;
        }
        int n = epoll_wait(epfd, events, 256, 20);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int e = 0; e < n; e++) {
            conn_t *c = events[e].data.ptr;
            if (events[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                reserve(&c->in, 262144);
                ssize_t got = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);
                if (got < 0 && (errno == EAGAIN || errno == EINTR)) got = -2;
                if (got == 0 || got == -1) {
                    fprintf(stderr, "loadgen: connection closed by the server (%ld in flight)\n",
                            c->inflight);
                    return 1;
                }
                if (got > 0) {
                    c->in.len += (size_t)got;
                    size_t pos = 0;
                    int answered = 0;
                    while (c->in.len - pos >= HEADER) {
                        const unsigned char *h = (const unsigned char *)c->in.data + pos;
                        size_t len = (size_t)(h[0] & 0x0f) * 4 + le32(h + 2);
                        if (c->in.len - pos < len) {
                            reserve(&c->in, len);
                            break;
                        }
                        if (h[1] & FLAG_ERROR) {
                            if (errors == 0) {
                                size_t mlen = le32(h + 16), hl = (size_t)(h[0] & 0x0f) * 4;
                                int show = (int)(len - hl - mlen);
                                if (show > 300) show = 300;
                                fprintf(stderr, "loadgen: first error: %.*s\n", show,
                                        (const char *)h + hl + mlen);
                            }
                            errors++;
                        }
                        calls++;
                        answered++;
                        pos += len;
                    }
                    if (pos) {
                        memmove(c->in.data, c->in.data + pos, c->in.len - pos);
                        c->in.len -= pos;
                    }
                    if (answered) {
                        last = now();
                        c->inflight -= answered;
                        inflight -= answered;
                        if (sending) {
                            for (int k = 0; k < answered; k++) queue_request(c);
                            inflight += answered;
                        }
                    }
                }
            }
            if (c->out.len > c->out.off) flush(c);
        }
    }
    printf("calls=%llu errors=%llu seconds=%.6f\n", calls, errors, last - start);
    for (int i = 0; i < nconns; i++) close(conns[i].fd);
    return 0;
}

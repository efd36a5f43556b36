/* wsclient.c - see wsclient.h. Shared by tests/bench/wsbench.c and
 * tests/faults/soak.c: one copy of the client so a fix reaches both.
 * Ownership: the programs own their connections; this file owns only the
 * buffers inside struct wsc (freed by wsc_free) and wsc_env's rng state. */
#define _GNU_SOURCE
#include "wsclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF_INIT 16384
#define READ_ROUNDS 8 /* reads per readiness before yielding */

/* RFC 6455 section 1.3 example: a fixed key with a known accept value
 * (WSC_ACCEPT in wsclient.h). */
#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="

struct wsc_env wsc_env = {.prog = "wsclient", .ep = -1, .max_frame = 1u << 20, .rng = 1};

/* ---- helpers --------------------------------------------------------------- */

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", wsc_env.prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q)
        die("out of memory (%zu bytes)", n);
    return q;
}

uint32_t rnd32(void)
{
    wsc_env.rng ^= wsc_env.rng << 13;
    wsc_env.rng ^= wsc_env.rng >> 7;
    wsc_env.rng ^= wsc_env.rng << 17;
    return (uint32_t)wsc_env.rng;
}

double num_arg(const char *name, const char *v, double lo, double hi)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || d < lo || d > hi)
        die("bad value for --%s: '%s' (want %g..%g)", name, v, lo, hi);
    return d;
}

void raise_nofile(int need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)need > rl.rlim_cur)
        die("need %d file descriptors, RLIMIT_NOFILE allows %llu", need,
            (unsigned long long)rl.rlim_cur);
}

int proc_cpu(pid_t pid, uint64_t *ut, uint64_t *st)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* comm may hold spaces */
    if (!p)
        return -1;
    p++;
    /* after ')': field 3 (state) ... field 14 utime, 15 stime */
    unsigned long long u = 0, s = 0;
    int field = 2;
    char *save = NULL;
    for (char *tok = strtok_r(p, " ", &save); tok && field < 15;
         tok = strtok_r(NULL, " ", &save)) {
        field++;
        if (field == 14)
            u = strtoull(tok, NULL, 10);
        else if (field == 15)
            s = strtoull(tok, NULL, 10);
    }
    if (field < 15)
        return -1;
    *ut = u;
    *st = s;
    return 0;
}

long proc_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    for (int i = 0; i < 100 && fgets(line, sizeof line, f); i++)
        if (!strncmp(line, "VmRSS:", 6)) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* ---- JSON scanning ------------------------------------------------------------ */

const char *find(const char *p, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    const char *r = memmem(p, n, needle, k);
    return r ? r + k : NULL;
}

int parse_num(const char *p, const char *end, int64_t *out)
{
    const char *q = p;
    int neg = 0;
    if (q < end && *q == '-')
        neg = 1, q++;
    int64_t v = 0;
    const char *d = q;
    while (q < end && *q >= '0' && *q <= '9' && q - d < 19)
        v = v * 10 + (*q++ - '0');
    if (q == d)
        return -1;
    if (q < end && (*q == '.' || *q == 'e' || *q == 'E')) {
        /* a printer may write big integers as doubles */
        char tmp[64];
        size_t len = 0;
        while (p + len < end && len < sizeof tmp - 1 &&
               strchr("0123456789+-.eE", p[len]))
            len++;
        memcpy(tmp, p, len);
        tmp[len] = '\0';
        *out = (int64_t)strtod(tmp, NULL);
        return 0;
    }
    *out = neg ? -v : v;
    return 0;
}

int op_is(const char *p, size_t n, const char *op)
{
    char want[48];
    int k = snprintf(want, sizeof want, "\"op\":\"%s\"", op);
    return memmem(p, n, want, (size_t)k) != NULL;
}

/* ---- writing -------------------------------------------------------------------- */

static void set_out(struct wsc *c, int out)
{
    if (c->fd < 0 || c->out_armed == out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(wsc_env.ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->out_armed = (unsigned char)out;
}

void wsc_flush(struct wsc *c)
{
    for (int i = 0; i < 64 && c->woff < c->wlen; i++) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n > 0) {
            c->woff += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        wsc_env.on.lost(c, "write failed");
        return;
    }
    if (c->woff == c->wlen)
        c->woff = c->wlen = 0;
    set_out(c, c->woff < c->wlen);
}

static char *wreserve(struct wsc *c, size_t n)
{
    if (c->woff && c->woff == c->wlen)
        c->woff = c->wlen = 0;
    if (c->wlen + n > c->wcap) {
        if (c->woff) { /* compact first */
            memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
            c->wlen -= c->woff;
            c->woff = 0;
        }
        if (c->wlen + n > c->wcap) {
            size_t cap = c->wcap ? c->wcap : 4096;
            while (cap < c->wlen + n)
                cap *= 2;
            c->wbuf = xrealloc(c->wbuf, cap);
            c->wcap = cap;
        }
    }
    return c->wbuf + c->wlen;
}

void wsc_queue_frame(struct wsc *c, int opcode, const void *payload, size_t len)
{
    char *p = wreserve(c, len + 14);
    size_t h = 0;
    p[h++] = (char)(0x80 | opcode);
    if (len < 126) {
        p[h++] = (char)(0x80 | len);
    } else if (len <= 0xffff) {
        p[h++] = (char)(0x80 | 126);
        p[h++] = (char)(len >> 8);
        p[h++] = (char)len;
    } else {
        p[h++] = (char)(0x80 | 127);
        for (int i = 7; i >= 0; i--)
            p[h++] = (char)((uint64_t)len >> (8 * i));
    }
    uint32_t key = rnd32();
    unsigned char mask[4];
    memcpy(mask, &key, 4);
    memcpy(p + h, mask, 4);
    h += 4;
    const unsigned char *in = payload;
    unsigned char *out = (unsigned char *)p + h;
    for (size_t i = 0; i < len; i++)
        out[i] = in[i] ^ mask[i & 3];
    c->wlen += h + len;
}

void wsc_queue_text(struct wsc *c, const char *s, size_t len)
{
    wsc_queue_frame(c, 0x1, s, len);
}

/* ---- connecting ------------------------------------------------------------------ */

int wsc_init(size_t max_frame, struct wsc_hooks on)
{
    wsc_env.ep = epoll_create1(EPOLL_CLOEXEC);
    if (wsc_env.ep < 0)
        die("epoll_create1: %s", strerror(errno));
    wsc_env.max_frame = max_frame;
    wsc_env.rng = now_ns() | 1;
    wsc_env.on = on;
    return wsc_env.ep;
}

int wsc_connect(struct wsc *c, int port, const char *target)
{
    c->gen++;
    c->port = port;
    c->target = target;
    c->rlen = c->woff = c->wlen = c->flen = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        fprintf(stderr, "%s: socket: %s\n", wsc_env.prog, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (wsc_env.src_addr) {
        /* the port is picked at connect(), unique per 4-tuple, not per address */
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(wsc_env.src_addr)};
        if (bind(c->fd, (struct sockaddr *)&src, sizeof src) < 0) {
            fprintf(stderr, "%s: bind %s: %s\n", wsc_env.prog, inet_ntoa(src.sin_addr),
                    strerror(errno));
            close(c->fd);
            c->fd = -1;
            return -1;
        }
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        fprintf(stderr, "%s: connect 127.0.0.1:%d: %s\n", wsc_env.prog, port, strerror(errno));
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(wsc_env.ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    c->out_armed = 1;
    c->connecting = 1;
    c->handshaking = 0;
    return 0;
}

void wsc_close(struct wsc *c)
{
    if (c->fd < 0)
        return;
    epoll_ctl(wsc_env.ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->connecting = c->handshaking = 0;
    c->rlen = c->woff = c->wlen = c->flen = 0;
}

void wsc_free(struct wsc *c)
{
    free(c->rbuf);
    free(c->wbuf);
    free(c->frag);
    c->rbuf = c->wbuf = c->frag = NULL;
    c->rcap = c->wcap = c->fcap = 0;
}

static void send_handshake(struct wsc *c)
{
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\n"
                     "Host: 127.0.0.1:%d\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: " WS_KEY "\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "\r\n",
                     c->target, c->port);
    memcpy(wreserve(c, (size_t)n), req, (size_t)n);
    c->wlen += (size_t)n;
    c->handshaking = 1;
    wsc_flush(c);
}

/* ---- reading ---------------------------------------------------------------------- */

/* Hooks may close the connection or replace it by a new one: after calling
 * one, go on only while this still holds. */
static int same(const struct wsc *c, unsigned gen)
{
    return c->fd >= 0 && c->gen == gen;
}

/* Handles a server frame; returns -1 when the connection is gone. */
static int on_frame(struct wsc *c, int fin, int opcode, const char *p, size_t n)
{
    unsigned gen = c->gen;
    switch (opcode) {
    case 0x9: /* ping */
        wsc_queue_frame(c, 0xA, p, n);
        wsc_flush(c);
        return same(c, gen) ? 0 : -1;
    case 0xA:
        return 0;
    case 0x8: {
        int code = n >= 2 ? ((unsigned char)p[0] << 8 | (unsigned char)p[1]) : 1005;
        wsc_env.on.closed(c, code, n > 2 ? p + 2 : "", n > 2 ? n - 2 : 0);
        return -1;
    }
    case 0x1:
    case 0x0:
        break;
    default:
        wsc_env.on.bad(c, "got a non-text frame", 0);
        return same(c, gen) ? 0 : -1;
    }
    if (fin && opcode == 0x1 && c->flen == 0) {
        wsc_env.on.text(c, p, n);
        return same(c, gen) ? 0 : -1;
    }
    if (opcode == 0x1 && c->flen) {
        wsc_env.on.bad(c, "new message inside a fragmented one", 0);
        if (!same(c, gen))
            return -1;
        c->flen = 0;
    } else if (opcode == 0x0 && !c->flen) {
        wsc_env.on.bad(c, "continuation without a first fragment", 0);
        if (!same(c, gen))
            return -1;
    }
    if (c->flen + n > wsc_env.max_frame) {
        wsc_env.on.bad(c, "fragmented message too large", 1);
        return -1;
    }
    if (c->flen + n > c->fcap) {
        size_t cap = c->fcap ? c->fcap : 4096;
        while (cap < c->flen + n)
            cap *= 2;
        c->frag = xrealloc(c->frag, cap);
        c->fcap = cap;
    }
    memcpy(c->frag + c->flen, p, n);
    c->flen += n;
    if (fin) {
        size_t len = c->flen;
        c->flen = 0;
        wsc_env.on.text(c, c->frag, len);
    }
    return same(c, gen) ? 0 : -1;
}

/* Parses every complete frame in rbuf; keeps a partial one. -1: gone. */
static int parse_frames(struct wsc *c)
{
    size_t pos = 0;
    while (c->rlen - pos >= 2) {
        const unsigned char *b = (unsigned char *)c->rbuf + pos;
        size_t avail = c->rlen - pos;
        int fin = b[0] & 0x80, opcode = b[0] & 0x0f;
        if (b[0] & 0x70 || b[1] & 0x80) {
            wsc_env.on.bad(c, "bad frame header (RSV bits or masked server frame)", 1);
            return -1;
        }
        uint64_t len = b[1] & 0x7f;
        size_t h = 2;
        if (len == 126) {
            if (avail < 4)
                break;
            len = (uint64_t)b[2] << 8 | b[3];
            h = 4;
        } else if (len == 127) {
            if (avail < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | b[2 + i];
            h = 10;
        }
        if (len > wsc_env.max_frame) {
            wsc_env.on.bad(c, "server frame too large", 1);
            return -1;
        }
        if (avail < h + len) {
            if (h + len > c->rcap) { /* make room for the whole frame */
                c->rcap = h + len + RBUF_INIT;
                if (pos) {
                    memmove(c->rbuf, c->rbuf + pos, avail);
                    c->rlen = avail;
                    pos = 0;
                }
                c->rbuf = xrealloc(c->rbuf, c->rcap);
            }
            break;
        }
        if (on_frame(c, fin, opcode, (char *)b + h, (size_t)len) < 0)
            return -1;
        pos += h + (size_t)len;
    }
    if (pos) {
        memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
        c->rlen -= pos;
    }
    return 0;
}

/* The HTTP 101 reply; leaves any frame bytes behind it in rbuf. -1: gone. */
static int parse_handshake(struct wsc *c)
{
    char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
    if (!end) {
        if (c->rlen > 8192) {
            wsc_env.on.fatal(c, "handshake reply too long", NULL, 0);
            return -1;
        }
        return 0;
    }
    size_t hlen = (size_t)(end - c->rbuf) + 4;
    int ok = c->rlen > 12 && !memcmp(c->rbuf, "HTTP/1.1 101", 12);
    const char *acc = NULL;
    for (const char *p = c->rbuf; ok && p < end; p++) {
        if ((p == c->rbuf || p[-1] == '\n') &&
            !strncasecmp(p, "Sec-WebSocket-Accept:", 21)) {
            acc = p + 21;
            while (*acc == ' ')
                acc++;
            break;
        }
    }
    if (!ok || !acc || strncmp(acc, WSC_ACCEPT, strlen(WSC_ACCEPT))) {
        wsc_env.on.fatal(c, "handshake refused", c->rbuf, hlen);
        return -1;
    }
    memmove(c->rbuf, c->rbuf + hlen, c->rlen - hlen);
    c->rlen -= hlen;
    c->handshaking = 0;
    unsigned gen = c->gen;
    wsc_env.on.opened(c);
    return same(c, gen) ? parse_frames(c) : -1;
}

static void on_readable(struct wsc *c)
{
    unsigned gen = c->gen;
    for (int round = 0; round < READ_ROUNDS && same(c, gen); round++) {
        if (c->rcap - c->rlen < 4096) {
            c->rcap = c->rcap ? c->rcap * 2 : RBUF_INIT;
            c->rbuf = xrealloc(c->rbuf, c->rcap);
        }
        size_t room = c->rcap - c->rlen;
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, room, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            wsc_env.on.lost(c, n == 0 ? "connection closed by the gateway"
                                      : "connection reset");
            return;
        }
        c->rlen += (size_t)n;
        if ((c->handshaking ? parse_handshake(c) : parse_frames(c)) < 0)
            return;
        if ((size_t)n < room) /* the socket is drained, most likely */
            return;
    }
}

void wsc_event(struct wsc *c, uint32_t ev)
{
    if (c->fd < 0)
        return;
    if (c->connecting) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            fprintf(stderr, "%s: connect 127.0.0.1:%d: %s\n", wsc_env.prog, c->port,
                    strerror(err));
            wsc_env.on.fatal(c, NULL, NULL, 0);
            return;
        }
        c->connecting = 0;
        send_handshake(c);
        return;
    }
    unsigned gen = c->gen;
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(c);
    if (same(c, gen) && (ev & EPOLLOUT))
        wsc_flush(c);
}

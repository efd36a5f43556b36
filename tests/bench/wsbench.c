/* wsbench.c - load generator for wsgate (protocol v1).
 *
 * One thread, one epoll loop, raw non-blocking sockets: a minimal RFC 6455
 * client (handshake, masked client text frames, parser for the server's
 * unmasked frames with 7/16/64-bit lengths, partial reads, fragments,
 * ping -> pong, close), in wsclient.c, shared with tests/faults/soak.c.
 *
 * Phases:
 *   1. setup: N subscribers connect (spread round-robin over the --port
 *      list), each waits for "welcome", subscribes with id 1 and waits for
 *      the ack. A bounded number of handshakes run at once.
 *   2. publish: one publisher connection (on the first port) sends M
 *      messages {"op":"publish","channel":C,"data":{"seq":i,"t":<ns>,
 *      "pad":"x..."},"id":i} at --rate per second (0: as fast as a window
 *      of unacknowledged publishes allows). Every subscriber checks the
 *      order of seq and records now - t for every delivery.
 *   3. stop when every subscriber has seen seq M-1 (or was closed) or the
 *      timeout passes; report.
 *
 * --proto runs the same phases against other servers for side-by-side
 * figures (tests/bench/run.sh --scenario sidebyside), with the same data
 * JSON so latency comes from the same timestamp:
 *   nchan     subscribers open /sub/<channel> (ready once upgraded), the
 *             publisher opens /pub/<channel> and sends the data JSON as one
 *             text frame per message; deliveries are that JSON.
 *   socketio  Engine.IO 4 over a websocket (/socket.io/?EIO=4&transport=
 *             websocket): open packet, "40" connect, "2" ping -> "3" pong;
 *             subscribers emit "subscribe" with an ack, the publisher emits
 *             ["publish",channel,data]; deliveries are ["message",data]
 *             (tests/bench/sio-server/server.js).
 *   wsgate-sio  wsgate's own Socket.IO dialect at /socket.io/: no rooms,
 *             every Socket.IO client gets every event (--socketio-channel),
 *             so subscribers are ready at "40"; the publisher emits
 *             ["message",data] and ignores its own echo.
 * None of these acknowledges a publish, so there a publish counts as acked
 * when sent and --rate must be above 0.
 *
 * --procs K spreads the subscribers over K load-generator processes (this
 * one and K-1 forked children), each under its own descriptor limit; with
 * --source-addr A, process k connects from address A+k (127.0.0.x), each
 * address with its own ephemeral ports. The children report readiness,
 * progress, counts and latency samples through shared memory; this process
 * publishes, samples the gateways and prints one RESULT for all of them.
 *
 * --floor measures what no server can beat on this machine instead. First
 * the CPU one send() of 1, 4 and 16 ready frames of --size bytes costs over
 * --subs loopback sockets. Then, twice, the latency floor: 1 and then 2
 * forked trivial senders stand in for the gateway (and its workers): each
 * answers its subscribers' upgrades with the welcome and the subscribe ack,
 * then --messages times at --rate writes one ready frame of --size bytes,
 * {"op":"message",...,"data":<the data JSON below>}, to each of its sockets,
 * one plain send() per socket. The subscribers, the latency samples and the
 * report are those of a normal run, with the senders' CPU in the place of
 * the gateway's.
 *
 * Gateway CPU (utime+stime from /proc/PID/stat) is sampled just before the
 * first publish and when the last delivery arrived; VmRSS before connecting,
 * after every subscriber is acked, and at the end.
 *
 * The bench itself runs on the same machine: on a small box it competes
 * with the gateway for CPU, which caps deliveries/s and adds latency. Its own
 * CPU time is printed so the share is visible.
 *
 * Every loop is bounded by a count or a deadline; the program stops by
 * itself. Exit 0 when every expected delivery arrived in order, else 1
 * (also when the setup failed); 2 for bad usage. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "wsclient.h"

#define MAX_PORTS 16
#define MAX_PIDS 16
#define MAX_FRAME (64u << 20)     /* refuse larger server frames */
#define PUB_BURST 4096            /* publishes per loop turn at most */
#define MAX_EVENTS 512
#define LAT_CAP_DEFAULT (32u << 20) /* latency samples kept (256 MiB) */
#define DIAG_MAX 5                /* unexpected frames printed */
#define MAX_PROCS 64

enum state { S_CONNECTING, S_WELCOME, S_SUBSCRIBING, S_READY, S_CLOSED };
enum proto { P_WSGATE, P_NCHAN, P_SIO, P_WSIO };

struct conn {
    struct wsc ws; /* first: the socket, its buffers and frame parser */
    unsigned char state;
    unsigned char is_pub;
    unsigned char done;      /* subscriber saw the last seq */
    unsigned char finished;  /* done or closed: counted in subs_finished */
    int64_t next_seq;
    uint64_t got;
};

static struct {
    int ports[MAX_PORTS];
    int nports;
    int subs;
    const char *channel;
    int64_t messages;
    double rate;
    size_t size;
    int batch;
    double timeout;
    double setup_timeout;
    double idle;
    int window;
    int parallel;
    pid_t gw_pids[MAX_PIDS];
    int ngw;
    pid_t aux_pids[MAX_PIDS];
    int naux;
    int verbose;
    int procs;
    uint32_t src_addr; /* host order; 0: the kernel's choice */
    int floor;
    int senders; /* >0: the latency floor's trivial senders are the gateway */
    enum proto proto;
    char sub_target[300], pub_target[300]; /* upgrade request targets */
} opt = {
    .subs = 1000,
    .channel = "bench",
    .messages = 2000,
    .rate = 1000,
    .size = 200,
    .timeout = 60,
    .setup_timeout = 60,
    .window = 256,
    .parallel = 128,
    .procs = 1,
};

/* One load-generator process's figures, in memory shared with the parent
 * (which reads them while the children run, hence the atomics). */
struct shard {
    int ready;    /* 1: every subscriber acked; -1: setup failed */
    int finished; /* subscribers done or closed */
    int exited;   /* the figures below are final */
    int subs_ready, subs_done, subs_complete;
    uint64_t deliveries, gaps, out_of_order, unexpected, closed_early, proto_errors;
    uint64_t t_last_delivery;
    size_t nlat; /* samples at the start of its slice of the latency array */
};
static struct {
    int stop; /* set by the parent: close and report */
    struct shard sh[MAX_PROCS];
    uint64_t go; /* latency floor: the senders' t0, set by the parent */
    struct {
        uint64_t frames, shorts; /* written by sender k */
    } sender[MAX_PIDS];
} *shm;

static struct {
    int ep;
    int proc;  /* 0: the parent, which publishes; 1..procs-1: children */
    int nsubs, first; /* this process's subscribers: global indexes first.. */
    struct conn *subs;
    struct conn pub;
    int subs_started, subs_ready, subs_closed, subs_done, subs_finished;
    int inflight; /* subscriber handshakes under way */
    uint64_t deliveries, expected;
    uint64_t gaps, out_of_order, unexpected, closed_early, proto_errors;
    uint64_t pub_errors;
    int64_t sent, acked;
    uint64_t *lat;
    size_t nlat, latcap;
    uint64_t lat_stride, lat_tick;
    uint64_t t_first_pub, t_last_delivery;
    int diag;
    int fatal; /* setup failure */
    char pub_closed[200]; /* why the publisher connection ended early */
} g;

/* Prints the first few oddities so a failure explains itself. */
static void diag(const struct conn *c, const char *what, const char *p, size_t n)
{
    if (g.diag++ >= DIAG_MAX)
        return;
    fprintf(stderr, "wsbench: %s %s: %s%.*s%s\n",
            c->is_pub ? "publisher" : "subscriber", what, n ? "'" : "",
            (int)(n > 200 ? 200 : n), p ? p : "", n > 200 ? "...'" : (n ? "'" : ""));
}

/* ---- /proc sampling ------------------------------------------------- */

struct cpu_sample {
    uint64_t ut[MAX_PIDS], st[MAX_PIDS];
    uint64_t aut[MAX_PIDS], ast[MAX_PIDS];
    uint64_t host_busy; /* ticks of every CPU not idle, from /proc/stat */
    struct rusage self;
    uint64_t kids; /* utime+stime ticks of the child load generators */
};
static pid_t kids[MAX_PROCS]; /* the children, by process index; 0: reaped */

/* Busy ticks of the whole machine: user nice system idle iowait irq softirq
 * steal; busy = all but idle and iowait. */
static uint64_t host_busy_ticks(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 4)
        return 0;
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
}

static void sample_cpu(struct cpu_sample *s)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < opt.ngw; i++)
        if (proc_cpu(opt.gw_pids[i], &s->ut[i], &s->st[i]) < 0)
            fprintf(stderr, "wsbench: cannot read /proc/%d/stat\n", (int)opt.gw_pids[i]);
    for (int i = 0; i < opt.naux; i++)
        proc_cpu(opt.aux_pids[i], &s->aut[i], &s->ast[i]);
    getrusage(RUSAGE_SELF, &s->self);
    for (int k = 1; k < opt.procs; k++) {
        uint64_t u, t;
        if (kids[k] && proc_cpu(kids[k], &u, &t) == 0)
            s->kids += u + t;
    }
    s->host_busy = host_busy_ticks();
}

static void sample_rss(long *kb)
{
    for (int i = 0; i < opt.ngw; i++)
        kb[i] = proc_rss_kb(opt.gw_pids[i]);
}

/* Memory of every TCP socket on the machine (both ends of each loopback
 * connection: kernel buffers, which no process's RSS shows), from
 * /proc/net/sockstat; -1 if unreadable. */
static long tcp_mem_kb(void)
{
    FILE *f = fopen("/proc/net/sockstat", "r");
    if (!f)
        return -1;
    char line[256];
    long pages = -1;
    while (pages < 0 && fgets(line, sizeof line, f)) {
        const char *m = strstr(line, " mem ");
        if (!strncmp(line, "TCP:", 4) && m)
            pages = strtol(m + 5, NULL, 10);
    }
    fclose(f);
    return pages < 0 ? -1 : pages * (sysconf(_SC_PAGESIZE) / 1024);
}

static long sum_kb(const long *kb)
{
    long s = 0;
    for (int i = 0; i < opt.ngw; i++)
        s += kb[i] > 0 ? kb[i] : 0;
    return s;
}

/* ---- connections (the socket layer is wsclient.c) ---------------------- */

static void finish(struct conn *c)
{
    if (!c->is_pub && !c->finished) {
        c->finished = 1;
        g.subs_finished++;
        __atomic_store_n(&shm->sh[g.proc].finished, g.subs_finished, __ATOMIC_RELAXED);
    }
}

static void conn_close(struct conn *c, const char *why)
{
    if (c->ws.fd < 0)
        return;
    if (c->is_pub && why && !g.pub_closed[0])
        snprintf(g.pub_closed, sizeof g.pub_closed, "%s", why);
    if (why && c->state != S_CLOSED) {
        if (!c->is_pub && !c->done)
            g.closed_early++;
        if (c->is_pub || !c->done)
            diag(c, why, NULL, 0);
    }
    if (!c->is_pub) {
        if (c->state < S_READY)
            g.inflight--;
        g.subs_closed++;
        finish(c);
    }
    wsc_close(&c->ws);
    c->state = S_CLOSED;
}

static int start_connect(struct conn *c, int port)
{
    c->state = S_CONNECTING;
    return wsc_connect(&c->ws, port, c->is_pub ? opt.pub_target : opt.sub_target);
}

/* ---- protocol ---------------------------------------------------------- */

static int id_is(const char *p, size_t n, int64_t id)
{
    const char *v = find(p, n, "\"id\":");
    int64_t got;
    return v && parse_num(v, p + n, &got) == 0 && got == id;
}

static void send_subscribe(struct conn *c)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf, "{\"op\":\"subscribe\",\"channel\":\"%s\",\"id\":1}",
                     opt.channel);
    wsc_queue_text(&c->ws, buf, (size_t)n);
    wsc_flush(&c->ws);
}

static void send_text(struct conn *c, const char *s)
{
    wsc_queue_text(&c->ws, s, strlen(s));
    wsc_flush(&c->ws);
}

static void sub_ready(struct conn *c)
{
    c->state = S_READY;
    g.subs_ready++;
    g.inflight--;
    __atomic_store_n(&shm->sh[g.proc].subs_ready, g.subs_ready, __ATOMIC_RELAXED);
}

static void on_delivery(struct conn *c, const char *p, size_t n)
{
    uint64_t now = now_ns();
    const char *data = opt.proto == P_WSGATE ? find(p, n, "\"data\":") : p;
    const char *end = p + n;
    const char *sv = data ? find(data, (size_t)(end - data), "\"seq\":") : NULL;
    const char *tv = data ? find(data, (size_t)(end - data), "\"t\":") : NULL;
    int64_t seq, t;
    if (!sv || !tv || parse_num(sv, end, &seq) < 0 || parse_num(tv, end, &t) < 0) {
        g.unexpected++;
        diag(c, "got a message without seq/t", p, n);
        return;
    }
    c->got++;
    g.deliveries++;
    if (seq == c->next_seq) {
        c->next_seq++;
    } else if (seq > c->next_seq) {
        g.gaps += (uint64_t)(seq - c->next_seq);
        c->next_seq = seq + 1;
    } else {
        g.out_of_order++;
    }
    if (g.lat_tick++ % g.lat_stride == 0 && g.nlat < g.latcap)
        g.lat[g.nlat++] = now > (uint64_t)t ? now - (uint64_t)t : 0;
    if (!c->done && c->next_seq >= opt.messages) {
        c->done = 1;
        g.subs_done++;
        finish(c);
        g.t_last_delivery = now;
    }
}

/* One JSON object from the server. */
static void on_object(struct conn *c, const char *p, size_t n)
{
    if (c->is_pub) {
        if (c->state == S_WELCOME) {
            if (op_is(p, n, "welcome"))
                c->state = S_READY;
            else
                diag(c, "expected welcome, got", p, n), g.fatal = 1;
        } else if (op_is(p, n, "ack")) {
            g.acked++;
        } else {
            g.pub_errors++;
            diag(c, "got", p, n);
        }
        return;
    }
    switch (c->state) {
    case S_WELCOME:
        if (!op_is(p, n, "welcome")) {
            diag(c, "expected welcome, got", p, n);
            g.fatal = 1;
            return;
        }
        c->state = S_SUBSCRIBING;
        send_subscribe(c);
        return;
    case S_SUBSCRIBING:
        if (!op_is(p, n, "ack") || !id_is(p, n, 1)) {
            diag(c, "expected the subscribe ack, got", p, n);
            g.fatal = 1;
            return;
        }
        sub_ready(c);
        return;
    case S_READY:
        if (n > 15 && !memcmp(p, "{\"op\":\"message\"", 15)) {
            on_delivery(c, p, n);
            return;
        }
        if (op_is(p, n, "message")) {
            on_delivery(c, p, n);
            return;
        }
        /* fallthrough */
    default:
        g.unexpected++;
        diag(c, "got an unexpected frame", p, n);
    }
}

/* One Engine.IO packet (socketio): type digit, then Socket.IO's. */
static void on_sio(struct conn *c, const char *p, size_t n)
{
    if (n == 1 && p[0] == '2') {
        send_text(c, "3");
    } else if (c->state == S_WELCOME && n > 1 && p[0] == '0') {
        send_text(c, "40");
    } else if (c->state == S_WELCOME && n >= 2 && !memcmp(p, "40", 2)) {
        if (c->is_pub) {
            c->state = S_READY;
            return;
        }
        if (opt.proto == P_WSIO) { /* every client has every event already */
            sub_ready(c);
            return;
        }
        char buf[300];
        snprintf(buf, sizeof buf, "421[\"subscribe\",\"%s\"]", opt.channel);
        send_text(c, buf);
        c->state = S_SUBSCRIBING;
    } else if (c->state == S_SUBSCRIBING && n >= 3 && !memcmp(p, "431", 3)) {
        sub_ready(c);
    } else if (c->state == S_READY && !c->is_pub && n > 12 && !memcmp(p, "42[\"message\",", 12)) {
        on_delivery(c, p, n);
    } else if (c->is_pub && c->state == S_READY && n > 12 && !memcmp(p, "42[\"message\",", 12)) {
        /* wsgate-sio: its own event, as every client gets it */
    } else if (c->is_pub && n > 10 && !memcmp(p, "42[\"error\",", 10)) {
        g.pub_errors++;
        diag(c, "got", p, n);
    } else {
        g.unexpected++;
        diag(c, "got an unexpected packet", p, n);
    }
}

static void on_text(struct conn *c, const char *p, size_t n)
{
    if (opt.proto == P_SIO || opt.proto == P_WSIO) {
        on_sio(c, p, n);
        return;
    }
    if (opt.proto == P_NCHAN) { /* the publisher's replies are not counted */
        if (!c->is_pub && c->state == S_READY)
            on_delivery(c, p, n);
        return;
    }
    if (!opt.batch || c->is_pub) {
        on_object(c, p, n);
        return;
    }
    const char *end = p + n;
    for (size_t guard = 0; p < end && guard < n + 1; guard++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        if (e > p)
            on_object(c, p, (size_t)(e - p));
        p = nl ? nl + 1 : end;
    }
}

/* ---- what the client layer reports (wsclient.h hooks) ------------------- */

/* struct wsc is the first member of struct conn. */
#define CONN(w) ((struct conn *)(w))

static void h_opened(struct wsc *w)
{
    struct conn *c = CONN(w);
    if (opt.proto != P_NCHAN)
        c->state = S_WELCOME; /* the server speaks first */
    else if (c->is_pub)
        c->state = S_READY;
    else
        sub_ready(c);
}

static void h_text(struct wsc *w, const char *p, size_t n)
{
    on_text(CONN(w), p, n);
}

static void h_closed(struct wsc *w, int code, const char *reason, size_t rlen)
{
    struct conn *c = CONN(w);
    char why[160];
    snprintf(why, sizeof why, "closed by the gateway with %d '%.*s'", code,
             (int)(rlen > 100 ? 100 : rlen), reason);
    if (!c->is_pub && !c->done)
        g.closed_early++;
    if (c->is_pub && !g.pub_closed[0])
        snprintf(g.pub_closed, sizeof g.pub_closed, "%s", why);
    if (c->is_pub || !c->done)
        diag(c, why, NULL, 0);
    conn_close(c, NULL); /* counted above */
}

static void h_lost(struct wsc *w, const char *why)
{
    conn_close(CONN(w), why);
}

static void h_bad(struct wsc *w, const char *why, int must_close)
{
    g.proto_errors++;
    if (must_close)
        conn_close(CONN(w), why);
    else
        diag(CONN(w), why, NULL, 0);
}

static void h_fatal(struct wsc *w, const char *why, const char *p, size_t n)
{
    if (why)
        diag(CONN(w), why, p, n);
    conn_close(CONN(w), NULL);
    g.fatal = 1;
}

/* ---- publisher --------------------------------------------------------- */

/* pre, the data JSON every message carries, {"seq":i,"t":<now, ns>,
 * "pad":"x..."} of size bytes (longer when size is too small), then post,
 * in a buffer kept for the next call; sets *len and *t. */
static const char *compose(const char *pre, int64_t i, size_t size, const char *post,
                           size_t *len, uint64_t *t)
{
    static char *scratch;
    static size_t scap;
    char head[64];
    *t = now_ns();
    int n = snprintf(head, sizeof head, "{\"seq\":%" PRId64 ",\"t\":%" PRIu64 ",\"pad\":\"", i,
                     *t);
    size_t padlen = size > (size_t)n + 2 ? size - (size_t)n - 2 : 0;
    size_t a = strlen(pre), b = strlen(post);
    *len = a + (size_t)n + padlen + 2 + b;
    if (*len > scap) {
        scap = *len + 1024;
        scratch = xrealloc(scratch, scap);
    }
    char *p = scratch;
    memcpy(p, pre, a), p += a;
    memcpy(p, head, (size_t)n), p += n;
    memset(p, 'x', padlen), p += padlen;
    memcpy(p, "\"}", 2), p += 2;
    memcpy(p, post, b);
    return scratch;
}

static void publish_one(struct conn *c, int64_t i)
{
    char pre[300] = "", post[64] = "";
    if (opt.proto == P_WSGATE) {
        snprintf(pre, sizeof pre, "{\"op\":\"publish\",\"channel\":\"%s\",\"data\":", opt.channel);
        snprintf(post, sizeof post, ",\"id\":%" PRId64 "}", i);
    } else if (opt.proto == P_SIO) {
        snprintf(pre, sizeof pre, "42[\"publish\",\"%s\",", opt.channel);
        snprintf(post, sizeof post, "]");
    } else if (opt.proto == P_WSIO) {
        snprintf(pre, sizeof pre, "42[\"message\",");
        snprintf(post, sizeof post, "]");
    }
    size_t len;
    uint64_t t;
    const char *text = compose(pre, i, opt.size, post, &len, &t);
    wsc_queue_text(&c->ws, text, len);
    if (g.sent == 0)
        g.t_first_pub = t;
    g.sent++;
    if (opt.proto != P_WSGATE)
        g.acked++; /* no publish acks in these protocols */
}

/* Sends what is due; returns ns until the next send is due (or -1). */
static int64_t publisher_turn(uint64_t t0)
{
    struct conn *c = &g.pub;
    if (c->ws.fd < 0 || g.sent >= opt.messages)
        return -1;
    int burst = 0;
    int64_t wait = -1;
    if (opt.rate > 0) {
        double interval = 1e9 / opt.rate;
        uint64_t now = now_ns();
        while (g.sent < opt.messages && burst < PUB_BURST) {
            uint64_t due = t0 + (uint64_t)(interval * (double)g.sent);
            if (due > now) {
                wait = (int64_t)(due - now);
                break;
            }
            publish_one(c, g.sent);
            burst++;
        }
        if (burst == PUB_BURST)
            wait = 0;
    } else {
        while (g.sent < opt.messages && g.sent - g.acked < opt.window && burst < PUB_BURST) {
            publish_one(c, g.sent);
            burst++;
        }
    }
    if (burst)
        wsc_flush(&c->ws);
    return wait;
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: wsbench --port P [--port P2 ...] [options]\n"
            "  --port, --url-port P  gateway port on 127.0.0.1 (repeat: subscribers\n"
            "                        round-robin, publisher on the first)\n"
            "  --subs N              subscriber connections (default 1000)\n"
            "  --channel C           channel (default bench)\n"
            "  --messages M          messages to publish (default 2000)\n"
            "  --rate R              publishes per second, 0 = window-limited (default 1000)\n"
            "  --window W            unacked publishes in flight when --rate 0 (default 256)\n"
            "  --size B              bytes of each message's data JSON (default 200)\n"
            "  --batch               subscribers use /ws?batch=1\n"
            "  --proto P             wsgate (default), nchan, socketio or wsgate-sio (see the\n"
            "                        top of wsbench.c); the others need --rate above 0\n"
            "  --procs K             load-generator processes sharing --subs (default 1)\n"
            "  --source-addr A       process k connects from address A+k, e.g. 127.0.0.2\n"
            "  --floor               measure the floor instead: the CPU of one send() of 1,\n"
            "                        4 and 16 frames of --size bytes to --subs loopback\n"
            "                        sockets; then the latency and sender CPU of --messages\n"
            "                        such frames at --rate to --subs subscribers written by\n"
            "                        1 and by 2 trivial sender processes\n"
            "  --timeout S           publish phase limit in seconds (default 60)\n"
            "  --setup-timeout S     connect+subscribe limit in seconds (default 60)\n"
            "  --idle S              before publishing, hold every connection idle for S\n"
            "                        seconds and report the gateway's CPU meanwhile\n"
            "  --parallel K          handshakes in flight at once (default 128)\n"
            "  --gateway-pid PID     sample CPU and RSS of this gateway (repeatable)\n"
            "  --aux-pid PID         also report CPU of this process, e.g. redis (repeatable)\n"
            "  --verbose             progress on stderr\n");
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(double q)
{
    if (!g.nlat)
        return 0;
    size_t k = (size_t)ceil(q * (double)g.nlat);
    if (k < 1)
        k = 1;
    if (k > g.nlat)
        k = g.nlat;
    return (double)g.lat[k - 1] / 1e3;
}

static void parse_args(int argc, char **argv)
{
    enum { O_PORT = 1, O_SUBS, O_CHAN, O_MSGS, O_RATE, O_SIZE, O_BATCH, O_TIMEOUT,
           O_SETUP, O_IDLE, O_WINDOW, O_PAR, O_GWPID, O_AUXPID, O_VERBOSE, O_PROTO, O_PROCS,
           O_SRC, O_FLOOR, O_HELP };
    static const struct option lo[] = {
        {"port", required_argument, 0, O_PORT},
        {"url-port", required_argument, 0, O_PORT},
        {"subs", required_argument, 0, O_SUBS},
        {"channel", required_argument, 0, O_CHAN},
        {"messages", required_argument, 0, O_MSGS},
        {"rate", required_argument, 0, O_RATE},
        {"size", required_argument, 0, O_SIZE},
        {"batch", no_argument, 0, O_BATCH},
        {"timeout", required_argument, 0, O_TIMEOUT},
        {"setup-timeout", required_argument, 0, O_SETUP},
        {"idle", required_argument, 0, O_IDLE},
        {"window", required_argument, 0, O_WINDOW},
        {"parallel", required_argument, 0, O_PAR},
        {"gateway-pid", required_argument, 0, O_GWPID},
        {"aux-pid", required_argument, 0, O_AUXPID},
        {"verbose", no_argument, 0, O_VERBOSE},
        {"proto", required_argument, 0, O_PROTO},
        {"procs", required_argument, 0, O_PROCS},
        {"source-addr", required_argument, 0, O_SRC},
        {"floor", no_argument, 0, O_FLOOR},
        {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (o) {
        case O_PORT:
            if (opt.nports == MAX_PORTS)
                die("at most %d --port", MAX_PORTS);
            opt.ports[opt.nports++] = (int)num_arg("port", optarg, 1, 65535);
            break;
        case O_SUBS: opt.subs = (int)num_arg("subs", optarg, 1, 1000000); break;
        case O_CHAN:
            opt.channel = optarg;
            if (!*optarg || strlen(optarg) > 200 ||
                strspn(optarg, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                               "0123456789_-.:@/") != strlen(optarg))
                die("bad --channel '%s'", optarg);
            break;
        case O_MSGS: opt.messages = (int64_t)num_arg("messages", optarg, 1, 1e9); break;
        case O_RATE: opt.rate = num_arg("rate", optarg, 0, 1e7); break;
        case O_SIZE: opt.size = (size_t)num_arg("size", optarg, 0, 16 << 20); break;
        case O_BATCH: opt.batch = 1; break;
        case O_TIMEOUT: opt.timeout = num_arg("timeout", optarg, 0.1, 86400); break;
        case O_SETUP: opt.setup_timeout = num_arg("setup-timeout", optarg, 0.1, 86400); break;
        case O_IDLE: opt.idle = num_arg("idle", optarg, 0, 86400); break;
        case O_WINDOW: opt.window = (int)num_arg("window", optarg, 1, 1e6); break;
        case O_PAR: opt.parallel = (int)num_arg("parallel", optarg, 1, 1e6); break;
        case O_GWPID:
            if (opt.ngw == MAX_PIDS)
                die("at most %d --gateway-pid", MAX_PIDS);
            opt.gw_pids[opt.ngw++] = (pid_t)num_arg("gateway-pid", optarg, 1, 1 << 30);
            break;
        case O_AUXPID:
            if (opt.naux == MAX_PIDS)
                die("at most %d --aux-pid", MAX_PIDS);
            opt.aux_pids[opt.naux++] = (pid_t)num_arg("aux-pid", optarg, 1, 1 << 30);
            break;
        case O_VERBOSE: opt.verbose = 1; break;
        case O_PROTO:
            if (!strcmp(optarg, "wsgate"))
                opt.proto = P_WSGATE;
            else if (!strcmp(optarg, "nchan"))
                opt.proto = P_NCHAN;
            else if (!strcmp(optarg, "socketio"))
                opt.proto = P_SIO;
            else if (!strcmp(optarg, "wsgate-sio"))
                opt.proto = P_WSIO;
            else
                die("--proto wants wsgate, nchan, socketio or wsgate-sio, got '%s'", optarg);
            break;
        case O_PROCS: opt.procs = (int)num_arg("procs", optarg, 1, MAX_PROCS); break;
        case O_SRC: {
            struct in_addr a;
            if (!inet_aton(optarg, &a) || !a.s_addr)
                die("bad --source-addr '%s' (want an IPv4 address such as 127.0.0.2)", optarg);
            opt.src_addr = ntohl(a.s_addr);
            break;
        }
        case O_FLOOR: opt.floor = 1; break;
        case O_HELP: usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc)
        die("unexpected argument '%s'", argv[optind]);
    if (opt.procs > opt.subs)
        die("--procs %d is more than --subs %d", opt.procs, opt.subs);
    if (opt.floor) { /* the senders speak to plain v1 clients */
        if (opt.nports || opt.ngw || opt.proto != P_WSGATE || opt.batch)
            die("--floor takes no --port, --gateway-pid, --proto or --batch");
        snprintf(opt.sub_target, sizeof opt.sub_target, "/ws");
        return;
    }
    if (!opt.nports)
        usage(stderr), die("--port is required");
    if (opt.proto != P_WSGATE && (opt.batch || opt.rate == 0))
        die("--proto nchan/socketio/wsgate-sio take neither --batch nor --rate 0");
    switch (opt.proto) {
    case P_WSGATE:
        snprintf(opt.sub_target, sizeof opt.sub_target, "/ws%s", opt.batch ? "?batch=1" : "");
        snprintf(opt.pub_target, sizeof opt.pub_target, "/ws");
        break;
    case P_NCHAN:
        snprintf(opt.sub_target, sizeof opt.sub_target, "/sub/%s", opt.channel);
        snprintf(opt.pub_target, sizeof opt.pub_target, "/pub/%s", opt.channel);
        break;
    case P_SIO:
    case P_WSIO:
        snprintf(opt.sub_target, sizeof opt.sub_target, "/socket.io/?EIO=4&transport=websocket");
        snprintf(opt.pub_target, sizeof opt.pub_target, "%s", opt.sub_target);
        break;
    }
}

static int wait_events(struct epoll_event *evs, int64_t wait_ns)
{
    if (wait_ns < 0)
        wait_ns = 100000000; /* 100 ms: deadlines are checked each turn */
    struct timespec ts = {(time_t)(wait_ns / 1000000000), (long)(wait_ns % 1000000000)};
    static int no_pwait2;
    int n;
    if (!no_pwait2) {
        n = epoll_pwait2(g.ep, evs, MAX_EVENTS, &ts, NULL);
        if (n >= 0 || errno != ENOSYS)
            return n < 0 && errno == EINTR ? 0 : n;
        no_pwait2 = 1;
    }
    n = epoll_wait(g.ep, evs, MAX_EVENTS, (int)((wait_ns + 999999) / 1000000));
    return n < 0 && errno == EINTR ? 0 : n;
}

static int dispatch(struct epoll_event *evs, int n)
{
    for (int i = 0; i < n; i++)
        wsc_event(evs[i].data.ptr, evs[i].events);
    return n;
}

/* ---- the floor ------------------------------------------------------------ */

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A socket listening on 127.0.0.1 at a port of the kernel's choice, in *sa. */
static int floor_listen(struct sockaddr_in *sa)
{
    *sa = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof *sa;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)sa, sizeof *sa) < 0 || listen(lfd, 128) < 0 ||
        getsockname(lfd, (struct sockaddr *)sa, &sl) < 0)
        die("--floor: listen on 127.0.0.1: %s", strerror(errno));
    return lfd;
}

/* Payload bytes of an unmasked server text frame of fs bytes in all. */
static size_t payload_of(size_t fs)
{
    return fs - 2 < 126 ? fs - 2 : fs - 4;
}

/* Writes the header of an unmasked final text frame carrying len (< 65536)
 * bytes at p; returns its length. */
static size_t frame_head(unsigned char *p, size_t len)
{
    p[0] = 0x81;
    if (len < 126) {
        p[1] = (unsigned char)len;
        return 2;
    }
    p[1] = 126, p[2] = (unsigned char)(len >> 8), p[3] = (unsigned char)len;
    return 4;
}

/* One plain send() of buf to each of the n sockets, as a server fans out;
 * returns how many took less than all of it. */
static uint64_t send_each(const int *fd, int n, const void *buf, size_t len)
{
    uint64_t shorts = 0;
    for (int i = 0; i < n; i++)
        if (send(fd[i], buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)len)
            shorts++;
    return shorts;
}

/* What the kernel charges a sender for one send() of k ready frames to each
 * of --subs loopback sockets (the receiver's side of loopback included): the
 * floor under any server's CPU per delivery. The receivers are drained
 * between rounds, outside the measurement, and sleep in no epoll_wait: the
 * latency floor below pays for waking them. */
static int send_floor(void)
{
    enum { ROUNDS = 50 };
    static const int ks[] = {1, 4, 16};
    int n = opt.subs;
    size_t fs = opt.size;
    raise_nofile(2 * n + 64);
    struct sockaddr_in sa;
    int lfd = floor_listen(&sa);
    int *tx = calloc((size_t)n, sizeof *tx), *rx = calloc((size_t)n, sizeof *rx);
    char *buf = malloc(16 * fs), *sink = malloc(1 << 20);
    if (!tx || !rx || !buf || !sink)
        die("out of memory");
    for (int i = 0; i < n; i++) {
        int one = 1;
        rx[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (rx[i] < 0 || connect(rx[i], (struct sockaddr *)&sa, sizeof sa) < 0 ||
            (tx[i] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
            die("--floor: socket pair %d: %s", i, strerror(errno));
        setsockopt(tx[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    /* 16 unmasked server text frames of fs bytes each, header included */
    for (int f = 0; f < 16; f++) {
        unsigned char *p = (unsigned char *)buf + (size_t)f * fs;
        size_t len = payload_of(fs);
        memset(p + frame_head(p, len), 'x', len);
    }
    double per_send[3];
    uint64_t shorts = 0;
    for (int j = 0; j < 3; j++) {
        size_t bytes = (size_t)ks[j] * fs;
        double cpu = 0;
        for (int r = -1; r < ROUNDS; r++) { /* round -1 warms up, uncounted */
            double t0 = cpu_now();
            shorts += send_each(tx, n, buf, bytes);
            if (r >= 0)
                cpu += cpu_now() - t0;
            for (int i = 0; i < n; i++)
                while (recv(rx[i], sink, 1 << 20, MSG_DONTWAIT) > 0)
                    ;
        }
        per_send[j] = cpu * 1e6 / ((double)n * ROUNDS);
    }
    printf("wsbench floor: %d loopback sockets, frames of %zu B, %d rounds of one send() each\n",
           n, fs, ROUNDS);
    for (int j = 0; j < 3; j++)
        printf("  %2d frame(s) per send(): %.3f CPU-us per send() = %.3f per frame\n", ks[j],
               per_send[j], per_send[j] / ks[j]);
    printf("RESULT status=%s floor=1 sockets=%d frame_bytes=%zu us_per_send_1=%.3f "
           "us_per_frame_4=%.3f us_per_frame_16=%.3f short_sends=%" PRIu64 "\n",
           shorts ? "fail" : "ok", n, fs, per_send[0], per_send[1] / 4, per_send[2] / 16, shorts);
    for (int i = 0; i < n; i++)
        close(tx[i]), close(rx[i]);
    close(lfd);
    free(tx), free(rx), free(buf), free(sink);
    return shorts ? 1 : 0;
}

/* Takes one subscriber from lfd and answers its upgrade with the 101, the
 * welcome and the ack of its subscribe (id 1), all at once: the client
 * reads them in order, and its subscribe is never read. Returns the socket,
 * or -1 when the client went away. */
static int sender_accept(int lfd)
{
    static char hello[512];
    static size_t hlen;
    if (!hlen) {
        static const char *const obj[] = {"{\"op\":\"welcome\",\"node\":\"floor\",\"session\":\"0\"}",
                                          "{\"op\":\"ack\",\"id\":1}"};
        hlen = (size_t)snprintf(hello, sizeof hello,
                                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                "Connection: Upgrade\r\nSec-WebSocket-Accept: " WSC_ACCEPT
                                "\r\n\r\n");
        for (int j = 0; j < 2; j++) {
            size_t len = strlen(obj[j]);
            hlen += frame_head((unsigned char *)hello + hlen, len);
            memcpy(hello + hlen, obj[j], len), hlen += len;
        }
    }
    int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), one = 1;
    if (s < 0)
        return -1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char req[4096];
    size_t got = 0;
    while (!memmem(req, got, "\r\n\r\n", 4)) {
        ssize_t r = got < sizeof req ? recv(s, req + got, sizeof req - got, 0) : -1;
        if (r <= 0) {
            close(s);
            return -1;
        }
        got += (size_t)r;
    }
    if (send(s, hello, hlen, MSG_NOSIGNAL) != (ssize_t)hlen) {
        close(s);
        return -1;
    }
    return s;
}

/* Trivial sender k of the latency floor: takes subscribers until the parent
 * sets shm->go, then writes message i, stamped as it is built, to every one
 * of them at go + i / --rate; then keeps its sockets open until shm->stop
 * (closing them first could cut a frame still unread). */
static int sender_run(int k, int lfd)
{
    int *fd = NULL, n = 0, cap = 0;
    while (!__atomic_load_n(&shm->go, __ATOMIC_ACQUIRE)) {
        if (__atomic_load_n(&shm->stop, __ATOMIC_RELAXED))
            return 1;
        struct pollfd p = {.fd = lfd, .events = POLLIN};
        if (poll(&p, 1, 10) <= 0)
            continue;
        int s = sender_accept(lfd);
        if (s < 0)
            continue;
        if (n == cap)
            fd = xrealloc(fd, (size_t)(cap = cap ? 2 * cap : 1024) * sizeof *fd);
        fd[n++] = s;
    }
    close(lfd);
    char pre[300];
    snprintf(pre, sizeof pre, "{\"op\":\"message\",\"channel\":\"%s\",\"data\":", opt.channel);
    size_t text = payload_of(opt.size), wrap = strlen(pre) + 1;
    size_t size = text > wrap ? text - wrap : 0; /* the data JSON's share */
    unsigned char *frame = NULL;
    uint64_t go = shm->go, shorts = 0;
    for (int64_t i = 0; i < opt.messages && !__atomic_load_n(&shm->stop, __ATOMIC_RELAXED); i++) {
        uint64_t due = go + (uint64_t)(1e9 / opt.rate * (double)i), t;
        struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        size_t len;
        const char *p = compose(pre, i, size, "}", &len, &t);
        if (len > 65535)
            die("--floor: frames of %zu B are beyond this sender", len);
        frame = xrealloc(frame, len + 4);
        size_t h = frame_head(frame, len);
        memcpy(frame + h, p, len);
        shorts += send_each(fd, n, frame, h + len);
        __atomic_store_n(&shm->sender[k].frames, (uint64_t)(i + 1) * (uint64_t)n,
                         __ATOMIC_RELAXED);
        __atomic_store_n(&shm->sender[k].shorts, shorts, __ATOMIC_RELAXED);
    }
    while (!__atomic_load_n(&shm->stop, __ATOMIC_RELAXED))
        usleep(10000);
    for (int i = 0; i < n; i++)
        close(fd[i]);
    free(fd);
    free(frame);
    return 0;
}

/* Forks the opt.senders trivial senders, each on its own port; they become
 * the run's --port list (subscribers round-robin, as over gateway workers)
 * and --gateway-pid list. */
static void start_senders(void)
{
    raise_nofile(opt.subs + 64);
    pid_t parent = getpid();
    for (int k = 0; k < opt.senders; k++) {
        struct sockaddr_in sa;
        int lfd = floor_listen(&sa);
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0)
            die("fork: %s", strerror(errno));
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the run */
            _exit(getppid() == parent ? sender_run(k, lfd) : 1);
        }
        close(lfd);
        opt.ports[opt.nports++] = ntohs(sa.sin_port);
        opt.gw_pids[opt.ngw++] = pid;
    }
}

/* ---- several load-generator processes ------------------------------------------- */

/* Starts what may start of this process's subscribers; -1 on failure. */
static int start_subs(void)
{
    while (g.subs_started < g.nsubs && g.inflight < opt.parallel) {
        struct conn *c = &g.subs[g.subs_started];
        if (start_connect(c, opt.ports[(g.first + g.subs_started) % opt.nports]) < 0)
            return -1;
        g.subs_started++;
        g.inflight++;
    }
    return 0;
}

/* Sends a close frame on each connection, best effort, and closes them. */
static void close_all(void)
{
    for (int i = 0; i <= g.nsubs; i++) {
        struct conn *c = i < g.nsubs ? &g.subs[i] : &g.pub;
        if (c->ws.fd < 0)
            continue;
        static const char bye[2] = {0x03, (char)0xe8}; /* 1000 */
        c->ws.woff = c->ws.wlen = 0;
        wsc_queue_frame(&c->ws, 0x8, bye, 2);
        (void)!send(c->ws.fd, c->ws.wbuf, c->ws.wlen, MSG_NOSIGNAL | MSG_DONTWAIT);
        wsc_close(&c->ws);
    }
}

/* This process's final figures, for the parent to sum. */
static void store_figures(void)
{
    struct shard *sh = &shm->sh[g.proc];
    int complete = 0;
    for (int i = 0; i < g.nsubs; i++)
        complete += g.subs[i].got == (uint64_t)opt.messages && g.subs[i].next_seq == opt.messages;
    sh->subs_done = g.subs_done;
    sh->subs_complete = complete;
    sh->deliveries = g.deliveries;
    sh->gaps = g.gaps;
    sh->out_of_order = g.out_of_order;
    sh->unexpected = g.unexpected;
    sh->closed_early = g.closed_early;
    sh->proto_errors = g.proto_errors;
    sh->t_last_delivery = g.t_last_delivery;
    sh->nlat = g.nlat;
    __atomic_store_n(&sh->exited, 1, __ATOMIC_RELEASE);
}

/* 1 when every child has its subscribers acked, 0 while not yet, -1 when
 * one failed or died. */
static int kids_ready(void)
{
    int all = 1;
    for (int k = 1; k < opt.procs; k++) {
        int r = __atomic_load_n(&shm->sh[k].ready, __ATOMIC_ACQUIRE), st;
        if (r < 0)
            return -1;
        if (r == 0) {
            if (kids[k] && waitpid(kids[k], &st, WNOHANG) == kids[k]) {
                kids[k] = 0;
                return -1;
            }
            all = 0;
        }
    }
    return all;
}

static int sum_shards(size_t field)
{
    int n = 0;
    for (int k = 0; k < opt.procs; k++)
        n += __atomic_load_n((int *)((char *)&shm->sh[k] + field), __ATOMIC_RELAXED);
    return n;
}

/* A child: connect and subscribe its share, say so, answer what arrives
 * until the parent says stop (or a bound passes), then store its figures. */
static int run_child(struct epoll_event *evs)
{
    uint64_t t0 = now_ns();
    uint64_t setup_deadline = t0 + (uint64_t)(opt.setup_timeout * 1e9);
    uint64_t bound = t0 + (uint64_t)((opt.setup_timeout + opt.idle + opt.timeout + 30) * 1e9);
    while (!g.fatal && g.subs_ready < g.nsubs && !__atomic_load_n(&shm->stop, __ATOMIC_RELAXED)) {
        if (now_ns() > setup_deadline || start_subs() < 0 || g.subs_closed)
            g.fatal = 1;
        int n = wait_events(evs, 100000000);
        if (n < 0)
            die("epoll_wait: %s", strerror(errno));
        dispatch(evs, n);
    }
    __atomic_store_n(&shm->sh[g.proc].ready, g.fatal || g.subs_ready < g.nsubs ? -1 : 1,
                     __ATOMIC_RELEASE);
    while (!__atomic_load_n(&shm->stop, __ATOMIC_RELAXED) && now_ns() < bound) {
        int n = wait_events(evs, 100000000);
        if (n < 0)
            die("epoll_wait: %s", strerror(errno));
        dispatch(evs, n);
    }
    close_all();
    store_figures();
    return 0;
}

/* Waits for child pid, a what, until deadline; then kills it. */
static void reap(pid_t pid, const char *what, uint64_t deadline)
{
    while (waitpid(pid, NULL, WNOHANG) == 0) {
        if (now_ns() > deadline) {
            fprintf(stderr, "wsbench: %s (pid %d) did not stop, killing it\n", what, (int)pid);
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            return;
        }
        usleep(10000);
    }
}

/* The parent, once done: stops the children (load generators and the
 * latency floor's senders) and waits for them (killed after 10 s). */
static void stop_kids(void)
{
    __atomic_store_n(&shm->stop, 1, __ATOMIC_RELEASE);
    uint64_t deadline = now_ns() + 10000000000u;
    for (int k = 1; k < opt.procs; k++) {
        if (kids[k])
            reap(kids[k], "a load generator", deadline);
        kids[k] = 0;
    }
    for (int k = 0; k < opt.senders; k++)
        reap(opt.gw_pids[k], "a sender", deadline);
}

/* Sums every process's figures into g and gathers the latency samples at
 * the start of the shared array; -1 when a child left no figures. */
static int gather(uint64_t *lat_all, size_t slice, int *subs_complete)
{
    int rc = 0;
    g.deliveries = g.gaps = g.out_of_order = g.unexpected = g.closed_early = 0;
    g.proto_errors = g.t_last_delivery = 0;
    g.subs_done = *subs_complete = 0;
    g.nlat = 0;
    for (int k = 0; k < opt.procs; k++) {
        const struct shard *sh = &shm->sh[k];
        if (!__atomic_load_n(&sh->exited, __ATOMIC_ACQUIRE)) {
            fprintf(stderr, "wsbench: load generator %d left no figures\n", k);
            rc = -1;
            continue;
        }
        g.deliveries += sh->deliveries;
        g.gaps += sh->gaps;
        g.out_of_order += sh->out_of_order;
        g.unexpected += sh->unexpected;
        g.closed_early += sh->closed_early;
        g.proto_errors += sh->proto_errors;
        g.subs_done += sh->subs_done;
        *subs_complete += sh->subs_complete;
        if (sh->t_last_delivery > g.t_last_delivery)
            g.t_last_delivery = sh->t_last_delivery;
        memmove(lat_all + g.nlat, lat_all + (size_t)k * slice, sh->nlat * sizeof *lat_all);
        g.nlat += sh->nlat;
    }
    g.lat = lat_all;
    return rc;
}

/* Frees what main allocated, at the end of either role. */
static void release(struct epoll_event *evs)
{
    for (int i = 0; i <= g.nsubs; i++)
        wsc_free(i < g.nsubs ? &g.subs[i].ws : &g.pub.ws);
    free(g.subs);
    free(evs);
    close(g.ep);
}

/* ---- main ----------------------------------------------------------------------- */

/* One run: setup, publish and collect, report. Every load-generator
 * process returns from it (the children with their own status). */
static int bench(void)
{
    /* latency samples: one slice per process, each its share at most */
    g.expected = (uint64_t)opt.subs * (uint64_t)opt.messages;
    uint64_t most = (uint64_t)((opt.subs + opt.procs - 1) / opt.procs) * (uint64_t)opt.messages;
    size_t slice = most < LAT_CAP_DEFAULT / opt.procs ? (size_t)most : LAT_CAP_DEFAULT / opt.procs;
    size_t shm_len = sizeof *shm + slice * opt.procs * sizeof(uint64_t);
    void *mem = mmap(NULL, shm_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        die("out of memory for %zu latency samples", slice * opt.procs);
    shm = mem;
    uint64_t *lat_all = (uint64_t *)(shm + 1);
    if (opt.senders)
        start_senders();

    long rss0[MAX_PIDS] = {0}, rss1[MAX_PIDS] = {0}, rss2[MAX_PIDS] = {0};
    sample_rss(rss0); /* before any connection */
    long tcp0 = tcp_mem_kb(), tcp1 = -1;

    pid_t parent = getpid();
    for (int k = 1; k < opt.procs && g.proc == 0; k++) {
        pid_t pid = fork();
        if (pid < 0)
            die("fork: %s", strerror(errno));
        if (pid == 0) {
            g.proc = k;
            prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the run */
            if (getppid() != parent)
                _exit(1);
        } else {
            kids[k] = pid;
        }
    }
    int base = opt.subs / opt.procs, rest = opt.subs % opt.procs;
    g.nsubs = base + (g.proc < rest);
    g.first = g.proc * base + (g.proc < rest ? g.proc : rest);
    if (opt.src_addr)
        wsc_env.src_addr = opt.src_addr + (uint32_t)g.proc;
    raise_nofile(g.nsubs + 64);
    g.ep = wsc_init(MAX_FRAME, (struct wsc_hooks){h_opened, h_text, h_closed, h_lost,
                                                  h_bad, h_fatal});

    g.subs = calloc((size_t)g.nsubs, sizeof *g.subs);
    if (!g.subs)
        die("out of memory");
    for (int i = 0; i < g.nsubs; i++)
        g.subs[i].ws.fd = -1;
    g.pub.ws.fd = -1;
    g.pub.is_pub = 1;
    uint64_t mine = (uint64_t)g.nsubs * (uint64_t)opt.messages;
    g.lat = lat_all + (size_t)g.proc * slice;
    g.latcap = slice;
    g.lat_stride = (mine + slice - 1) / slice;
    if (!g.lat_stride)
        g.lat_stride = 1;
    /* touch the sample array now, not during the measurement */
    memset(g.lat, 0, g.latcap * sizeof *g.lat);

    struct epoll_event *evs = calloc(MAX_EVENTS, sizeof *evs);
    if (!evs)
        die("out of memory");
    if (g.proc) {
        int rc = run_child(evs);
        release(evs);
        return rc;
    }

    /* ---- setup: connect and subscribe (every process), then the publisher ---- */
    uint64_t t_setup = now_ns();
    uint64_t setup_deadline = t_setup + (uint64_t)(opt.setup_timeout * 1e9);
    uint64_t next_progress = t_setup + 1000000000u;
    int pub_started = 0, kr = opt.procs == 1;
    while (!g.fatal && (g.subs_ready < g.nsubs || kr != 1 || g.pub.state != S_READY)) {
        uint64_t now = now_ns();
        if (now > setup_deadline) {
            fprintf(stderr, "wsbench: setup timed out after %.1f s: %d/%d subscribers acked, "
                    "publisher %s\n", opt.setup_timeout, sum_shards(offsetof(struct shard, subs_ready)),
                    opt.subs, g.pub.state == S_READY ? "ready" : "not ready");
            g.fatal = 1;
            break;
        }
        if (start_subs() < 0) {
            g.fatal = 1;
            break;
        }
        if (g.subs_closed) {
            fprintf(stderr, "wsbench: %d subscriber(s) closed during setup\n", g.subs_closed);
            g.fatal = 1;
            break;
        }
        if (kr != 1 && (kr = kids_ready()) < 0) {
            fprintf(stderr, "wsbench: a load-generator process failed its setup\n");
            g.fatal = 1;
            break;
        }
        /* the publisher connects once every subscriber is acked (the
         * latency floor's senders publish instead) */
        if (!pub_started && g.subs_ready == g.nsubs && kr == 1) {
            sample_rss(rss1);
            tcp1 = tcp_mem_kb();
            if (opt.senders) {
                g.pub.state = S_READY;
            } else if (start_connect(&g.pub, opt.ports[0]) < 0) {
                g.fatal = 1;
                break;
            }
            pub_started = 1;
        }
        if (pub_started && !opt.senders && g.pub.ws.fd < 0) {
            fprintf(stderr, "wsbench: the publisher connection failed\n");
            g.fatal = 1;
            break;
        }
        if (opt.verbose && now > next_progress) {
            fprintf(stderr, "wsbench: setup %d acked of %d\n",
                    sum_shards(offsetof(struct shard, subs_ready)), opt.subs);
            next_progress = now + 1000000000u;
        }
        int n = wait_events(evs, 100000000);
        if (n < 0)
            die("epoll_wait: %s", strerror(errno));
        dispatch(evs, n);
    }
    double setup_s = (double)(now_ns() - t_setup) / 1e9;
    if (g.fatal) {
        int acked = sum_shards(offsetof(struct shard, subs_ready));
        close_all();
        stop_kids();
        fprintf(stderr, "wsbench: setup failed after %.2f s (%d/%d subscribers acked)\n",
                setup_s, acked, opt.subs);
        printf("RESULT status=setup_failed subs=%d subs_acked=%d procs=%d setup_s=%.2f\n",
               opt.subs, acked, opt.procs, setup_s);
        release(evs);
        munmap(mem, shm_len);
        return 1;
    }

    /* ---- idle: what holding the connections costs (pings answered) ---- */
    struct cpu_sample c0, c1;
    double idle_pct = 0;
    if (opt.idle > 0) {
        sample_cpu(&c0);
        uint64_t t_idle = now_ns(), idle_end = t_idle + (uint64_t)(opt.idle * 1e9);
        for (uint64_t now = t_idle; now < idle_end; now = now_ns()) {
            int n = wait_events(evs, (int64_t)(idle_end - now));
            if (n < 0)
                die("epoll_wait: %s", strerror(errno));
            dispatch(evs, n);
        }
        sample_cpu(&c1);
        double ticks = 0;
        for (int i = 0; i < opt.ngw; i++)
            ticks += (double)(c1.ut[i] - c0.ut[i] + c1.st[i] - c0.st[i]);
        idle_pct = ticks / (double)sysconf(_SC_CLK_TCK) * 100.0 /
                   ((double)(now_ns() - t_idle) / 1e9);
        int gone = sum_shards(offsetof(struct shard, finished)); /* nothing published yet */
        if (gone)
            fprintf(stderr, "wsbench: %d subscriber(s) closed while idle\n", gone);
    }

    /* ---- publish and collect ---- */
    sample_cpu(&c0);
    uint64_t t0 = now_ns();
    uint64_t deadline = t0 + (uint64_t)(opt.timeout * 1e9);
    int timed_out = 0;
    next_progress = t0 + 1000000000u;
    if (opt.senders) {
        g.t_first_pub = t0;
        __atomic_store_n(&shm->go, t0, __ATOMIC_RELEASE);
    }
    for (;;) {
        if (sum_shards(offsetof(struct shard, finished)) >= opt.subs)
            break; /* every subscriber has the last message, or is gone */
        uint64_t now = now_ns();
        if (now > deadline) {
            timed_out = 1;
            break;
        }
        int64_t wait = publisher_turn(t0);
        if (!opt.senders && g.pub.ws.fd < 0 && g.sent < opt.messages) {
            fprintf(stderr, "wsbench: publisher connection lost after %" PRId64 " messages\n",
                    g.sent);
            break;
        }
        if (opt.verbose && now > next_progress) {
            fprintf(stderr, "wsbench: sent %" PRId64 " acked %" PRId64 " subscribers finished %d\n",
                    g.sent, g.acked, sum_shards(offsetof(struct shard, finished)));
            next_progress = now + 1000000000u;
        }
        int64_t left = (int64_t)(deadline - now);
        /* children report through memory, not events: look every 10 ms */
        int64_t cap = opt.procs > 1 ? 10000000 : 100000000;
        if (wait < 0 || wait > left)
            wait = left < cap ? left : cap;
        if (wait > cap)
            wait = cap;
        int n = wait_events(evs, wait);
        if (n < 0)
            die("epoll_wait: %s", strerror(errno));
        dispatch(evs, n);
    }
    uint64_t t_end = now_ns();
    sample_cpu(&c1);
    sample_rss(rss2);
    /* up to 1 s for the last publish acks (they may trail the deliveries) */
    uint64_t grace = now_ns() + 1000000000u;
    for (int i = 0; i < 100000 && g.pub.ws.fd >= 0 &&
                    g.acked + (int64_t)g.pub_errors < g.sent && now_ns() < grace; i++) {
        int n = wait_events(evs, 10000000);
        if (n > 0)
            dispatch(evs, n);
    }
    close_all();
    store_figures();
    stop_kids();
    int subs_complete;
    int lost_figures = gather(lat_all, slice, &subs_complete) < 0;

    /* ---- report ---- */
    uint64_t t_stop = g.subs_done >= opt.subs ? g.t_last_delivery : t_end;
    double elapsed = (double)(t_stop - (g.t_first_pub ? g.t_first_pub : t0)) / 1e9;
    if (elapsed <= 0)
        elapsed = 1e-9;
    qsort(g.lat, g.nlat, sizeof *g.lat, cmp_u64);
    double tick = (double)sysconf(_SC_CLK_TCK);
    double gw_user = 0, gw_sys = 0;
    for (int i = 0; i < opt.ngw; i++) {
        gw_user += (double)(c1.ut[i] - c0.ut[i]) / tick;
        gw_sys += (double)(c1.st[i] - c0.st[i]) / tick;
    }
    double gw_cpu = gw_user + gw_sys;
    double aux_cpu = 0;
    for (int i = 0; i < opt.naux; i++)
        aux_cpu += (double)(c1.aut[i] - c0.aut[i] + c1.ast[i] - c0.ast[i]) / tick;
#define TV(t) ((double)(t).tv_sec + (double)(t).tv_usec / 1e6)
    double self_cpu = TV(c1.self.ru_utime) - TV(c0.self.ru_utime) +
                      TV(c1.self.ru_stime) - TV(c0.self.ru_stime) +
                      (double)(c1.kids - c0.kids) / tick;
    double host_busy = (double)(c1.host_busy - c0.host_busy) / tick;
    double others = host_busy - gw_cpu - aux_cpu - self_cpu;
    if (others < 0)
        others = 0;
    double pub_wall = (double)(t_end - t0) / 1e9;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t missing = g.deliveries < g.expected ? g.expected - g.deliveries : 0;
    uint64_t frames = 0, shorts = 0; /* the latency floor's senders */
    for (int k = 0; k < opt.senders; k++)
        frames += shm->sender[k].frames, shorts += shm->sender[k].shorts;
    const char *who = opt.senders ? "sender" : "gateway";
    uint64_t errors = g.gaps + g.out_of_order + g.unexpected + g.closed_early +
                      g.proto_errors + g.pub_errors + shorts +
                      (uint64_t)(g.sent - g.acked > 0 ? g.sent - g.acked : 0);
    int ok = subs_complete == opt.subs && !lost_figures && errors == 0 &&
             g.deliveries == g.expected && !timed_out;
    long b = sum_kb(rss0), a = sum_kb(rss1), e = sum_kb(rss2);
    double per_conn = opt.ngw ? (double)(a - b) * 1024.0 / opt.subs : 0;
    double dps = (double)g.deliveries / elapsed;
    double cpu_per = g.deliveries ? gw_cpu * 1e6 / (double)g.deliveries : 0;

    char ratestr[96];
    if (opt.rate > 0)
        snprintf(ratestr, sizeof ratestr, "%g msg/s (%.0f deliveries/s offered)", opt.rate,
                 opt.rate * opt.subs);
    else
        snprintf(ratestr, sizeof ratestr, "unlimited (window of %d unacked)", opt.window);
    printf("wsbench: %d subscribers on %d port(s), channel %s, %" PRId64 " messages of %zu B "
           "%s, rate %s, batch %s\n", opt.subs, opt.nports, opt.channel, opt.messages,
           opt.size, opt.senders ? "frames" : "data", ratestr, opt.batch ? "yes" : "no");
    printf("  setup:      %d subscribers connected and acked in %.2f s (%.0f per s; %d "
           "load-generator process(es))\n", opt.subs, setup_s, opt.subs / setup_s, opt.procs);
    if (opt.idle > 0)
        printf("  idle:       %d connections held %.0f s: gateway CPU %.2f%% of a core\n",
               opt.subs + 1, opt.idle, idle_pct);
    if (opt.senders)
        printf("  senders:    %d wrote %" PRIu64 " frames, one send() each, %" PRIu64
               " short\n", opt.senders, frames, shorts);
    else
        printf("  publish:    %" PRId64 " sent, %" PRId64 " acked, %" PRIu64 " publish errors\n",
               g.sent, g.acked, g.pub_errors);
    if (g.pub_closed[0])
        printf("  publisher:  connection ended early: %s\n", g.pub_closed);
    printf("  deliveries: %" PRIu64 " of %" PRIu64 " expected (%" PRIu64 " missing); %d of %d "
           "subscribers got every message%s\n", g.deliveries, g.expected, missing,
           subs_complete, opt.subs, timed_out ? "  TIMED OUT" : "");
    printf("  errors:     %" PRIu64 " (gaps %" PRIu64 ", out-of-order %" PRIu64
           ", subscribers closed early %" PRIu64 ", unexpected frames %" PRIu64
           ", protocol %" PRIu64 ", unacked publishes %" PRId64 ")\n",
           errors, g.gaps, g.out_of_order, g.closed_early, g.unexpected, g.proto_errors,
           g.sent - g.acked > 0 ? g.sent - g.acked : 0);
    printf("  elapsed:    %.3f s first publish -> %s, %.0f deliveries/s\n", elapsed,
           g.subs_done >= opt.subs ? "last delivery" : "stop", dps);
    printf("  latency:    p50 %.0f us, p90 %.0f us, p99 %.0f us, p99.9 %.0f us, max %.0f us "
           "(%zu samples)\n", pct_us(0.50), pct_us(0.90), pct_us(0.99), pct_us(0.999),
           g.nlat ? (double)g.lat[g.nlat - 1] / 1e3 : 0, g.nlat);
    if (opt.ngw) {
        printf("  %s CPU: %.2f s (user %.2f, sys %.2f) over the publish phase = %.3f "
               "CPU-us per delivery (%d process(es), clock tick %.0f Hz)\n",
               who, gw_cpu, gw_user, gw_sys, cpu_per, opt.ngw, tick);
        if (gw_cpu < 100 / tick)
            printf("              (under %.0f ticks of CPU: the per-delivery figure is coarse,"
                   " run longer)\n", 100.0);
        printf("  %s RSS: %ld kB before connecting, %ld kB with %d subscribers, "
               "%ld kB at the end => %.0f bytes per connection\n", who, b, a, opt.subs, e,
               per_conn);
        for (int i = 0; opt.ngw > 1 && i < opt.ngw; i++)
            printf("    pid %d: cpu %.2f s, rss %ld -> %ld -> %ld kB\n", (int)opt.gw_pids[i],
                   (double)(c1.ut[i] - c0.ut[i] + c1.st[i] - c0.st[i]) / tick, rss0[i],
                   rss1[i], rss2[i]);
    } else {
        printf("  gateway CPU/RSS: not measured (no --gateway-pid)\n");
    }
    if (tcp0 >= 0 && tcp1 >= 0)
        printf("  kernel TCP: %ld kB before connecting, %ld kB with %d subscribers (both ends of\n"
               "              every connection, the whole machine's: /proc/net/sockstat)\n",
               tcp0, tcp1, opt.subs);
    if (opt.naux)
        printf("  other CPU:  %.2f s (--aux-pid, e.g. redis; not in the per-delivery figure)\n",
               aux_cpu);
    printf("  bench CPU:  %.2f s (%d process(es)). The bench runs on the same machine and\n"
           "              competes with the gateway for the cores: on a 2-core box it caps\n"
           "              deliveries/s and adds latency; CPU-us per delivery counts the\n"
           "              gateway processes only.\n", self_cpu, opt.procs);
    printf("  machine:    %ld CPUs, %.2f CPU-s busy during the %.2f s publish phase, of which\n"
           "              %.2f s by other processes (not gateway, bench or --aux-pid)%s\n",
           ncpu, host_busy, pub_wall, others,
           others > 0.1 * pub_wall ? "  WARNING: the machine was not quiet, figures are noisy"
                                   : "");
    printf("  verdict:    %s\n", ok ? "OK, every expected delivery arrived in order"
                                    : "FAILED, deliveries missing or out of order");
    printf("RESULT status=%s subs=%d messages=%" PRId64 " size=%zu rate=%g batch=%d ports=%d "
           "procs=%d deliveries=%" PRIu64 " expected=%" PRIu64 " subs_complete=%d errors=%" PRIu64
           " missing=%" PRIu64 " elapsed_s=%.3f deliveries_per_s=%.0f lat_p50_us=%.0f "
           "lat_p90_us=%.0f lat_p99_us=%.0f lat_p999_us=%.0f lat_max_us=%.0f gw_cpu_s=%.2f "
           "cpu_us_per_delivery=%.3f rss_before_kb=%ld rss_after_connect_kb=%ld rss_end_kb=%ld "
           "rss_per_conn_bytes=%.0f aux_cpu_s=%.2f bench_cpu_s=%.2f other_cpu_s=%.2f "
           "setup_s=%.2f idle_cpu_pct=%.2f tcp_mem_kb_before=%ld tcp_mem_kb_connected=%ld "
           "senders=%d\n",
           ok ? "ok" : "fail", opt.subs, opt.messages, opt.size, opt.rate, opt.batch,
           opt.nports, opt.procs, g.deliveries, g.expected, subs_complete, errors, missing,
           elapsed, dps, pct_us(0.50), pct_us(0.90), pct_us(0.99), pct_us(0.999),
           g.nlat ? (double)g.lat[g.nlat - 1] / 1e3 : 0, gw_cpu, cpu_per, b, a, e, per_conn,
           aux_cpu, self_cpu, others, setup_s, idle_pct, tcp0, tcp1, opt.senders);
    fflush(stdout);

    release(evs);
    munmap(mem, shm_len);
    return ok ? 0 : 1;
}

/* --floor: the send() floor, then the latency floor with 1 and with 2
 * senders, each run in a child of its own (a run leaves state behind). */
static int floor_all(void)
{
    if (opt.size < 4 || opt.size > 65535)
        die("--floor wants --size 4..65535 (bytes per frame), got %zu", opt.size);
    int rc = send_floor();
    if (opt.rate <= 0) {
        printf("wsbench latency floor: skipped, it needs --rate above 0\n");
        return rc;
    }
    for (int k = 1; k <= 2; k++) {
        printf("\nwsbench latency floor: %d trivial sender process(es) in the gateway's place, "
               "each writing one ready %zu-byte frame per message to its subscribers, one "
               "send() each\n", k, opt.size);
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0)
            die("fork: %s", strerror(errno));
        if (pid == 0) {
            opt.senders = k;
            exit(bench());
        }
        int st;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
            rc = 1;
    }
    return rc;
}

int main(int argc, char **argv)
{
    wsc_env.prog = "wsbench";
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    return opt.floor ? floor_all() : bench();
}

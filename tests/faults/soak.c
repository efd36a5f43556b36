/* soak.c - long-run driver for tests/faults/soak.sh (protocol v1).
 *
 * One thread, one epoll loop, raw non-blocking sockets and a minimal
 * RFC 6455 client (tests/bench/wsclient.c, shared with wsbench.c):
 *
 *   1. setup: N subscribers connect round-robin over the --port list (with
 *      ?batch=1, as the JS client does; --plain: without), wait for
 *      "welcome", subscribe to one channel and wait for the ack.
 *   2. run (--minutes): one publisher per port publishes {"seq":i} at
 *      --rate per second in turn (seq i through port i mod P), so every
 *      message crosses Redis to the other gateways. Each second --churn of
 *      the subscribers reconnect: at that moment the highest acked seq L is
 *      noted, the subscriber stays until it has every seq of its session up
 *      to L (everything acked before it decided to leave is owed to it; it
 *      waits as long as that takes, so a slow machine delays but does not
 *      lose), closes (1000) and reconnects at once to the same port. RSS and CPU of every
 *      --gateway-pid are sampled every --sample seconds.
 *   3. drain: publishing and churn stop; wait until every publish is acked
 *      and every subscriber is connected and holds all it is owed (at most
 *      --drain-timeout seconds).
 *
 * Accounting, per subscriber: a session owes every seq from the first one
 * sent after its subscribe ack to L (the last session: to the end). A seq
 * it is not owed but that was published while it was subscribed at all
 * (between sessions) lies in a reconnect gap: missing it is expected today
 * (no recovery), receiving it is fine. An owed seq missing while a later
 * seq from the same publisher arrived is a loss; one missing at the end of
 * a session (drain timed out) is reported as not delivered.
 * Received seqs are kept in one bitmap per subscriber, so duplicates and
 * order do not matter.
 *
 * RSS slope: RSS is sampled every --sample seconds and once more when the
 * drain is over (no backlog left in it). The slope is the smaller of the
 * growth rates over the third and the fourth quarter of the run, in KB per
 * minute: a leak (per message, per reconnect) grows RSS steadily and shows
 * in both; a step up of the allocator's high-water mark, which a backlog on
 * a loaded machine causes and which does not repeat at once, shows in one
 * (least squares over the second half read such a step as a leak). Exit 0 when nothing owed was lost, no connection was
 * closed by a gateway, every publish was acked and every slope is at most
 * --max-slope; 1 otherwise (also when setup fails); 2 for bad usage. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../bench/wsclient.h"

#define MAX_PORTS 8
#define MAX_SAMPLES 100000
#define MAX_FRAME (1u << 20)
#define MAX_EVENTS 512
#define PARALLEL 128     /* handshakes in flight during setup */
#define LEAVE_SLOW_NS (5 * NS) /* a leave waiting longer is reported */
#define DIAG_MAX 10
#define NS 1000000000ull

enum state { S_IDLE, S_CONNECTING, S_WELCOME, S_SUBSCRIBING, S_READY, S_LEAVING };

#define OPEN INT64_MAX
struct session { /* seqs owed: [from, to], to = OPEN while it lasts */
    int64_t from, to;
};

struct conn {
    struct wsc ws; /* first: the socket, its buffers and frame parser */
    int is_pub;
    enum state state;
    /* subscriber */
    uint8_t *seen; /* bitmap of received seqs */
    size_t seen_bytes;
    struct session *sess;
    size_t nsess, csess;
    int64_t cursor;     /* lowest seq of this session not received yet */
    int64_t leave_seq;  /* S_LEAVING: wait until every seq up to this one */
    uint64_t leave_deadline;
    int64_t first_seq;  /* first seq sent after the first subscribe ack */
};

static struct {
    int ports[MAX_PORTS];
    int nports;
    int subs;
    double minutes;
    double rate;
    double churn; /* fraction of subscribers reconnecting per second */
    double sample;
    double max_slope; /* KB/min */
    double drain_timeout;
    double setup_timeout;
    pid_t pids[MAX_PORTS];
    int npids;
    pid_t aux;
    const char *channel;
    int verbose;
    int plain; /* subscribers without ?batch=1 */
} opt = {
    .subs = 2000,
    .minutes = 1,
    .rate = 50,
    .churn = 0.01,
    .sample = 1,
    .max_slope = 256,
    .drain_timeout = 60,
    .setup_timeout = 120,
    .channel = "soak",
};

static struct {
    int ep;
    struct conn *subs;
    struct conn pubs[MAX_PORTS];
    size_t sent_cap;
    int64_t sent, acked;   /* acked: count of acks */
    int64_t acked_max;     /* highest acked seq */
    int64_t *acked_set;    /* per seq: acked? (0/1), to find contiguous prefix */
    int64_t acked_prefix;  /* every seq < this is acked */
    int ready, inflight;
    uint64_t reconnects, unexpected_closes, proto_errors, pub_errors, slow_leaves;
    int diag;
    int fatal;
    int churning;
} g;

static void diag(const struct conn *c, const char *what, const char *p, size_t n)
{
    if (g.diag++ >= DIAG_MAX)
        return;
    fprintf(stderr, "soak: %s on port %d: %s %.*s\n", c->is_pub ? "publisher" : "subscriber",
            c->ws.port, what, (int)(n > 200 ? 200 : n), p ? p : "");
}

/* ---- /proc ------------------------------------------------------------- */

/* utime + stime of pid in seconds; -1 if unreadable. */
static double proc_cpu_s(pid_t pid)
{
    uint64_t u, s;
    if (proc_cpu(pid, &u, &s) < 0)
        return -1;
    return (double)(u + s) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void loadavg(char *out, size_t n)
{
    FILE *f = fopen("/proc/loadavg", "r");
    out[0] = '\0';
    if (f) {
        if (fgets(out, (int)n, f))
            out[strcspn(out, " ")] = '\0'; /* the 1-minute figure */
        fclose(f);
    }
}

/* ---- connections (the socket layer is tests/bench/wsclient.c) ----------- */

static void sess_end(struct conn *c, int64_t to)
{
    if (c->nsess && c->sess[c->nsess - 1].to == OPEN)
        c->sess[c->nsess - 1].to = to;
}

static int start_connect(struct conn *c);

/* Closes the socket. When the close was not planned, a subscriber's session
 * ends at the highest acked seq (all of it stays owed) and it reconnects. */
static void conn_drop(struct conn *c, const char *why)
{
    if (c->ws.fd < 0)
        return;
    if (why) {
        diag(c, why, NULL, 0);
        if (c->is_pub) {
            g.fatal = 1;
        } else {
            g.unexpected_closes++;
            sess_end(c, g.acked_max);
        }
    }
    if (!c->is_pub) {
        if (c->state >= S_READY)
            g.ready--;
        else
            g.inflight--;
    }
    wsc_close(&c->ws);
    c->state = S_IDLE;
    if (why && !c->is_pub && start_connect(c) < 0)
        g.fatal = 1;
}

static int start_connect(struct conn *c)
{
    if (wsc_connect(&c->ws, c->ws.port, c->is_pub || opt.plain ? "/ws" : "/ws?batch=1") < 0)
        return -1;
    c->state = S_CONNECTING;
    if (!c->is_pub)
        g.inflight++;
    return 0;
}

/* ---- protocol ------------------------------------------------------------ */

static int seen(const struct conn *c, int64_t seq)
{
    size_t byte = (size_t)seq >> 3;
    return byte < c->seen_bytes && (c->seen[byte] >> (seq & 7) & 1);
}

static void mark_seen(struct conn *c, int64_t seq)
{
    size_t byte = (size_t)seq >> 3;
    if (byte >= c->seen_bytes) {
        size_t n = c->seen_bytes ? c->seen_bytes : 256;
        while (n <= byte)
            n *= 2;
        c->seen = xrealloc(c->seen, n);
        memset(c->seen + c->seen_bytes, 0, n - c->seen_bytes);
        c->seen_bytes = n;
    }
    c->seen[byte] |= (uint8_t)(1u << (seq & 7));
    while (c->cursor < g.sent && seen(c, c->cursor))
        c->cursor++;
}

static void sess_begin(struct conn *c)
{
    if (c->nsess == c->csess) {
        c->csess = c->csess ? c->csess * 2 : 4;
        c->sess = xrealloc(c->sess, c->csess * sizeof *c->sess);
    }
    /* owed: every seq sent from now on */
    c->sess[c->nsess++] = (struct session){.from = g.sent, .to = OPEN};
    c->cursor = g.sent;
    if (c->first_seq < 0)
        c->first_seq = g.sent;
}

static void leave(struct conn *c)
{
    static const unsigned char bye[2] = {0x03, 0xe8}; /* 1000 */
    sess_end(c, c->leave_seq);
    wsc_queue_frame(&c->ws, 0x8, bye, 2);
    wsc_flush(&c->ws); /* best effort: the socket is closed right after */
    conn_drop(c, NULL);
    g.reconnects++;
    if (start_connect(c) < 0)
        g.fatal = 1;
}

static void on_object(struct conn *c, const char *p, size_t n)
{
    const char *end = p + n;
    if (c->is_pub) {
        if (c->state == S_WELCOME && op_is(p, n, "welcome")) {
            c->state = S_READY;
            return;
        }
        const char *v = find(p, n, "\"id\":");
        int64_t id;
        if (c->state == S_READY && op_is(p, n, "ack") && v && parse_num(v, end, &id) == 0 &&
            id < g.sent && !g.acked_set[id]) {
            g.acked_set[id] = 1;
            g.acked++;
            if (id > g.acked_max)
                g.acked_max = id;
            while (g.acked_prefix < g.sent && g.acked_set[g.acked_prefix])
                g.acked_prefix++;
            return;
        }
        g.pub_errors++;
        diag(c, "got", p, n);
        return;
    }
    switch (c->state) {
    case S_WELCOME:
        if (!op_is(p, n, "welcome"))
            break;
        char buf[256];
        int k = snprintf(buf, sizeof buf,
                         "{\"op\":\"subscribe\",\"channel\":\"%s\",\"id\":1}", opt.channel);
        wsc_queue_text(&c->ws, buf, (size_t)k);
        c->state = S_SUBSCRIBING;
        wsc_flush(&c->ws);
        return;
    case S_SUBSCRIBING:
        if (!op_is(p, n, "ack"))
            break;
        c->state = S_READY;
        g.inflight--;
        g.ready++;
        sess_begin(c);
        return;
    case S_READY:
    case S_LEAVING:
        if (op_is(p, n, "message")) {
            const char *d = find(p, n, "\"data\":");
            const char *sv = d ? find(d, (size_t)(end - d), "\"seq\":") : NULL;
            int64_t seq;
            if (sv && parse_num(sv, end, &seq) == 0 && seq < g.sent) {
                mark_seen(c, seq);
                if (c->state == S_LEAVING && c->cursor > c->leave_seq)
                    leave(c);
                return;
            }
        }
        break;
    default:
        break;
    }
    g.proto_errors++;
    diag(c, "unexpected frame", p, n);
}

/* A text message: one object, or (batch) objects separated by '\n'.
 * Returns -1 when the connection is gone or was replaced (a leave). */
static int on_text(struct conn *c, const char *p, size_t n)
{
    const char *end = p + n;
    while (p < end) {
        const char *nl = c->is_pub || opt.plain ? NULL : memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        if (e > p)
            on_object(c, p, (size_t)(e - p));
        if (c->ws.fd < 0 || c->state == S_CONNECTING)
            return -1;
        p = e + 1;
    }
    return 0;
}

/* ---- what the client layer reports (wsclient.h hooks) -------------------- */

/* struct wsc is the first member of struct conn. */
#define CONN(w) ((struct conn *)(w))

static void h_opened(struct wsc *w)
{
    CONN(w)->state = S_WELCOME;
}

static void h_text(struct wsc *w, const char *p, size_t n)
{
    (void)on_text(CONN(w), p, n);
}

static void h_closed(struct wsc *w, int code, const char *reason, size_t rlen)
{
    char why[160];
    (void)reason, (void)rlen;
    snprintf(why, sizeof why, "closed by the gateway with %d", code);
    conn_drop(CONN(w), why);
}

static void h_lost(struct wsc *w, const char *why)
{
    conn_drop(CONN(w), why);
}

/* Any protocol error drops the connection (a subscriber reconnects). */
static void h_bad(struct wsc *w, const char *why, int must_close)
{
    (void)must_close;
    g.proto_errors++;
    conn_drop(CONN(w), why);
}

static void h_fatal(struct wsc *w, const char *why, const char *p, size_t n)
{
    if (why)
        diag(CONN(w), why, p, n);
    conn_drop(CONN(w), NULL);
    g.fatal = 1;
}

static void poll_once(int timeout_ms)
{
    struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(g.ep, evs, MAX_EVENTS, timeout_ms);
    if (n < 0 && errno != EINTR)
        die("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++)
        wsc_event(evs[i].data.ptr, evs[i].events);
}

/* ---- publisher and churn ------------------------------------------------- */

static void publish_next(void)
{
    int64_t seq = g.sent;
    if ((size_t)seq >= g.sent_cap) {
        size_t cap = g.sent_cap ? g.sent_cap * 2 : 65536;
        g.acked_set = xrealloc(g.acked_set, cap * sizeof *g.acked_set);
        memset(g.acked_set + g.sent_cap, 0, (cap - g.sent_cap) * sizeof *g.acked_set);
        g.sent_cap = cap;
    }
    struct conn *c = &g.pubs[seq % opt.nports];
    char buf[256];
    int n = snprintf(buf, sizeof buf,
                     "{\"op\":\"publish\",\"channel\":\"%s\",\"data\":{\"seq\":%" PRId64
                     ",\"via\":%d},\"id\":%" PRId64 "}",
                     opt.channel, seq, c->ws.port, seq);
    wsc_queue_text(&c->ws, buf, (size_t)n);
    g.sent++;
    wsc_flush(&c->ws);
}

/* Starts one reconnect: a random ready subscriber notes what it is owed. */
static void churn_one(uint64_t now)
{
    for (int tries = 0; tries < 16; tries++) {
        struct conn *c = &g.subs[rnd32() % (uint32_t)opt.subs];
        if (c->state != S_READY)
            continue;
        /* owed until it leaves: everything acked so far (by the prefix,
         * since two publishers' acks may come out of order) */
        c->leave_seq = g.acked_prefix - 1;
        c->state = S_LEAVING;
        c->leave_deadline = now + LEAVE_SLOW_NS;
        if (c->cursor > c->leave_seq)
            leave(c);
        return;
    }
}

/* Counts the leaving subscribers still waiting after LEAVE_SLOW_NS (a sign
 * of a backlog, or of a lost message: such a subscriber never leaves). */
static void leave_slow(uint64_t now)
{
    for (int i = 0; i < opt.subs; i++) {
        struct conn *c = &g.subs[i];
        if (c->state == S_LEAVING && c->leave_deadline && now >= c->leave_deadline) {
            g.slow_leaves++;
            c->leave_deadline = 0;
        }
    }
}

/* ---- samples ------------------------------------------------------------- */

struct sample {
    double t; /* minutes since the run began */
    long rss[MAX_PORTS];
};

static struct sample *samples;
static int nsamples;

static void take_sample(double minutes)
{
    if (nsamples == MAX_SAMPLES)
        return;
    struct sample *s = &samples[nsamples++];
    s->t = minutes;
    for (int i = 0; i < opt.npids; i++)
        s->rss[i] = proc_rss_kb(opt.pids[i]);
    if (opt.verbose) {
        fprintf(stderr, "soak: %5.1f min  ready %d  sent %" PRId64 "  reconnects %" PRIu64
                        "  rss",
                minutes, g.ready, g.sent, g.reconnects);
        for (int i = 0; i < opt.npids; i++)
            fprintf(stderr, " %ld", s->rss[i]);
        fprintf(stderr, " KB\n");
    }
}

/* The sample taken nearest to t (minutes). */
static const struct sample *sample_at(double t)
{
    const struct sample *best = &samples[0];
    for (int i = 1; i < nsamples; i++) {
        double d = samples[i].t - t, e = best->t - t;
        if (d * d < e * e)
            best = &samples[i];
    }
    return best;
}

/* RSS growth (KB/min) of gateway gw over the second half of a run of
 * run_min minutes: the smaller of its rates over the two quarters (the
 * last one ends with the sample taken after the drain). */
static double slope(int gw, double run_min)
{
    const struct sample *a = sample_at(run_min / 2), *b = sample_at(run_min * 3 / 4),
                        *c = &samples[nsamples - 1];
    if (a->rss[gw] < 0 || b->rss[gw] < 0 || c->rss[gw] < 0 || !(a->t < b->t && b->t < c->t))
        return 0;
    double q3 = (double)(b->rss[gw] - a->rss[gw]) / (b->t - a->t);
    double q4 = (double)(c->rss[gw] - b->rss[gw]) / (c->t - b->t);
    return q3 < q4 ? q3 : q4;
}

/* ---- main ---------------------------------------------------------------- */

static void usage(void)
{
    printf("usage: soak --port P [--port P2 ...] [--gateway-pid PID ...] [options]\n"
           "  --subs N            subscribers, round-robin over the ports (default 2000)\n"
           "  --minutes M         length of the run phase (default 1)\n"
           "  --rate R            messages per second (default 50)\n"
           "  --churn F           fraction of subscribers reconnecting per second (0.01)\n"
           "  --sample S          seconds between RSS samples (default 1)\n"
           "  --max-slope K       RSS growth allowed over the second half, KB/min (256)\n"
           "  --drain-timeout S   wait for the last deliveries at most S s (60)\n"
           "  --setup-timeout S   connect+subscribe limit (120)\n"
           "  --aux-pid PID       also report the CPU of this process (Redis)\n"
           "  --channel C         (default soak)\n"
           "  --plain             subscribers without ?batch=1 (one frame per message)\n"
           "  --verbose           a progress line per sample\n");
}

static void parse_args(int argc, char **argv)
{
    static const struct option lo[] = {
        {"port", 1, 0, 'p'},        {"gateway-pid", 1, 0, 'g'}, {"aux-pid", 1, 0, 'a'},
        {"subs", 1, 0, 'n'},        {"minutes", 1, 0, 'm'},     {"rate", 1, 0, 'r'},
        {"churn", 1, 0, 'c'},       {"sample", 1, 0, 's'},      {"max-slope", 1, 0, 'x'},
        {"drain-timeout", 1, 0, 'd'}, {"setup-timeout", 1, 0, 'u'},
        {"channel", 1, 0, 'C'},     {"verbose", 0, 0, 'v'},     {"help", 0, 0, 'h'},
        {"plain", 0, 0, 'P'},
        {0, 0, 0, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (o) {
        case 'p':
            if (opt.nports == MAX_PORTS)
                die("at most %d --port", MAX_PORTS);
            opt.ports[opt.nports++] = (int)num_arg("port", optarg, 1, 65535);
            break;
        case 'g':
            if (opt.npids == MAX_PORTS)
                die("at most %d --gateway-pid", MAX_PORTS);
            opt.pids[opt.npids++] = (pid_t)num_arg("gateway-pid", optarg, 1, 1 << 30);
            break;
        case 'a': opt.aux = (pid_t)num_arg("aux-pid", optarg, 1, 1 << 30); break;
        case 'n': opt.subs = (int)num_arg("subs", optarg, 1, 1000000); break;
        case 'm': opt.minutes = num_arg("minutes", optarg, 0.05, 10000); break;
        case 'r': opt.rate = num_arg("rate", optarg, 0.1, 10000); break;
        case 'c': opt.churn = num_arg("churn", optarg, 0, 1); break;
        case 's': opt.sample = num_arg("sample", optarg, 0.1, 3600); break;
        case 'x': opt.max_slope = num_arg("max-slope", optarg, 0, 1e9); break;
        case 'd': opt.drain_timeout = num_arg("drain-timeout", optarg, 1, 3600); break;
        case 'u': opt.setup_timeout = num_arg("setup-timeout", optarg, 1, 3600); break;
        case 'C': opt.channel = optarg; break;
        case 'v': opt.verbose = 1; break;
        case 'P': opt.plain = 1; break;
        case 'h': usage(); exit(0);
        default: usage(); exit(2);
        }
    }
    if (optind != argc || !opt.nports)
        die("need --port (see --help)");
}

/* Every subscriber connected and holding everything its session owes. */
static int all_have_all(void)
{
    for (int i = 0; i < opt.subs; i++) {
        struct conn *c = &g.subs[i];
        if (c->state < S_READY || c->cursor < g.sent)
            return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    wsc_env.prog = "soak";
    parse_args(argc, argv);
    raise_nofile(opt.subs + opt.nports + 64);
    g.ep = wsc_init(MAX_FRAME, (struct wsc_hooks){h_opened, h_text, h_closed, h_lost,
                                                  h_bad, h_fatal});
    g.subs = calloc((size_t)opt.subs, sizeof *g.subs);
    samples = calloc(MAX_SAMPLES, sizeof *samples);
    if (!g.subs || !samples)
        die("out of memory");
    g.acked_max = -1;
    char load0[32], load1[32];
    loadavg(load0, sizeof load0);

    /* 1. setup */
    uint64_t t0 = now_ns();
    for (int i = 0; i < opt.nports; i++) {
        struct conn *c = &g.pubs[i];
        c->is_pub = 1;
        c->ws.port = opt.ports[i];
        if (start_connect(c) < 0)
            return 1;
    }
    int next = 0;
    while (g.ready < opt.subs && !g.fatal) {
        while (next < opt.subs && g.inflight < PARALLEL) {
            struct conn *c = &g.subs[next];
            c->ws.port = opt.ports[next % opt.nports];
            c->first_seq = -1;
            next++;
            if (start_connect(c) < 0)
                return 1;
        }
        if (now_ns() - t0 > (uint64_t)(opt.setup_timeout * NS)) {
            fprintf(stderr, "soak: setup timed out: %d of %d subscribed\n", g.ready, opt.subs);
            return 1;
        }
        poll_once(100);
    }
    for (int i = 0; i < opt.nports && !g.fatal; i++)
        while (g.pubs[i].state != S_READY && !g.fatal) {
            if (now_ns() - t0 > (uint64_t)(opt.setup_timeout * NS))
                die("publisher on port %d not ready", g.pubs[i].ws.port);
            poll_once(100);
        }
    if (g.fatal) {
        fprintf(stderr, "soak: setup failed\n");
        return 1;
    }
    double setup_s = (double)(now_ns() - t0) / 1e9;
    printf("soak: setup %.1f s: %d subscribers on %d gateway(s), load %s\n", setup_s,
           opt.subs, opt.nports, load0);
    fflush(stdout);

    /* 2. run */
    double cpu0[MAX_PORTS], aux0 = opt.aux ? proc_cpu_s(opt.aux) : 0, self0 = self_cpu_s();
    for (int i = 0; i < opt.npids; i++)
        cpu0[i] = proc_cpu_s(opt.pids[i]);
    uint64_t start = now_ns();
    uint64_t run_ns = (uint64_t)(opt.minutes * 60 * NS);
    uint64_t pub_interval = (uint64_t)(NS / opt.rate);
    double churn_per_ns = opt.churn * opt.subs / (double)NS;
    uint64_t churned = 0, sampled = 0, sample_ns = (uint64_t)(opt.sample * NS);
    uint64_t last_timeout_scan = start;
    take_sample(0);
    sampled = 1;
    for (;;) {
        uint64_t now = now_ns(), el = now - start;
        if (el >= run_ns || g.fatal)
            break;
        while ((uint64_t)g.sent * pub_interval <= el)
            publish_next();
        uint64_t due_churn = (uint64_t)(churn_per_ns * (double)el);
        for (; churned < due_churn; churned++)
            churn_one(now);
        if (el >= sampled * sample_ns) {
            take_sample((double)el / 60e9);
            sampled++;
        }
        if (now - last_timeout_scan > NS / 10) {
            leave_slow(now);
            last_timeout_scan = now;
        }
        /* wake for the next publish, churn step or sample */
        uint64_t wake = (uint64_t)g.sent * pub_interval;
        if (churn_per_ns > 0) {
            uint64_t cw = (uint64_t)((double)(churned + 1) / churn_per_ns);
            if (cw < wake)
                wake = cw;
        }
        if (sampled * sample_ns < wake)
            wake = sampled * sample_ns;
        int ms = wake > el ? (int)((wake - el + 999999) / 1000000) : 0;
        poll_once(ms > 100 ? 100 : ms);
    }
    uint64_t run_end = now_ns();
    take_sample((double)(run_end - start) / 60e9);

    /* 3. drain: every publish acked, every subscriber back and holding the
     * last seq. */
    uint64_t drain_deadline = run_end + (uint64_t)(opt.drain_timeout * NS);
    while (!g.fatal && now_ns() < drain_deadline) {
        if (g.acked == g.sent && all_have_all())
            break;
        poll_once(50);
    }
    double drain_s = (double)(now_ns() - run_end) / 1e9;
    double run_min = (double)(run_end - start) / 60e9;
    take_sample((double)(now_ns() - start) / 60e9); /* drained: no backlog in it */
    double gw_cpu[MAX_PORTS];
    for (int i = 0; i < opt.npids; i++)
        gw_cpu[i] = proc_cpu_s(opt.pids[i]) - cpu0[i];
    double aux_cpu = opt.aux ? proc_cpu_s(opt.aux) - aux0 : 0, self_cpu = self_cpu_s() - self0;
    loadavg(load1, sizeof load1);

    /* Accounting. */
    for (int i = 0; i < opt.subs; i++)
        sess_end(&g.subs[i], g.sent - 1);
    uint64_t owed = 0, delivered = 0, lost_owed = 0, pending = 0;
    uint64_t in_gap = 0, gap_got = 0, gap_lost = 0, worst = 0;
    int worst_sub = -1;
    for (int i = 0; i < opt.subs; i++) {
        struct conn *c = &g.subs[i];
        if (c->first_seq < 0)
            continue;
        uint64_t lost_here = 0;
        /* An owed seq that is missing is lost when the session got a later
         * seq from the same publisher (one connection, one Redis
         * connection, one order); else it was still on its way when the
         * session ended (only the drain timing out ends one that way). */
        for (size_t k = 0; k < c->nsess; k++) {
            int later[MAX_PORTS] = {0};
            int64_t to = c->sess[k].to < g.sent ? c->sess[k].to : g.sent - 1;
            for (int64_t s = to; s >= c->sess[k].from; s--) {
                owed++;
                if (seen(c, s))
                    later[s % opt.nports] = 1;
                else if (later[s % opt.nports])
                    lost_owed++, lost_here++;
                else
                    pending++;
            }
        }
        size_t k = 0;
        for (int64_t s = c->first_seq; s < g.sent; s++) {
            while (k < c->nsess && c->sess[k].to < s)
                k++;
            int got = seen(c, s);
            delivered += (uint64_t)got;
            if (!(k < c->nsess && s >= c->sess[k].from)) {
                in_gap++;
                if (got)
                    gap_got++;
                else
                    gap_lost++;
            }
        }
        if (lost_here > worst)
            worst = lost_here, worst_sub = i;
    }

    printf("soak: run %.2f min (+ drain %.1f s) at %.0f msg/s, churn %.1f%%/s; load %s at the "
           "start, %s at the end\n",
           run_min, drain_s, opt.rate, opt.churn * 100, load0, load1);
    printf("published %" PRId64 " (acked %" PRId64 "), reconnects %" PRIu64
           " (leaves that waited over 5 s for what they were owed: %" PRIu64 ")\n",
           g.sent, g.acked, g.reconnects, g.slow_leaves);
    printf("deliveries: owed %" PRIu64 ", delivered %" PRIu64 " (of which %" PRIu64
           " published in a reconnect gap)\n",
           owed, delivered, gap_got);
    printf("lost in reconnect gaps %" PRIu64 " of %" PRIu64
           " (expected: no recovery yet), lost outside gaps %" PRIu64 "\n",
           gap_lost, in_gap, lost_owed);
    if (pending)
        printf("NOT DELIVERED when the drain timed out: %" PRIu64
               " owed messages (a backlog: the machine could not keep up)\n",
               pending);
    if (lost_owed)
        printf("  worst subscriber #%d (port %d): %" PRIu64 " owed messages missing\n",
               worst_sub, g.subs[worst_sub].ws.port, worst);
    printf("closed by a gateway %" PRIu64 ", protocol errors %" PRIu64
           ", publisher errors %" PRIu64 "\n",
           g.unexpected_closes, g.proto_errors, g.pub_errors);
    printf("RSS samples (KB) taken every %.1f s (some shown), the last after the drain:\n  min  ",
           opt.sample);
    for (int j = 0; j < opt.npids; j++)
        printf(" %10s%d", "gw", j + 1);
    printf("\n");
    int every = nsamples > 20 ? nsamples / 10 : 1; /* the table stays short */
    for (int i = 0; i < nsamples; i++) {
        if (i % every && i != nsamples - 1)
            continue;
        printf("  %5.2f", samples[i].t);
        for (int j = 0; j < opt.npids; j++)
            printf(" %11ld", samples[i].rss[j]);
        printf("\n");
    }
    int bad_slope = 0;
    for (int j = 0; j < opt.npids; j++) {
        double sl = slope(j, run_min);
        int bad = sl > opt.max_slope;
        bad_slope |= bad;
        printf("gw%d pid %d: RSS %ld -> %ld KB, slope over the second half (the "
               "lower of its quarters) %+.1f KB/min "
               "(limit %.0f)%s; CPU %.1f s = %.1f%% of a core\n",
               j + 1, (int)opt.pids[j], samples[0].rss[j], samples[nsamples - 1].rss[j], sl,
               opt.max_slope, bad ? " TOO STEEP" : "", gw_cpu[j],
               100 * gw_cpu[j] / (run_min * 60 + drain_s));
    }
    if (opt.aux)
        printf("redis pid %d: CPU %.1f s = %.1f%% of a core\n", (int)opt.aux, aux_cpu,
               100 * aux_cpu / (run_min * 60 + drain_s));
    printf("driver: CPU %.1f s = %.1f%% of a core\n", self_cpu,
           100 * self_cpu / (run_min * 60 + drain_s));

    int fail = g.fatal || lost_owed || pending || bad_slope || g.unexpected_closes || g.acked != g.sent ||
               g.proto_errors || g.pub_errors;
    printf("soak: %s\n", fail ? "FAIL" : "ok");
    return fail ? 1 : 0;
}

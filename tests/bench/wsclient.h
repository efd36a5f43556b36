/* wsclient.h - the minimal non-blocking RFC 6455 client shared by the load
 * generator (tests/bench/wsbench.c) and the soak driver (tests/faults/soak.c).
 *
 * One thread, one epoll set, raw sockets to 127.0.0.1: connect, handshake
 * (fixed key, accept value checked), masked client frames, a parser for the
 * server's unmasked frames (7/16/64-bit lengths, partial reads, fragments,
 * ping -> pong), plus the small helpers both programs need (clock, /proc
 * sampling, argument parsing, tiny JSON field scanners).
 *
 * Ownership: each program owns its connections. It embeds struct wsc as the
 * FIRST member of its own per-connection struct (so a struct wsc pointer is
 * also a pointer to that struct) and keeps its application state beside it.
 * The module owns nothing but the buffers inside struct wsc; the program
 * frees them (wsc_free). What happens to a connection - counting, closing,
 * reconnecting - is the program's decision, reached through the hooks in
 * wsc_env, which wsc_init fills in before the first wsc_connect. */
#ifndef WSCLIENT_H
#define WSCLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The Sec-WebSocket-Accept every upgrade must answer with: wsc_connect
 * always sends the same key. */
#define WSC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

struct wsc {
    int fd; /* -1 when closed */
    int port;
    unsigned gen; /* bumped by every wsc_connect: hooks may replace a connection */
    unsigned char out_armed;  /* EPOLLOUT in the interest set */
    unsigned char connecting; /* TCP connect under way */
    unsigned char handshaking; /* upgrade request sent, 101 not yet read */
    const char *target; /* request target of the upgrade, e.g. /ws?batch=1 */
    char *rbuf;
    size_t rlen, rcap;
    char *wbuf;
    size_t woff, wlen, wcap;
    char *frag; /* reassembly of a fragmented text message */
    size_t flen, fcap;
};

/* What the program decides; a hook that closes the connection calls
 * wsc_close, and may reconnect it (wsc_connect) at once. */
struct wsc_hooks {
    /* The connection upgraded: frames follow. */
    void (*opened)(struct wsc *c);
    /* One whole text message (fragments joined). */
    void (*text)(struct wsc *c, const char *p, size_t n);
    /* The server sent a close frame (code 1005 when it carried none). */
    void (*closed)(struct wsc *c, int code, const char *reason, size_t rlen);
    /* The socket failed (write failed, reset, EOF): the program closes it. */
    void (*lost)(struct wsc *c, const char *why);
    /* The server broke the protocol; must_close: the stream cannot be
     * parsed on, close it; otherwise the program may go on reading. */
    void (*bad)(struct wsc *c, const char *why, int must_close);
    /* Connect or handshake failed: the run cannot go on. why (or NULL) and
     * the bytes p..n explain it. */
    void (*fatal)(struct wsc *c, const char *why, const char *p, size_t n);
};

struct wsc_env {
    const char *prog; /* prefix of messages on stderr */
    int ep;           /* the epoll set every connection joins */
    size_t max_frame; /* larger server frames or messages: bad() */
    uint64_t rng;     /* xorshift state for masking keys (seed it non-zero) */
    uint32_t src_addr; /* source address to bind (host order), 0: the kernel's;
                        * another 127.0.0.x gives another ~28k ephemeral ports */
    struct wsc_hooks on;
};
extern struct wsc_env wsc_env;

/* ---- helpers ---- */
uint64_t now_ns(void); /* CLOCK_MONOTONIC */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn)); /* exit 2 */
void *xrealloc(void *p, size_t n);
uint32_t rnd32(void);
/* --name's value v as a number in lo..hi, or die. */
double num_arg(const char *name, const char *v, double lo, double hi);
/* Raises the soft RLIMIT_NOFILE to the hard one; dies below need. */
void raise_nofile(int need);
/* utime and stime of pid in clock ticks; -1 if unreadable. */
int proc_cpu(pid_t pid, uint64_t *ut, uint64_t *st);
/* VmRSS of pid in kB; -1 if unreadable. */
long proc_rss_kb(pid_t pid);

/* ---- JSON scanning (the gateway's replies are flat and known) ---- */
/* Just past needle in p[0..n), or NULL. */
const char *find(const char *p, size_t n, const char *needle);
/* A JSON number at p (bounded by end) as int64; 0 on success. */
int parse_num(const char *p, const char *end, int64_t *out);
int op_is(const char *p, size_t n, const char *op);

/* ---- connections ---- */
/* Creates the epoll set every connection joins (returned), seeds the
 * masking keys and installs the program's hooks; dies on failure. */
int wsc_init(size_t max_frame, struct wsc_hooks on);
/* Starts a non-blocking connect to 127.0.0.1:port (from wsc_env.src_addr
 * when set); the upgrade request
 * (GET <target>) goes out once it completes. -1 (with a message) when
 * the socket cannot be made. */
int wsc_connect(struct wsc *c, int port, const char *target);
/* Leaves epoll and closes; buffers are kept (emptied) for a reconnect. */
void wsc_close(struct wsc *c);
void wsc_free(struct wsc *c);
/* Handles epoll events ev for c (data.ptr of the event). */
void wsc_event(struct wsc *c, uint32_t ev);
/* Writes what is queued; arms EPOLLOUT while something is left. */
void wsc_flush(struct wsc *c);
/* Queues one masked client frame (FIN set); wsc_flush sends it. */
void wsc_queue_frame(struct wsc *c, int opcode, const void *payload, size_t len);
void wsc_queue_text(struct wsc *c, const char *s, size_t len);

#endif

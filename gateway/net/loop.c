/* loop.c - see loop.h. */
#include "net/loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <libwebsockets.h>
#include <openssl/ssl.h>

#include "core/clock.h"
#include "log.h"
#include "net/rxwatch.h"
#include "net/sendq.h"

/* lws's timers run when the first is due, and at least this often: a
 * backstop should a timer ever be set where the loop does not look. */
#define TICK_MAX_USEC 1000000
#define FD_RESERVE 32           /* descriptors kept for Redis, files, logs */
#define ACCEPT_PAUSE_MIN_MS 100 /* listener paused after EMFILE, doubling */
#define ACCEPT_PAUSE_MAX_MS 1000
#define WARN_EVERY_US 10000000  /* one descriptor warning per 10 s */
#define ACCEPT_BURST 32         /* accepts in a row before the others' turn */
#define LINGER_USEC 2000000     /* a closed WebSocket drains input this long */
/* One release of the write window frees every socket due this soon too:
 * libevent's timers have millisecond resolution anyway, and one timer then
 * serves a whole fan-out's sockets, not one wake-up each. */
#define WINDOW_SLACK_USEC 1000

/* A WebSocket lws has closed, kept on a dup of its descriptor: our side is
 * shut down (FIN after the close frame) and input is read and discarded
 * until the peer's EOF or the linger deadline. Closing at once with the
 * peer's data still arriving would answer with a reset, which destroys the
 * close frame in flight at the peer. */
struct lingerer {
    struct loop *loop;
    struct event *ev;
    struct lingerer *prev, *next;
    uint64_t deadline_us;
    int fd;
};

/* Sockets in the order they were listed; an fdev is on at most one list. */
struct fdlist {
    struct fdev *head, *tail;
};

struct loop {
    struct event_base *base;
    struct lws_context *ctx;
    struct lws_vhost *vh;
    struct evconnlistener *listener;
    struct event *tick;       /* one-shot: when lws's first timer is due */
    lws_usec_t tick_due;      /* when tick fires; 0: not pending */
    lws_dll2_owner_t *timers; /* lws's timer lists, LWS_COUNT_PT_SUL_OWNERS */
    struct event *resume;        /* re-enables the listener (EMFILE, burst) */
    unsigned pause_ms;           /* the next pause; grows while EMFILE lasts */
    unsigned burst;              /* accepts since the listener last yielded */
    unsigned max_sockets;        /* client sockets we may hold: nofile - reserve */
    unsigned nsockets;           /* adopted and lingering client sockets */
    uint64_t warned_us;          /* last descriptor warning */
    unsigned long unwarned;      /* refusals since it */
    struct lingerer *lingering;
    struct fdlist ready;             /* sockets loop_write_soon() will write */
    struct event *flush;             /* no fd: writes them after this turn's events */
    int (*writer)(struct lws *wsi);  /* what loop_write_soon() was given */
    struct sendq *sendq;  /* on_flush's send()s in one syscall; NULL: one each */
    int flushing;         /* inside on_flush: loop_send() queues on sendq */
    uint64_t *submits, *batched; /* counters (loop_count_sends) */
    struct fdlist held;              /* sockets the write window holds back */
    struct event *release;           /* timer: moves held sockets due to ready */
    uint64_t window_us;              /* the write window; 0: off */
    uint64_t *held_total;            /* bumped per socket held; NULL: not counted */
    int port;
    int sndbuf;
    int tls; /* adopt with LWS_ADOPT_ALLOW_SSL */
};

/* One per accepted socket, with its one libevent event in the same
 * allocation: the socket's EV_READ and EV_WRITE edges and the write rounds
 * we make active ourselves all arrive there (on_event), the flags below
 * saying which are wanted. Three separately allocated events cost 432 bytes
 * a connection; this one, 128. */
struct fdev {
    struct loop *loop;
    struct lws *wsi; /* NULL once lws destroyed it */
    struct fdlist *list;             /* loop->ready, loop->held or NULL */
    struct fdev *list_prev, *list_next;
    uint64_t sent_us;                /* our last send() on it (clock_us) */
    uint64_t due_us;                 /* held: when the window releases it */
    int fd;
    unsigned char write_armed;  /* an EV_WRITE edge runs on_write */
    unsigned char want_write;   /* a writable callback was asked for */
    unsigned char kicked;       /* a write round is pending (made active) */
    unsigned char keep_writable;
    unsigned char in_service;   /* inside lws_service_fd() for this fd */
    unsigned char reset;        /* closes with a reset: no lingering */
    unsigned char counted;      /* holds one of loop->nsockets */
    unsigned char queued;       /* a send of it waits in loop->sendq */
    unsigned char was_soon;     /* its last message came within a window of a send */
    unsigned char lws_out;      /* lws may want a write round: see loop_lws_thread_id */
    unsigned char websocket;    /* a WebSocket writable callback reached loop_lws_writeable */
    unsigned char called_back;  /* a writable callback ran in this write round */
    unsigned char owed;         /* a round asked for went to a pong: the callback is owed */
    unsigned char peer_shut;    /* the peer shut its side (EV_CLOSED): an EOF is due */
    max_align_t ev[];           /* the struct event: event_get_struct_event_size() */
};

static struct event *ev_of(struct fdev *f) { return (struct event *)f->ev; }

static void list_unlink(struct fdev *f)
{
    struct fdlist *l = f->list;
    if (!l)
        return;
    if (f->list_prev) f->list_prev->list_next = f->list_next; else l->head = f->list_next;
    if (f->list_next) f->list_next->list_prev = f->list_prev; else l->tail = f->list_prev;
    f->list_prev = f->list_next = NULL;
    f->list = NULL;
}

static void list_append(struct fdlist *l, struct fdev *f)
{
    f->list = l;
    f->list_prev = l->tail;
    if (l->tail)
        l->tail->list_next = f;
    else
        l->head = f;
    l->tail = f;
}

static void fdev_free(struct fdev *f)
{
    list_unlink(f);
    if (f->counted)
        f->loop->nsockets--;
    event_del(ev_of(f));
    free(f);
}

/* Logs a descriptor shortage at most once per WARN_EVERY_US, with the
 * number of refusals since the last line. */
static void warn_shortage(struct loop *loop, const char *what)
{
    uint64_t now = clock_us();
    loop->unwarned++;
    if (loop->warned_us && now - loop->warned_us < WARN_EVERY_US)
        return;
    log_warn("%s: %lu connection(s) refused or deferred since the last warning "
             "(%u client sockets open, limit %u)", what, loop->unwarned,
             loop->nsockets, loop->max_sockets);
    loop->warned_us = now;
    loop->unwarned = 0;
}

/* Made active, the event runs on_write after the events already ready
 * (once, however many kicks: libevent merges activations). */
static void kick_write(struct fdev *f)
{
    f->kicked = 1;
    event_active(ev_of(f), EV_WRITE, 1);
}

/* The event always listens for EV_WRITE edges too (edge-triggered, so no
 * cost while nothing is written: the kernel raises one only after a write
 * found the socket full); these flags only say whether one runs on_write,
 * which spares an epoll_ctl() per partial write. */
static void arm_write(struct fdev *f) { f->write_armed = 1; }

static void disarm_write(struct fdev *f) { f->write_armed = 0; }

struct event_base *loop_base_new(void)
{
    struct event_config *cfg = event_config_new();
    if (!cfg)
        return NULL;
    /* Writable callbacks re-activate themselves while a queue drains; poll
     * the sockets again after this many so reads are never starved. */
    struct timeval max_interval = {0, 10000};
    event_config_set_max_dispatch_interval(cfg, &max_interval, 256, 0);
    /* Edge-triggered socket events that say when the peer shut its side
     * (epoll: EPOLLET, EPOLLRDHUP): see on_read. */
    event_config_require_features(cfg, EV_FEATURE_ET | EV_FEATURE_EARLY_CLOSE);
    struct event_base *base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

/* Sets the tick for lws's first timer (each list is sorted: its head),
 * or for now when lws holds read data to feed, unless it is due sooner
 * already. Called after anything that may have set an lws timer. */
static void sync_tick(struct loop *loop)
{
    lws_usec_t due = 0;
    for (int i = 0; i < LWS_COUNT_PT_SUL_OWNERS; i++) {
        struct lws_dll2 *d = lws_dll2_get_head(&loop->timers[i]);
        lws_sorted_usec_list_t *sul = lws_container_of(d, lws_sorted_usec_list_t, list);
        if (d && (!due || sul->us < due))
            due = sul->us;
    }
    if (!lws_service_adjust_timeout(loop->ctx, 1, 0))
        due = 1; /* read data to feed: at once */
    if (loop->tick_due && (!due || due >= loop->tick_due))
        return; /* the usual case: nothing sooner than the pending tick */
    lws_usec_t now = lws_now_usecs();
    if (!due || due > now + TICK_MAX_USEC)
        due = now + TICK_MAX_USEC;
    lws_usec_t wait = due > now ? due - now : 0;
    struct timeval tv = {(time_t)(wait / 1000000), (suseconds_t)(wait % 1000000)};
    if (event_add(loop->tick, &tv) == 0)
        loop->tick_due = due;
}

/* Runs lws on one fd; returns 0 when the wsi survived, else frees f. */
static int service(struct fdev *f, short revents)
{
    struct loop *loop = f->loop;
    struct lws_pollfd pfd = {.fd = f->fd, .events = POLLIN | POLLOUT,
                             .revents = revents};
    f->in_service = 1;
    lws_service_fd(loop->ctx, &pfd);
    f->in_service = 0;
    sync_tick(loop);
    if (f->wsi)
        return 0;
    fdev_free(f);
    return -1;
}

/* What recv() would return next: 1 data, 0 the peer's EOF, -1 nothing yet,
 * -2 an error such as a reset. */
static int peek_input(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n >= 0)
        return (int)n;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -1 : -2;
}

/* Input lws has yet to take after a read round: decrypted bytes OpenSSL
 * holds (see loop_use_tls), or anything on the socket, an EOF or error
 * included (lws reads a bounded buffer per round). What lws's recv() said
 * (rx, see net/rxwatch.h) spares the peek: a read that filled lws's buffer
 * may have left more, one that took less emptied the socket, and then only
 * an EOF that arrived with the data is still to be read. */
static int input_left(const struct fdev *f, enum rxwatch_result rx)
{
    SSL *ssl = f->loop->tls ? lws_get_ssl(f->wsi) : NULL;
    if ((ssl && SSL_pending(ssl) > 0) || rx == RXWATCH_FILLED)
        return 1;
    if (rx == RXWATCH_DRAINED && !f->peer_shut)
        return 0;
    return peek_input(f->fd) != -1; /* TLS, or lws read nothing, or an EOF is due */
}

/* The socket's events are edge-triggered: a level-triggered event stays on
 * the kernel's ready list until its callback has run, and every
 * epoll_wait() polls that whole list again, so when thousands of peers hung
 * up at once each close cost more the more were waiting. An edge is not
 * repeated, so input lws leaves behind is serviced again from here. A write
 * round follows only when lws asked for one meanwhile (a pong, a close
 * reply, a handshake answer: see loop_lws_thread_id), or before the
 * socket's first WebSocket writable callback (HTTP, the upgrade).
 * Returns 0 when the wsi survived, else f is freed. */
static int on_read(struct fdev *f, short what)
{
    if (what & EV_CLOSED)
        f->peer_shut = 1;
    rxwatch_begin(f->fd);
    int rc = service(f, POLLIN);
    enum rxwatch_result rx = rxwatch_end();
    if (rc < 0)
        return -1;
    if (f->lws_out || !f->websocket) {
        if (f->owed) /* this read's pong may take the next round too */
            f->want_write = 1;
        kick_write(f);
    }
    if (input_left(f, rx))
        event_active(ev_of(f), EV_READ, 1); /* after the other ready events */
    return 0;
}

static int writable_now(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLOUT);
}

/* Waits until the socket takes more (lws holds a partial write or serves a
 * file) before on_write runs again. */
static void await_writable(struct fdev *f)
{
    arm_write(f); /* the socket's next edge says it takes more, */
    if (writable_now(f->fd))
        kick_write(f); /* but none comes while it still does (lws
                        * writes one TLS record, one file chunk a round) */
}

/* Runs from a real EV_WRITE (socket writable again after a partial write, or
 * lws serving a file) or from kick_write() (a writable callback was asked
 * for: no syscall needed when the socket is presumed writable). Returns 0
 * when the wsi survived, else f is freed. */
static int on_write(struct fdev *f)
{
    int wanted = f->want_write;
    f->want_write = 0;
    f->kicked = 0;
    f->called_back = 0;
    int had_partial = lws_partial_buffered(f->wsi);
    if (service(f, POLLOUT) < 0)
        return -1;
    if (f->keep_writable || lws_partial_buffered(f->wsi)) {
        await_writable(f);
        return 0;
    }
    disarm_write(f);
    /* lws flushes a partial write, or sends the pong a client's ping
     * asked for, without calling the user back: the next round is the
     * writable callback it owes. The round after a flush is owed one as a
     * kick is, so a pong that takes it is followed by another; the
     * callback stays owed until it runs, so a ping read meanwhile, whose
     * pong takes that round in turn, is followed by another too (on_read).
     * After the callback, the same round may want POLLOUT again, which
     * lws_out says: input lws kept from the upgrade request's segment asks
     * for a pong or a close reply, or a completed keep-alive transaction
     * for the round that lets lws serve the next request, maybe already
     * read. */
    if (had_partial)
        f->want_write = 1;
    int lost = wanted && f->websocket && !f->called_back;
    if (lost)
        f->owed = 1;
    if (f->want_write || lost || (f->called_back && f->lws_out))
        kick_write(f);
    return 0;
}

/* Every event of the socket: a write round first when one is owed, as the
 * kick that asked for it came first; then the input. An EV_WRITE edge
 * nobody armed for (it comes along with each read) is ignored. */
static void on_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct fdev *f = arg;
    if ((f->kicked || (what & EV_WRITE && f->write_armed)) && on_write(f) < 0)
        return;
    if (what & EV_READ)
        on_read(f, what);
}

/* Nothing pending on f: no write round asked for or under way, no partial
 * write held by lws, no file being served, not inside lws's service of it. */
static int idle(const struct fdev *f)
{
    return !f->in_service && !f->queued && !f->want_write && !f->kicked &&
           !f->write_armed && !f->keep_writable && !lws_partial_buffered(f->wsi);
}

/* Lists f for the flush after this turn's events. */
static void make_ready(struct fdev *f)
{
    struct loop *loop = f->loop;
    if (!loop->ready.head)
        event_active(loop->flush, EV_WRITE, 1);
    list_append(&loop->ready, f);
}

/* Sets the release timer for the first held socket, or for now when it is
 * due already. */
static void arm_release(struct loop *loop, uint64_t now)
{
    uint64_t due = loop->held.head->due_us;
    uint64_t wait = due > now ? due - now : 0;
    struct timeval tv = {(time_t)(wait / 1000000), (suseconds_t)(wait % 1000000)};
    evtimer_add(loop->release, &tv);
}

int loop_write_soon(struct lws *wsi, int (*write)(struct lws *wsi))
{
    struct fdev *f = lws_get_opaque_user_data(wsi);
    if (!f || (!f->list && !idle(f)))
        return 0;
    if (f->list) /* listed already: what is queued meanwhile leaves with it */
        return 1;
    struct loop *loop = f->loop;
    loop->writer = write;
    uint64_t now = loop->window_us ? clock_us() : 0;
    int soon = loop->window_us && now - f->sent_us < loop->window_us;
    int busy = soon && f->was_soon;
    f->was_soon = (unsigned char)soon;
    if (!busy) {
        make_ready(f);
        return 1;
    }
    /* The second message in a row to come less than a window after a
     * send (one alone is a slow stream meeting a late fan-out, which
     * holding would only delay): held until a window after that write, so
     * what comes meanwhile leaves with it in one send(). The due time is
     * fixed now: a write through a writable callback meanwhile (lws's own
     * round) does not push it, nor those held after it, back. */
    int first = !loop->held.head;
    f->due_us = f->sent_us + loop->window_us;
    list_append(&loop->held, f);
    if (loop->held_total)
        (*loop->held_total)++;
    if (first)
        arm_release(loop, now);
    return 1;
}

/* After a write that did not complete: lws holds the rest (the socket
 * says when it takes more) or the write failed (lws closes it soon). */
static void after_write(struct fdev *f, int rc)
{
    if (rc < 0) {
        lws_set_timeout(f->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        sync_tick(f->loop);
    } else if (lws_partial_buffered(f->wsi)) {
        await_writable(f); /* on_write flushes it, then owes the writable round */
    }
}

/* A queued send's result: what the socket did not take goes to lws as
 * loop_send() would have given it. */
static void on_sent(void *arg, void *tag, const unsigned char *buf, size_t len, ssize_t res)
{
    (void)arg;
    struct fdev *f = tag;
    f->queued = 0;
    if (!f->wsi) { /* lws destroyed it meanwhile */
        fdev_free(f);
        return;
    }
    if (res == (ssize_t)len)
        return;
    size_t sent = res > 0 ? (size_t)res : 0;
    after_write(f, lws_write(f->wsi, (unsigned char *)buf + sent, len - sent,
                             LWS_WRITE_HTTP) < 0 ? -1 : 0);
}

/* Runs after the events that made sockets ready (a read from Redis may
 * carry many messages: each socket then gets all of its share in one
 * send()), in the order they became ready; with a sendq, every socket's
 * send() leaves in one syscall at the end. */
static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct loop *loop = arg;
    struct fdev *f;
    loop->flushing = loop->sendq != NULL;
    while ((f = loop->ready.head)) {
        list_unlink(f);
        if (!idle(f)) { /* something came first: the callback's path keeps order */
            loop_want_write(f->wsi);
            continue;
        }
        f->in_service = 1; /* lws asking for POLLOUT on a partial write: see below */
        int rc = loop->writer(f->wsi);
        f->in_service = 0;
        if (!f->wsi && !f->queued) /* lws destroyed it meanwhile */
            fdev_free(f);
        else if (f->wsi && (rc < 0 || !f->queued))
            after_write(f, rc);
    }
    loop->flushing = 0;
    if (loop->sendq) {
        unsigned n = sendq_flush(loop->sendq);
        if (n && loop->submits) {
            ++*loop->submits;
            *loop->batched += n;
        }
    }
}

/* The write window of the first held sockets is over: they join the next
 * flush, with every other held socket due within WINDOW_SLACK_USEC. Held in
 * the order they were held, which is nearly that of their due times (a
 * fan-out writes its subscribers in the same order each time); one held
 * behind a later due waits for it, which is still within a window of its
 * own hold. */
static void on_release(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct loop *loop = arg;
    uint64_t now = clock_us();
    struct fdev *f;
    while ((f = loop->held.head) && f->due_us <= now + WINDOW_SLACK_USEC) {
        list_unlink(f);
        make_ready(f);
    }
    if (loop->held.head)
        arm_release(loop, now);
}

/* lws's timers (handshake and close timeouts, kills) run without
 * lws_service(), whose poll() of every socket made an idle connection cost
 * CPU on every tick, and only when one is due. A socket a timer makes lws
 * want written reaches us through loop_lws_thread_id(); read data lws holds
 * back is fed by a full pass, the only one. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct loop *loop = arg;
    loop->tick_due = 0;
    __lws_sul_service_ripe(loop->timers, LWS_COUNT_PT_SUL_OWNERS, lws_now_usecs());
    if (!lws_service_adjust_timeout(loop->ctx, 1, 0))
        lws_service(loop->ctx, -1);
    sync_tick(loop);
}

static void probe_cb(lws_sorted_usec_list_t *sul) { (void)sul; }

/* lws keeps its timers in a per-thread array of lists it does not export;
 * a timer scheduled and cancelled at once shows where the array is. */
static lws_dll2_owner_t *find_timers(struct lws_context *ctx)
{
    lws_sorted_usec_list_t probe;
    memset(&probe, 0, sizeof probe);
    lws_sul_schedule(ctx, 0, &probe, probe_cb, 3600 * LWS_US_PER_SEC);
    lws_dll2_owner_t *owner = probe.list.owner;
    lws_sul_cancel(&probe);
    return owner;
}

int loop_lws_thread_id(struct lws *wsi)
{
    struct fdev *f = wsi ? lws_get_opaque_user_data(wsi) : NULL;
    if (!f)
        return 1;
    /* Maybe POLLOUT turned on: lws wants a write round until its next
     * writable callback. Inside service lws writes what it can before
     * returning; on_read kicks after it, on_write and on_flush when a
     * partial write or a writable callback is owed. */
    f->lws_out = 1;
    if (!f->in_service)
        kick_write(f);
    return 1;
}

void loop_lws_writeable(struct lws *wsi, int websocket)
{
    struct fdev *f = lws_get_opaque_user_data(wsi);
    if (f) {
        f->lws_out = 0;
        f->websocket |= (unsigned char)websocket;
        f->called_back = 1;
        f->owed = 0;
    }
}

/* Over the socket cap: a 503 (HTTP, the first thing every client speaks
 * here) and close. Whatever request already arrived is read first, so the
 * close is a FIN, not a reset that would destroy the answer. */
static void refuse_socket(struct loop *loop, int fd)
{
#define OVERLOADED_BODY \
    "{\"error\":\"overloaded\",\"message\":\"too many open connections, retry\"}\n"
    static const char answer[] =
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        "content-length: 68\r\nconnection: close\r\n\r\n" OVERLOADED_BODY;
    _Static_assert(sizeof OVERLOADED_BODY - 1 == 68, "content-length");
    char buf[4096];
    (void)!recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    (void)!send(fd, answer, sizeof answer - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    (void)!recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    close(fd);
    warn_shortage(loop, "connection limit from the descriptor limit reached");
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg)
{
    (void)l, (void)sa, (void)salen;
    struct loop *loop = arg;
    loop->pause_ms = ACCEPT_PAUSE_MIN_MS; /* accept works again */
    /* libevent accepts until the backlog is empty: under a connect flood
     * that is never, and established clients would wait seconds. Yield to
     * the other events after a burst; the listener resumes next turn. */
    if (++loop->burst >= ACCEPT_BURST) {
        static const struct timeval now = {0, 0};
        loop->burst = 0;
        evconnlistener_disable(l);
        evtimer_add(loop->resume, &now);
    }
    if (loop->nsockets >= loop->max_sockets) {
        refuse_socket(loop, fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (loop->sndbuf)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &loop->sndbuf, sizeof loop->sndbuf);

    struct fdev *f = calloc(1, offsetof(struct fdev, ev) + event_get_struct_event_size());
    if (!f) {
        log_error("out of memory accepting a connection");
        close(fd);
        return;
    }
    f->loop = loop;
    f->fd = fd;
    f->counted = 1;
    loop->nsockets++;
    /* Edge-triggered, see on_read and arm_write. */
    event_assign(ev_of(f), loop->base, fd,
                 EV_READ | EV_WRITE | EV_CLOSED | EV_PERSIST | EV_ET, on_event, f);

    lws_adopt_desc_t desc = {.vh = loop->vh,
                             .type = LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP |
                                     (loop->tls ? LWS_ADOPT_ALLOW_SSL : 0),
                             .fd.sockfd = fd,
                             .opaque = f};
    f->in_service = 1;
    f->wsi = lws_adopt_descriptor_vhost_via_info(&desc);
    f->in_service = 0;
    sync_tick(loop); /* the handshake timeout */
    if (!f->wsi) { /* lws closed the fd */
        fdev_free(f);
        return;
    }
    event_add(ev_of(f), NULL);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct loop *loop = arg;
    if (loop->listener)
        evconnlistener_enable(loop->listener);
}

/* accept() failed with the connection still pending (EMFILE, ENFILE,
 * ENOBUFS, ENOMEM): the listener stays readable, so retrying at once would
 * spin. It pauses instead, 100 ms doubling to 1 s while the shortage lasts,
 * and says so at most once per 10 s. */
static void on_listener_error(struct evconnlistener *l, void *arg)
{
    struct loop *loop = arg;
    int err = errno;
    evconnlistener_disable(l);
    struct timeval tv = {loop->pause_ms / 1000, (loop->pause_ms % 1000) * 1000};
    evtimer_add(loop->resume, &tv);
    if (loop->pause_ms < ACCEPT_PAUSE_MAX_MS)
        loop->pause_ms = loop->pause_ms * 2 > ACCEPT_PAUSE_MAX_MS ? ACCEPT_PAUSE_MAX_MS
                                                                  : loop->pause_ms * 2;
    char what[128];
    snprintf(what, sizeof what, "accept failed (%s), pausing the listener", strerror(err));
    warn_shortage(loop, what);
}

/* ---- lingering closes --------------------------------------------------- */

static void lingerer_free(struct lingerer *lg)
{
    struct loop *loop = lg->loop;
    if (lg->prev)
        lg->prev->next = lg->next;
    else
        loop->lingering = lg->next;
    if (lg->next)
        lg->next->prev = lg->prev;
    event_free(lg->ev);
    close(lg->fd);
    loop->nsockets--;
    free(lg);
}

static void on_linger(evutil_socket_t fd, short what, void *arg)
{
    struct lingerer *lg = arg;
    char buf[16384];
    if (what & EV_READ) {
        for (int i = 0; i < 4; i++) {
            ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                           errno != EINTR)) {
                lingerer_free(lg); /* the peer's EOF: the close is complete */
                return;
            }
            if (n < 0)
                break;
        }
    }
    uint64_t now = clock_us();
    if (now >= lg->deadline_us) {
        lingerer_free(lg);
        return;
    }
    uint64_t left = lg->deadline_us - now;
    struct timeval tv = {(time_t)(left / 1000000), (suseconds_t)(left % 1000000)};
    event_add(lg->ev, &tv);
}

/* Takes over a closing WebSocket's descriptor (see struct lingerer); lws
 * closes its own copy afterwards. Best effort: without memory or a spare
 * descriptor the socket simply closes as before. */
static void linger(struct fdev *f)
{
    struct loop *loop = f->loop;
    struct lingerer *lg = calloc(1, sizeof *lg);
    if (!lg)
        return;
    lg->fd = fcntl(f->fd, F_DUPFD_CLOEXEC, 0);
    if (lg->fd < 0) {
        free(lg);
        return;
    }
    lg->ev = event_new(loop->base, lg->fd, EV_READ, on_linger, lg);
    if (!lg->ev) {
        close(lg->fd);
        free(lg);
        return;
    }
    shutdown(lg->fd, SHUT_WR);
    lg->loop = loop;
    lg->deadline_us = clock_us() + LINGER_USEC;
    lg->next = loop->lingering;
    if (lg->next)
        lg->next->prev = lg;
    loop->lingering = lg;
    loop->nsockets++;
    struct timeval tv = {LINGER_USEC / 1000000, LINGER_USEC % 1000000};
    event_add(lg->ev, &tv);
}

/* The listen address host:port; NULL with err set. */
static struct addrinfo *resolve(const char *host, int port, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve listen address %s: %s", host,
                 gai_strerror(rc));
        return NULL;
    }
    return ai;
}

static int port_of(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return -1;
    return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
}

int loop_reserve_port(const char *host, int *port, char *err, size_t errlen)
{
    struct addrinfo *ai = resolve(host, *port, err, errlen);
    if (!ai)
        return -1;
    int one = 1, bound = -1;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || (bound = port_of(fd)) < 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host, *port, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    } else {
        *port = bound;
    }
    freeaddrinfo(ai);
    return fd;
}

struct loop *loop_new(struct event_base *base, struct lws_context *ctx,
                      struct lws_vhost *vh, const char *host, int port,
                      int reuseport, size_t sndbuf, char *err, size_t errlen)
{
    struct addrinfo *ai = resolve(host, port, err, errlen);
    if (!ai)
        return NULL;

    struct loop *loop = calloc(1, sizeof *loop);
    if (!loop) {
        freeaddrinfo(ai);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    loop->base = base;
    loop->ctx = ctx;
    loop->vh = vh;
    loop->sndbuf = (int)sndbuf;
    loop->listener = evconnlistener_new_bind(
        base, on_accept, loop,
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC |
            (reuseport ? LEV_OPT_REUSEABLE_PORT : 0),
        1024, ai->ai_addr, (int)ai->ai_addrlen);
    if (!loop->listener) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port,
                 strerror(errno));
        freeaddrinfo(ai);
        free(loop);
        return NULL;
    }
    freeaddrinfo(ai);
    evconnlistener_set_error_cb(loop->listener, on_listener_error);
    loop->pause_ms = ACCEPT_PAUSE_MIN_MS;
    struct rlimit rl;
    rlim_t nofile = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 1024;
    if (nofile == RLIM_INFINITY || nofile > 16u * 1024 * 1024)
        nofile = 16u * 1024 * 1024;
    /* Small limits (tests, tight containers) keep half for everything else. */
    loop->max_sockets = (unsigned)(nofile > 2 * FD_RESERVE ? nofile - FD_RESERVE : nofile / 2);

    loop->port = port_of(evconnlistener_get_fd(loop->listener));

    loop->timers = find_timers(ctx);
    /* lws asks protocols[0] for the service thread's id in its first
     * lws_service(), and from then on calls loop_lws_thread_id() each time it
     * changes the events it wants on a socket. */
    lws_service(ctx, -1);

    loop->tick = evtimer_new(base, on_tick, loop);
    loop->resume = evtimer_new(base, on_resume, loop);
    loop->flush = event_new(base, -1, 0, on_flush, loop);
    loop->release = evtimer_new(base, on_release, loop);
    if (!loop->tick || !loop->resume || !loop->flush || !loop->release) {
        snprintf(err, errlen, "cannot start the service timer");
        loop_free(loop);
        return NULL;
    }
    if (!rxwatch_active())
        log_info("lws's reads are not observed (recv() not interposed): a peek after each");
    char why[128];
    loop->sendq = sendq_new(on_sent, loop, why, sizeof why);
    if (!loop->sendq)
        log_info("io_uring unavailable (%s): one send() per write", why);
    sync_tick(loop);
    if (!loop->tick_due) {
        snprintf(err, errlen, "cannot start the service timer");
        loop_free(loop);
        return NULL;
    }
    return loop;
}

void loop_use_tls(struct loop *loop)
{
    loop->tls = 1;
    sendq_free(loop->sendq); /* OpenSSL writes for itself */
    loop->sendq = NULL;
}

void loop_count_sends(struct loop *loop, uint64_t *submits, uint64_t *batched)
{
    loop->submits = submits;
    loop->batched = batched;
}

void loop_set_write_window(struct loop *loop, unsigned window_us, uint64_t *held_total)
{
    loop->window_us = window_us;
    loop->held_total = held_total;
}

int loop_port(const struct loop *loop) { return loop->port; }

unsigned loop_max_sockets(const struct loop *loop) { return loop->max_sockets; }


void loop_want_write(struct lws *wsi)
{
    lws_callback_on_writable(wsi);
    struct fdev *f = lws_get_opaque_user_data(wsi);
    if (f && !f->want_write) {
        f->want_write = 1;
        if (!f->write_armed)
            kick_write(f);
    }
}

int loop_send(struct lws *wsi, unsigned char *buf, size_t len)
{
    struct fdev *f = lws_get_opaque_user_data(wsi);
    size_t sent = 0;
    if (f && f->loop->window_us)
        f->sent_us = clock_us();
    if (f && !f->loop->tls && !lws_partial_buffered(wsi)) {
        if (f->loop->flushing && !f->queued &&
            sendq_add(f->loop->sendq, f->fd, buf, len, f) == 0) {
            f->queued = 1;
            return 0;
        }
        ssize_t n = send(f->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n == (ssize_t)len)
            return 0;
        sent = n > 0 ? (size_t)n : 0;
    }
    /* The rest, or an error, is lws's: it retries, keeps what the socket
     * does not take, or marks the socket failed for its close. */
    return lws_write(wsi, buf + sent, len - sent, LWS_WRITE_HTTP) < 0 ? -1 : 0;
}

void loop_keep_writable(struct lws *wsi, int on)
{
    struct fdev *f = lws_get_opaque_user_data(wsi);
    if (!f)
        return;
    f->keep_writable = (unsigned char)!!on;
    if (on)
        await_writable(f);
}

void loop_abort(struct lws *wsi)
{
    struct fdev *f = lws_get_opaque_user_data(wsi);
    struct linger lg = {1, 0};
    setsockopt(lws_get_socket_fd(wsi), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    if (f) {
        f->reset = 1;
        sync_tick(f->loop);
    }
}

void loop_wsi_closed(struct lws *wsi, int websocket)
{
    struct fdev *f = lws_get_opaque_user_data(wsi);
    if (!f)
        return;
    event_del(ev_of(f)); /* lws closes the fd before anything else runs */
    disarm_write(f);
    /* A peer that has closed sends nothing more: no wait, and no descriptor
     * and event to set up and tear down for each of a crowd hanging up. */
    int in = websocket && !f->reset ? peek_input(f->fd) : 0;
    if (in == 1 || in == -1) /* input ahead of any EOF is read by the linger */
        linger(f);
}

void loop_wsi_destroyed(struct lws *wsi)
{
    struct fdev *f = lws_get_opaque_user_data(wsi);
    if (!f)
        return;
    lws_set_opaque_user_data(wsi, NULL);
    list_unlink(f);
    event_del(ev_of(f));
    disarm_write(f);
    f->wsi = NULL;
    if (!f->in_service && !f->queued)
        fdev_free(f);
}

void loop_stop_accepting(struct loop *loop)
{
    if (loop->resume)
        evtimer_del(loop->resume);
    if (loop->listener) {
        evconnlistener_free(loop->listener);
        loop->listener = NULL;
    }
}

void loop_free(struct loop *loop)
{
    if (!loop)
        return;
    loop_stop_accepting(loop);
    while (loop->lingering)
        lingerer_free(loop->lingering);
    while (loop->ready.head) /* fdevs outlive the loop until lws destroys them */
        list_unlink(loop->ready.head);
    while (loop->held.head)
        list_unlink(loop->held.head);
    sendq_free(loop->sendq);
    if (loop->flush)
        event_free(loop->flush);
    if (loop->release)
        event_free(loop->release);
    if (loop->tick)
        event_free(loop->tick);
    if (loop->resume)
        event_free(loop->resume);
    free(loop);
}

/* loop.c - see loop.h. */
#include "net/loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <libwebsockets.h>

#include "log.h"

#define TICK_USEC 100000
/* Every this many ticks, one full lws_service() (a poll() of every socket):
 * a backstop should lws ever want a socket serviced without telling us. */
#define FULL_SERVICE_TICKS 300

struct loop {
    struct event_base *base;
    struct lws_context *ctx;
    struct lws_vhost *vh;
    struct evconnlistener *listener;
    struct event *tick;
    lws_dll2_owner_t *timers; /* lws's timer lists, LWS_COUNT_PT_SUL_OWNERS */
    unsigned ticks;
    int port;
    int sndbuf;
};

struct fdev {
    struct loop *loop;
    struct lws *wsi; /* NULL once lws destroyed it */
    struct event *rd, *wr; /* EV_READ, and EV_WRITE armed in epoll */
    struct event *kick;    /* no fd: event_active() runs on_write next */
    int fd;
    unsigned char write_armed;  /* wr is pending in libevent */
    unsigned char want_write;   /* a writable callback was asked for */
    unsigned char keep_writable;
    unsigned char in_service;   /* inside lws_service_fd() for this fd */
};

static void fdev_free(struct fdev *f)
{
    if (f->rd) event_free(f->rd);
    if (f->wr) event_free(f->wr);
    if (f->kick) event_free(f->kick);
    free(f);
}

/* A separate event from wr: libevent silently skips registering an event
 * with epoll while that same event is active. */
static void kick_write(struct fdev *f)
{
    event_active(f->kick, EV_WRITE, 1);
}

static void arm_write(struct fdev *f)
{
    if (!f->write_armed && event_add(f->wr, NULL) == 0)
        f->write_armed = 1;
}

static void disarm_write(struct fdev *f)
{
    if (f->write_armed) {
        event_del(f->wr);
        f->write_armed = 0;
    }
}

struct event_base *loop_base_new(void)
{
    struct event_config *cfg = event_config_new();
    if (!cfg)
        return NULL;
    /* Writable callbacks re-activate themselves while a queue drains; poll
     * the sockets again after this many so reads are never starved. */
    struct timeval max_interval = {0, 10000};
    event_config_set_max_dispatch_interval(cfg, &max_interval, 256, 0);
    struct event_base *base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

/* Runs lws on one fd; returns 0 when the wsi survived, else frees f. */
static int service(struct fdev *f, short revents)
{
    struct lws_pollfd pfd = {.fd = f->fd, .events = POLLIN | POLLOUT,
                             .revents = revents};
    f->in_service = 1;
    lws_service_fd(f->loop->ctx, &pfd);
    f->in_service = 0;
    if (f->wsi)
        return 0;
    fdev_free(f);
    return -1;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct fdev *f = arg;
    if (service(f, POLLIN) == 0)
        kick_write(f); /* lws may have queued a reply */
}

/* Runs from a real EV_WRITE (socket writable again after a partial write, or
 * lws serving a file) or from event_active() (a writable callback was asked
 * for: no syscall needed when the socket is presumed writable). */
static void on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct fdev *f = arg;
    f->want_write = 0;
    int had_partial = lws_partial_buffered(f->wsi);
    if (service(f, POLLOUT) < 0)
        return;
    if (f->keep_writable || lws_partial_buffered(f->wsi)) {
        arm_write(f); /* wait until the kernel takes more */
        return;
    }
    disarm_write(f);
    /* lws flushes a partial write without calling the user back: the next
     * round is the writable callback it owes. */
    if (f->want_write || had_partial)
        kick_write(f);
}

/* lws's timers (pings, handshake and close timeouts) run without
 * lws_service(), whose poll() of every socket made an idle connection cost
 * CPU on every tick. A socket lws wants written (a ping) reaches us through
 * loop_lws_thread_id(); read data lws holds back is fed by a full pass. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct loop *loop = arg;
    __lws_sul_service_ripe(loop->timers, LWS_COUNT_PT_SUL_OWNERS, lws_now_usecs());
    if (++loop->ticks % FULL_SERVICE_TICKS == 0 ||
        !lws_service_adjust_timeout(loop->ctx, 1, 0))
        lws_service(loop->ctx, -1);
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
    /* Inside service lws writes what it wants before returning, and
     * on_read/on_write kick again after it. */
    if (f && !f->in_service)
        kick_write(f);
    return 1;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg)
{
    (void)l, (void)sa, (void)salen;
    struct loop *loop = arg;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (loop->sndbuf)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &loop->sndbuf, sizeof loop->sndbuf);

    struct fdev *f = calloc(1, sizeof *f);
    if (!f) {
        log_error("out of memory accepting a connection");
        close(fd);
        return;
    }
    f->loop = loop;
    f->fd = fd;
    f->rd = event_new(loop->base, fd, EV_READ | EV_PERSIST, on_read, f);
    f->wr = event_new(loop->base, fd, EV_WRITE | EV_PERSIST, on_write, f);
    f->kick = event_new(loop->base, -1, 0, on_write, f);
    if (!f->rd || !f->wr || !f->kick) {
        log_error("out of memory accepting a connection");
        fdev_free(f);
        close(fd);
        return;
    }

    lws_adopt_desc_t desc = {.vh = loop->vh,
                             .type = LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP,
                             .fd.sockfd = fd,
                             .opaque = f};
    f->in_service = 1;
    f->wsi = lws_adopt_descriptor_vhost_via_info(&desc);
    f->in_service = 0;
    if (!f->wsi) { /* lws closed the fd */
        fdev_free(f);
        return;
    }
    event_add(f->rd, NULL);
}

static void on_listener_error(struct evconnlistener *l, void *arg)
{
    (void)l, (void)arg;
    /* EMFILE and friends: libevent retries on the next readiness. */
    log_warn("accept failed: %s", strerror(errno));
}

struct loop *loop_new(struct event_base *base, struct lws_context *ctx,
                      struct lws_vhost *vh, const char *host, int port,
                      size_t sndbuf, char *err, size_t errlen)
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
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
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

    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(evconnlistener_get_fd(loop->listener), (struct sockaddr *)&ss, &sl);
    loop->port = ntohs(ss.ss_family == AF_INET6
                           ? ((struct sockaddr_in6 *)&ss)->sin6_port
                           : ((struct sockaddr_in *)&ss)->sin_port);

    loop->timers = find_timers(ctx);
    /* lws asks protocols[0] for the service thread's id in its first
     * lws_service(), and from then on calls loop_lws_thread_id() each time it
     * changes the events it wants on a socket. */
    lws_service(ctx, -1);

    struct timeval tv = {0, TICK_USEC};
    loop->tick = event_new(base, -1, EV_PERSIST, on_tick, loop);
    if (!loop->tick || event_add(loop->tick, &tv) < 0) {
        snprintf(err, errlen, "cannot start the service timer");
        loop_free(loop);
        return NULL;
    }
    return loop;
}

int loop_port(const struct loop *loop) { return loop->port; }


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

void loop_keep_writable(struct lws *wsi, int on)
{
    struct fdev *f = lws_get_opaque_user_data(wsi);
    if (!f)
        return;
    f->keep_writable = (unsigned char)!!on;
    if (on)
        arm_write(f);
}

void loop_wsi_closed(struct lws *wsi)
{
    struct fdev *f = lws_get_opaque_user_data(wsi);
    if (!f)
        return;
    event_del(f->rd);
    disarm_write(f);
}

void loop_wsi_destroyed(struct lws *wsi)
{
    struct fdev *f = lws_get_opaque_user_data(wsi);
    if (!f)
        return;
    lws_set_opaque_user_data(wsi, NULL);
    event_del(f->rd);
    disarm_write(f);
    event_del(f->kick);
    f->wsi = NULL;
    if (!f->in_service)
        fdev_free(f);
}

void loop_stop_accepting(struct loop *loop)
{
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
    if (loop->tick)
        event_free(loop->tick);
    free(loop);
}

/* workers.c - see workers.h. */
#include "workers.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "log.h"
#include "net/loop.h"

_Static_assert(CONFIG_WORKERS_MAX <= METRICS_WORKERS_MAX, "a metrics slot per worker");

/* What a worker tells the supervisor once it serves. */
struct ready_note {
    uint32_t worker;
    uint32_t capacity;
};

struct supervisor {
    struct app *app;
    struct metrics_node *node;
    sigset_t blocked, old;
    int reserve_fd;          /* the port, held while workers come and go */
    int ready[2];            /* workers' notes */
    int stopping;            /* signalled or crash-looping: no restarts */
    int failed;              /* exit 1: crash loop, or a worker failed draining */
    uint64_t up;             /* slots whose worker has said it serves */
    unsigned capacity;       /* connections they hold together */
    int announced;
    uint64_t deaths[WORKERS_CRASH_DEATHS]; /* the latest death times, a ring */
    unsigned ndeaths;
};

/* In the child: back to an ordinary process that serves as worker i. */
static void become_worker(struct supervisor *sv, unsigned i)
{
    struct app *app = sv->app;
    sigprocmask(SIG_SETMASK, &sv->old, NULL);
    /* Out of the terminal's process group: a Ctrl-C reaches the supervisor
     * alone, which forwards it once (a second signal would end the drain). */
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* the supervisor killed: drain and go */
    close(sv->reserve_fd);
    close(sv->ready[0]);
    app->node = sv->node;
    app->worker = i;
    app->metrics = &sv->node->slot[i].m;
    app->metrics->queue_bytes = 0; /* a restarted worker's queues are new */
    app->ready_fd = sv->ready[1];
}

/* Forks worker i; returns 1 in the child, 0 in the supervisor, -1 when the
 * fork failed. */
static int spawn(struct supervisor *sv, unsigned i)
{
    pid_t pid = fork();
    if (pid < 0) {
        log_error("cannot fork worker %u: %s", i, strerror(errno));
        return -1;
    }
    if (pid == 0) {
        become_worker(sv, i);
        return 1;
    }
    sv->node->slot[i].pid = (int)pid;
    return 0;
}

static unsigned running(const struct supervisor *sv)
{
    unsigned n = 0;
    for (unsigned i = 0; i < sv->node->nslots; i++)
        n += sv->node->slot[i].pid != 0;
    return n;
}

static void signal_all(const struct supervisor *sv, int sig)
{
    for (unsigned i = 0; i < sv->node->nslots; i++)
        if (sv->node->slot[i].pid)
            kill(sv->node->slot[i].pid, sig);
}

/* Records a death; 1 when WORKERS_CRASH_DEATHS fell within the window. */
static int crash_loop(struct supervisor *sv)
{
    uint64_t now = clock_us();
    sv->deaths[sv->ndeaths++ % WORKERS_CRASH_DEATHS] = now;
    uint64_t oldest = sv->deaths[sv->ndeaths % WORKERS_CRASH_DEATHS]; /* of the last ones */
    return sv->ndeaths >= WORKERS_CRASH_DEATHS &&
           now - oldest < (uint64_t)WORKERS_CRASH_WINDOW_S * 1000000u;
}

static void describe(int status, char *buf, size_t len)
{
    if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
}

/* Reaps dead workers; restarts them unless the node is stopping. Returns 1
 * in a restarted child. */
static int reap(struct supervisor *sv)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        unsigned i = 0;
        while (i < sv->node->nslots && sv->node->slot[i].pid != (int)pid)
            i++;
        if (i == sv->node->nslots)
            continue;
        struct metrics_slot *slot = &sv->node->slot[i];
        slot->pid = 0;
        memset(&slot->g, 0, sizeof slot->g);
        slot->m.queue_bytes = 0;
        char how[64];
        describe(status, how, sizeof how);
        if (sv->stopping) {
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                log_warn("worker %u (pid %d) ended draining: %s", i, (int)pid, how);
                sv->failed = 1;
            }
            continue;
        }
        log_warn("worker %u (pid %d) died: %s", i, (int)pid, how);
        if (crash_loop(sv)) {
            log_error("workers keep dying (%d deaths within %d s): stopping the node",
                      WORKERS_CRASH_DEATHS, WORKERS_CRASH_WINDOW_S);
            sv->stopping = sv->failed = 1;
            signal_all(sv, SIGTERM);
            continue;
        }
        sv->node->restarts++;
        int rc = spawn(sv, i);
        if (rc == 1)
            return 1;
        if (rc == 0)
            log_info("worker %u restarted (pid %d)", i, slot->pid);
    }
    return 0;
}

static void on_ready(struct supervisor *sv)
{
    struct ready_note note;
    if (read(sv->ready[0], &note, sizeof note) != (ssize_t)sizeof note)
        return;
    uint64_t bit = (uint64_t)1 << (note.worker % 64);
    if (sv->announced || (sv->up & bit))
        return;
    sv->up |= bit;
    sv->capacity += note.capacity;
    if (sv->up != ((uint64_t)2 << (sv->node->nslots - 1)) - 1)
        return;
    const struct config *cfg = &sv->app->cfg;
    log_info("listening on %s:%d with %u workers (supervisor pid %d, broker redis); "
             "holds up to %u connections (--max-connections %u per worker)",
             cfg->listen_host, cfg->listen_port, sv->node->nslots, (int)getpid(),
             sv->capacity, cfg->max_connections);
    sv->announced = 1;
}

/* The supervisor's life; returns 1 in a (re)started child, else exits. */
static int supervise(struct supervisor *sv)
{
    int sfd = signalfd(-1, &sv->blocked, SFD_CLOEXEC);
    if (sfd < 0) {
        log_error("cannot watch signals: %s", strerror(errno));
        sv->stopping = sv->failed = 1;
        signal_all(sv, SIGTERM);
    }
    while (running(sv)) {
        struct pollfd pf[2] = {{.fd = sfd, .events = POLLIN},
                               {.fd = sv->ready[0], .events = POLLIN}};
        if (poll(pf, 2, sfd < 0 ? 100 : -1) < 0 && errno != EINTR)
            break;
        if (pf[1].revents & POLLIN)
            on_ready(sv);
        struct signalfd_siginfo si;
        if (sfd >= 0 && (pf[0].revents & POLLIN) &&
            read(sfd, &si, sizeof si) == (ssize_t)sizeof si &&
            (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)) {
            if (!sv->stopping)
                log_info("signal %d: draining %u workers", (int)si.ssi_signo, running(sv));
            sv->stopping = 1;
            signal_all(sv, (int)si.ssi_signo);
        }
        if (reap(sv)) {
            if (sfd >= 0)
                close(sfd);
            return 1;
        }
    }
    log_info(sv->failed ? "node stopped" : "all workers done, shut down cleanly");
    exit(sv->failed ? 1 : 0);
}

int workers_start(struct app *app, char *err, size_t errlen)
{
    unsigned n = app->cfg.workers;
    if (n <= 1)
        return 0;
    struct supervisor sv = {.app = app};
    sv.reserve_fd = loop_reserve_port(app->cfg.listen_host, &app->cfg.listen_port,
                                      err, errlen);
    if (sv.reserve_fd < 0)
        return -1;
    sv.node = mmap(NULL, sizeof *sv.node, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sv.node == MAP_FAILED || pipe(sv.ready) < 0 ||
        fcntl(sv.ready[0], F_SETFD, FD_CLOEXEC) < 0 ||
        fcntl(sv.ready[1], F_SETFD, FD_CLOEXEC) < 0) {
        snprintf(err, errlen, "cannot set up the workers: %s", strerror(errno));
        return -1;
    }
    sv.node->nslots = n;
    sigemptyset(&sv.blocked);
    sigaddset(&sv.blocked, SIGCHLD);
    sigaddset(&sv.blocked, SIGTERM);
    sigaddset(&sv.blocked, SIGINT);
    sigprocmask(SIG_BLOCK, &sv.blocked, &sv.old);
    for (unsigned i = 0; i < n; i++) {
        int rc = spawn(&sv, i);
        if (rc == 1)
            return 1;
        if (rc < 0) {
            sv.stopping = sv.failed = 1;
            signal_all(&sv, SIGTERM);
            break;
        }
    }
    return supervise(&sv);
}

void workers_ready(const struct app *app, unsigned capacity)
{
    struct ready_note note = {app->worker, capacity};
    if (app->node && write(app->ready_fd, &note, sizeof note) < 0)
        log_warn("cannot tell the supervisor this worker serves: %s", strerror(errno));
}

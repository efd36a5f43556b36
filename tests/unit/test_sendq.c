/* test_sendq.c - one io_uring submission for many sockets' sends: every
 * result reported once with its tag and bytes, a short write and a full
 * socket (-EAGAIN) reported as send() would, a closed peer as -EPIPE
 * without SIGPIPE, a flush when the arena fills, and the bytes copied at
 * queueing (the caller's buffer may change at once). Where io_uring is
 * forbidden (the default seccomp profile of Docker and Podman) the gateway
 * sends without it and this test reports itself skipped (exit 77). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "net/sendq.h"

#define SOCKS 64

struct result {
    int calls;
    ssize_t res;
    size_t len;
    unsigned char first;
};

static struct result results[SOCKS];

static void done(void *arg, void *tag, const unsigned char *buf, size_t len, ssize_t res)
{
    (void)arg;
    struct result *r = &results[(size_t)tag];
    r->calls++;
    r->res = res;
    r->len = len;
    r->first = buf[0];
}

static struct sendq *new_q(void)
{
    struct sendq *q = sendq_new(done, NULL, NULL, 0);
    CHECK_NOT_NULL(q);
    return q;
}

/* n connected socket pairs, and the results cleared for a new test. */
static void pairs(int tx[], int rx[], int n)
{
    memset(results, 0, sizeof results);
    for (int i = 0; i < n; i++) {
        int sv[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
        tx[i] = sv[0];
        rx[i] = sv[1];
    }
}

static void test_many_sockets_one_flush(void)
{
    struct sendq *q = new_q();
    if (!q)
        return;
    int tx[SOCKS], rx[SOCKS];
    pairs(tx, rx, SOCKS);
    unsigned char buf[100];
    for (int i = 0; i < SOCKS; i++) {
        memset(buf, 'a' + i % 26, sizeof buf);
        CHECK(sendq_add(q, tx[i], buf, sizeof buf, (void *)(size_t)i) == 0);
        memset(buf, '!', sizeof buf); /* queued bytes were copied */
    }
    CHECK_EQ_UINT(sendq_flush(q), SOCKS);
    for (int i = 0; i < SOCKS; i++) {
        CHECK(results[i].calls == 1 && results[i].res == 100 && results[i].len == 100);
        char in[200];
        ssize_t n = recv(rx[i], in, sizeof in, MSG_DONTWAIT);
        CHECK(n == 100 && in[0] == 'a' + i % 26 && in[99] == 'a' + i % 26);
        close(tx[i]);
        close(rx[i]);
    }
    CHECK_EQ_UINT(sendq_flush(q), 0); /* nothing left */
    sendq_free(q);
}

/* A socket that takes a few KB: the first send is short, the next finds it
 * full; a closed peer fails; the results say so, in any order. */
static void test_short_full_closed(void)
{
    struct sendq *q = new_q();
    if (!q)
        return;
    int tx[3], rx[3];
    pairs(tx, rx, 3);
    int small = 4096;
    CHECK(setsockopt(tx[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
    close(rx[2]);
    static unsigned char big[16000];
    memset(big, 'x', sizeof big);
    CHECK(sendq_add(q, tx[0], big, sizeof big, (void *)0) == 0);
    CHECK(sendq_add(q, tx[2], big, 10, (void *)2) == 0);
    CHECK_EQ_UINT(sendq_flush(q), 2);
    CHECK(results[0].calls == 1 && results[0].res > 0 && results[0].res < (ssize_t)sizeof big);
    CHECK(results[2].calls == 1 && results[2].res == -EPIPE);
    CHECK(sendq_add(q, tx[0], big, sizeof big, (void *)1) == 0);
    CHECK_EQ_UINT(sendq_flush(q), 1);
    CHECK(results[1].calls == 1 && results[1].res == -EAGAIN && results[1].len == sizeof big);
    for (int i = 0; i < 3; i++) {
        close(tx[i]);
        if (i != 2)
            close(rx[i]);
    }
    sendq_free(q);
}

/* More bytes than the arena holds: the earlier sends are submitted first,
 * nothing is lost; a send larger than a quarter of it is refused. */
static void test_arena_fills(void)
{
    struct sendq *q = new_q();
    if (!q)
        return;
    int tx[SOCKS], rx[SOCKS];
    pairs(tx, rx, SOCKS);
    static unsigned char chunk[4000];
    for (int i = 0; i < SOCKS; i++) {
        memset(chunk, 'A' + i % 26, sizeof chunk);
        CHECK(sendq_add(q, tx[i], chunk, sizeof chunk, (void *)(size_t)i) == 0);
    }
    sendq_flush(q);
    for (int i = 0; i < SOCKS; i++) {
        CHECK(results[i].calls == 1 && results[i].res == (ssize_t)sizeof chunk &&
              results[i].first == 'A' + i % 26);
        close(tx[i]);
        close(rx[i]);
    }
    static unsigned char huge[1 << 15];
    CHECK(sendq_add(q, 0, huge, sizeof huge, NULL) == -1);
    sendq_free(q);
}

int main(void)
{
    char why[128];
    struct sendq *probe = sendq_new(done, NULL, why, sizeof why);
    if (!probe) {
        printf("skipped: io_uring unavailable here (%s)\n", why);
        return 77;
    }
    sendq_free(probe);
    signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would kill the test: none may come */
    RUN(test_many_sockets_one_flush);
    RUN(test_short_full_closed);
    RUN(test_arena_fills);
    return check_summary();
}

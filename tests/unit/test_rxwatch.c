/* test_rxwatch.c - recv() on a watched socket notes whether it filled its
 * buffer (input may be left) or emptied the socket, and returns exactly
 * what libc's would; other sockets, peeks and the end of input are not
 * taken for an emptied socket. */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "net/rxwatch.h"

static int pair[2];

static void setup(void)
{
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair) == 0);
}

static void teardown(void)
{
    close(pair[0]);
    close(pair[1]);
}

static void test_filled_then_drained(void)
{
    setup();
    char buf[8];
    CHECK(write(pair[1], "0123456789", 10) == 10);
    rxwatch_begin(pair[0]);
    CHECK(recv(pair[0], buf, sizeof buf, 0) == 8);
    CHECK(!memcmp(buf, "01234567", 8));
    CHECK(rxwatch_end() == RXWATCH_FILLED);
    rxwatch_begin(pair[0]);
    CHECK(recv(pair[0], buf, sizeof buf, 0) == 2);
    CHECK(rxwatch_end() == RXWATCH_DRAINED);
    rxwatch_begin(pair[0]);
    errno = 0;
    CHECK(recv(pair[0], buf, sizeof buf, 0) == -1);
    CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
    CHECK(rxwatch_end() == RXWATCH_DRAINED);
    teardown();
}

static void test_last_read_counts(void)
{
    setup();
    char buf[8];
    CHECK(write(pair[1], "0123456789", 10) == 10);
    rxwatch_begin(pair[0]);
    CHECK(recv(pair[0], buf, 2, 0) == 2);
    CHECK(recv(pair[0], buf, sizeof buf, 0) == 8); /* fills: more may follow */
    CHECK(rxwatch_end() == RXWATCH_FILLED);
    teardown();
}

static void test_not_watched(void)
{
    setup();
    char buf[8];
    CHECK(write(pair[1], "01", 2) == 2);
    CHECK(write(pair[0], "ab", 2) == 2);
    rxwatch_begin(pair[0]);
    CHECK(recv(pair[1], buf, sizeof buf, 0) == 2); /* another socket */
    CHECK(recv(pair[0], buf, 1, MSG_PEEK) == 1);   /* a peek takes nothing */
    CHECK(rxwatch_end() == RXWATCH_UNSEEN);
    CHECK(recv(pair[0], buf, sizeof buf, 0) == 2); /* after the watch */
    rxwatch_begin(pair[0]);
    CHECK(rxwatch_end() == RXWATCH_UNSEEN);
    teardown();
}

static void test_end_of_input(void)
{
    setup();
    char buf[8];
    CHECK(write(pair[1], "01", 2) == 2);
    shutdown(pair[1], SHUT_WR);
    rxwatch_begin(pair[0]);
    CHECK(recv(pair[0], buf, sizeof buf, 0) == 2);
    CHECK(recv(pair[0], buf, sizeof buf, 0) == 0);
    CHECK(rxwatch_end() == RXWATCH_UNSEEN); /* the EOF is the caller's */
    teardown();
}

int main(void)
{
    RUN(test_filled_then_drained);
    RUN(test_last_read_counts);
    RUN(test_not_watched);
    RUN(test_end_of_input);
    return check_summary();
}

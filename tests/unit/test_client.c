/* test_client.c - a client over a fake connection: protocol v1 and Socket.IO requests,
 * grants, the publish bucket, queue limits, batching, close reasons, the
 * sweep and the drain, with the real hub and embedded broker. No socket
 * and no WebSocket library: the fake conn records what the client asks of
 * it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/broker.h"
#include "check.h"
#include "core/client.h"
#include "core/drain.h"
#include "core/hub.h"
#include "proto/sio_codec.h"
#include "proto/v1_codec.h"

/* ---- the fake connection ----------------------------------------------- */

#define FRAMES_MAX 64

struct conn {
    char *frames[FRAMES_MAX]; /* every write, NUL-terminated copies */
    const unsigned char *bufs[FRAMES_MAX]; /* where each write came from */
    int nframes;
    int wants;           /* a writable callback is owed (lws keeps one flag) */
    uint16_t close_code; /* 0: none set */
    char reason[64];
    int aborted;
    int pings;
    int joined_writes; /* write_frames() calls */
    int fail_writes;
};

static int fake_write(struct conn *c, unsigned char *buf, size_t len)
{
    if (c->fail_writes)
        return -1;
    if (c->nframes < FRAMES_MAX) {
        c->frames[c->nframes] = strndup((const char *)buf, len);
        c->bufs[c->nframes] = buf;
    }
    c->nframes++;
    return 0;
}

static int fake_write_frames(struct conn *c, struct msg *const *m, size_t n)
{
    c->joined_writes++;
    for (size_t i = 0; i < n; i++)
        if (fake_write(c, msg_data(m[i]), m[i]->len) < 0)
            return -1;
    return 0;
}

static void fake_want_write(struct conn *c) { c->wants = 1; }

static void fake_close(struct conn *c, uint16_t code, const char *reason)
{
    c->close_code = code;
    snprintf(c->reason, sizeof c->reason, "%s", reason);
}

static void fake_abort(struct conn *c) { c->aborted = 1; }

static void fake_ping(struct conn *c) { c->pings++; }

static const struct conn_ops fake_ops = {
    .write = fake_write,
    .write_frames = fake_write_frames,
    .want_write = fake_want_write,
    .close = fake_close,
    .abort = fake_abort,
    .ping = fake_ping,
};

static void conn_reset(struct conn *c)
{
    for (int i = 0; i < c->nframes && i < FRAMES_MAX; i++)
        free(c->frames[i]);
    memset(c, 0, sizeof *c);
}

/* ---- fixture: an app with the real hub and embedded broker -------------- */

static struct app app;

static void app_init(const char *const *flags)
{
    char *argv[32] = {"wsgate"};
    int argc = 1;
    for (; flags && flags[argc - 1]; argc++)
        argv[argc] = (char *)flags[argc - 1];
    char err[256];
    static struct metrics metrics;
    memset(&app, 0, sizeof app);
    memset(&metrics, 0, sizeof metrics);
    app.metrics = &metrics;
    if (config_load(&app.cfg, argc, argv, "/nonexistent", err, sizeof err) != CONFIG_OK) {
        fprintf(stderr, "config: %s\n", err);
        exit(1);
    }
    log_set_level(LOG_ERROR);
    app.node_id = "node-1";
    app.batch = msg_new(APP_BATCH_MAX);
    app.hub = hub_new(&client_hub_callbacks, app.cfg.max_message_size);
    struct broker_events ev = hub_broker_events(app.hub);
    app.broker = broker_memory_new(&ev, &(struct history_opts){0}, &(struct presence_opts){0});
    hub_set_broker(app.hub, app.broker);
}

static void app_free(void)
{
    broker_free(app.broker);
    hub_free(app.hub);
    msg_unref(app.batch);
    auth_key_free(app.auth);
    auth_grants_clear(&app.anonymous);
}

struct tc {
    struct conn conn;
    struct client *c;
};

static void tc_open(struct tc *t, int batch, struct auth_claims *claims)
{
    memset(t, 0, sizeof *t);
    struct client_opts o = {.codec = &codec_v1, .conn = &t->conn, .ops = &fake_ops,
                            .peer = "127.0.0.1", .batch = batch, .claims = claims};
    t->c = client_open(&app, &o);
}

/* A Socket.IO client (the codec of /socket.io/) over transport. */
static void tc_open_sio(struct tc *t, const char *transport)
{
    memset(t, 0, sizeof *t);
    struct client_opts o = {.codec = &codec_sio, .conn = &t->conn, .ops = &fake_ops,
                            .peer = "127.0.0.1", .transport = transport};
    t->c = client_open(&app, &o);
}

/* Serves want_write requests as an idle socket would: returns what the last
 * client_writable() returned (-1: the transport closes now). */
static int pump(struct tc *t)
{
    int rc = 0;
    while (t->conn.wants > 0 && rc == 0) {
        t->conn.wants--;
        rc = client_writable(t->c);
    }
    return rc;
}

static void send_text(struct tc *t, const char *text)
{
    client_receive(t->c, text, strlen(text), 0);
}

static void tc_close(struct tc *t)
{
    client_gone(t->c);
    conn_reset(&t->conn);
}

/* Frame i written to t is exactly text. */
#define FRAME_IS(t, i, text)                                                           \
    CHECK_MSG((t)->conn.nframes > (i) && !strcmp((t)->conn.frames[i], text),           \
              "frame %d of %d: %s, want %s", (i), (t)->conn.nframes,                   \
              (t)->conn.nframes > (i) ? (t)->conn.frames[i] : "(none)", text)

/* Frame i written to t contains needle. */
#define FRAME_HAS(t, i, needle)                                                        \
    CHECK_MSG((t)->conn.nframes > (i) && strstr((t)->conn.frames[i], needle),          \
              "frame %d of %d: %s, want %s", (i), (t)->conn.nframes,                   \
              (t)->conn.nframes > (i) ? (t)->conn.frames[i] : "(none)", needle)

/* ---- tests ------------------------------------------------------------- */

static void test_welcome_and_ping(void)
{
    app_init(NULL);
    struct tc a;
    tc_open(&a, 0, NULL);
    CHECK_NOT_NULL(a.c);
    CHECK_EQ_INT(app.nclients, 1);
    CHECK_EQ_INT(a.conn.wants, 1); /* the welcome asked to be written */
    CHECK_EQ_INT(pump(&a), 0);
    FRAME_HAS(&a, 0, "{\"op\":\"welcome\",\"node\":\"node-1\",\"session\":\"");
    send_text(&a, "{\"op\":\"ping\",\"id\":7}");
    pump(&a);
    FRAME_HAS(&a, 1, "{\"op\":\"pong\",\"id\":7}");
    tc_close(&a);
    CHECK_EQ_INT(app.nclients, 0);
    CHECK_EQ_UINT(app.metrics->disconnects[DISC_CLIENT], 1);
    app_free();
}

static void test_subscribe_publish_deliver(void)
{
    app_init(NULL);
    struct tc a, b;
    tc_open(&a, 0, NULL);
    tc_open(&b, 0, NULL);
    send_text(&a, "{\"op\":\"subscribe\",\"channel\":\"room\",\"id\":1}");
    send_text(&b, "{\"op\":\"subscribe\",\"channel\":\"room\",\"id\":1}");
    send_text(&b, "{\"op\":\"publish\",\"channel\":\"room\",\"data\":{\"t\":\"hi\"},\"id\":2}");
    pump(&a);
    pump(&b);
    FRAME_HAS(&a, 1, "{\"op\":\"ack\",\"id\":1}");
    FRAME_HAS(&a, 2, "{\"op\":\"message\",\"channel\":\"room\",\"data\":{\"t\":\"hi\"}}");
    FRAME_HAS(&b, 1, "{\"op\":\"ack\",\"id\":1}");
    FRAME_HAS(&b, 2, "{\"op\":\"message\",\"channel\":\"room\"");
    FRAME_HAS(&b, 3, "{\"op\":\"ack\",\"id\":2}");
    /* encoded once: both clients wrote the very same frame buffer */
    CHECK_PTR_EQ(a.conn.bufs[2], b.conn.bufs[2]);
    CHECK_EQ_UINT(app.metrics->published_total, 1);
    CHECK_EQ_UINT(app.metrics->delivered_total, 2);
    CHECK_EQ_UINT(app.metrics->queue_bytes, 0);

    send_text(&a, "{\"op\":\"unsubscribe\",\"channel\":\"room\",\"id\":3}");
    send_text(&a, "{\"op\":\"unsubscribe\",\"channel\":\"room\",\"id\":4}");
    send_text(&a, "{\"op\":\"subscribe\",\"channel\":\"x\",\"id\":5}");
    send_text(&a, "{\"op\":\"subscribe\",\"channel\":\"x\",\"id\":6}");
    pump(&a);
    FRAME_HAS(&a, 3, "{\"op\":\"ack\",\"id\":3}");
    FRAME_HAS(&a, 4, "\"code\":\"not_subscribed\"");
    FRAME_HAS(&a, 5, "{\"op\":\"ack\",\"id\":5}");
    FRAME_HAS(&a, 6, "\"code\":\"already_subscribed\"");
    tc_close(&a);
    tc_close(&b);
    app_free();
}

static void test_bad_frames_keep_the_connection(void)
{
    app_init(NULL);
    struct tc a;
    tc_open(&a, 0, NULL);
    send_text(&a, "{\"op\":");
    send_text(&a, "{\"op\":\"dance\",\"id\":9}");
    client_receive(a.c, "\x01\x02", 2, 1);
    send_text(&a, "{\"op\":\"subscribe\",\"channel\":\"no spaces\",\"id\":3}");
    CHECK_EQ_INT(pump(&a), 0);
    FRAME_HAS(&a, 1, "\"code\":\"bad_json\"");
    FRAME_HAS(&a, 2, "{\"op\":\"error\",\"id\":9,\"code\":\"unknown_op\"");
    FRAME_HAS(&a, 3, "\"code\":\"bad_request\",\"message\":\"binary frames are not supported\"");
    FRAME_HAS(&a, 4, "\"code\":\"bad_channel\"");
    CHECK_EQ_INT(a.conn.close_code, 0);
    tc_close(&a);
    app_free();
}

static void test_grants(void)
{
    app_init((const char *const[]){"--jwt-secret", "0123456789abcdef0123456789abcdef",
                                   "--auth", "optional", "--anonymous-channels", "pub.*",
                                   NULL});
    app.auth = auth_key_new(app.cfg.jwt_secret, app.cfg.jwt_secret_len, 0);
    char err[128];
    CHECK_EQ_INT(auth_grants_parse(app.cfg.anonymous_channels, &app.anonymous, err,
                                   sizeof err), 0);
    struct tc anon, ana;
    tc_open(&anon, 0, NULL);
    struct auth_claims *cl = calloc(1, sizeof *cl);
    strcpy(cl->sub, "ana");
    auth_grants_parse("room.*", &cl->subscribe, err, sizeof err);
    auth_grants_parse("room.1", &cl->publish, err, sizeof err);
    cl->exp = (int64_t)time(NULL) - 1; /* expired since the upgrade */
    tc_open(&ana, 0, cl);

    send_text(&anon, "{\"op\":\"subscribe\",\"channel\":\"pub.news\",\"id\":1}");
    send_text(&anon, "{\"op\":\"subscribe\",\"channel\":\"room.1\",\"id\":2}");
    send_text(&anon, "{\"op\":\"publish\",\"channel\":\"room.1\",\"data\":1,\"id\":3}");
    pump(&anon);
    FRAME_HAS(&anon, 1, "{\"op\":\"ack\",\"id\":1}");
    FRAME_HAS(&anon, 2, "{\"op\":\"error\",\"id\":2,\"code\":\"forbidden\"");
    FRAME_HAS(&anon, 3, "{\"op\":\"error\",\"id\":3,\"code\":\"forbidden\"");

    send_text(&ana, "{\"op\":\"subscribe\",\"channel\":\"room.2\",\"id\":1}");
    send_text(&ana, "{\"op\":\"publish\",\"channel\":\"room.2\",\"data\":1,\"id\":2}");
    send_text(&ana, "{\"op\":\"publish\",\"channel\":\"room.1\",\"data\":1,\"id\":3}");
    send_text(&ana, "{\"op\":\"subscribe\",\"channel\":\"pub.news\",\"id\":4}");
    pump(&ana);
    FRAME_HAS(&ana, 1, "{\"op\":\"ack\",\"id\":1}");
    FRAME_HAS(&ana, 2, "{\"op\":\"error\",\"id\":2,\"code\":\"forbidden\"");
    FRAME_HAS(&ana, 3, "{\"op\":\"ack\",\"id\":3}");
    /* a token holder gets its own grants, not the anonymous ones */
    FRAME_HAS(&ana, 4, "{\"op\":\"error\",\"id\":4,\"code\":\"forbidden\"");

    /* a token that has expired closes the client with 4001 at the sweep */
    client_sweep(&app);
    CHECK_EQ_INT(pump(&ana), -1);
    CHECK_EQ_INT(ana.conn.close_code, 4001);
    CHECK_STR(ana.conn.reason, "token expired");
    CHECK_EQ_INT(anon.conn.close_code, 0);
    tc_close(&ana);
    tc_close(&anon);
    CHECK_EQ_UINT(app.metrics->disconnects[DISC_AUTH], 1);
    app_free();
}

static void test_channel_limit(void)
{
    app_init((const char *const[]){"--max-channels", "2", NULL});
    struct tc a;
    tc_open(&a, 0, NULL);
    send_text(&a, "{\"op\":\"subscribe\",\"channel\":\"a\",\"id\":1}");
    send_text(&a, "{\"op\":\"subscribe\",\"channel\":\"b\",\"id\":2}");
    send_text(&a, "{\"op\":\"subscribe\",\"channel\":\"c\",\"id\":3}");
    pump(&a);
    FRAME_HAS(&a, 3, "{\"op\":\"error\",\"id\":3,\"code\":\"too_many_channels\"");
    tc_close(&a);
    app_free();
}

static void test_rate_limit_closes_with_1008(void)
{
    app_init((const char *const[]){"--publish-rate", "0.001", "--publish-burst", "2", NULL});
    struct tc a;
    tc_open(&a, 0, NULL);
    for (int i = 1; i <= 5; i++) {
        char f[96];
        snprintf(f, sizeof f, "{\"op\":\"publish\",\"channel\":\"c\",\"data\":%d,\"id\":%d}", i, i);
        send_text(&a, f);
    }
    /* two accepted, two refused, the fifth is one refusal past the burst */
    CHECK_EQ_INT(pump(&a), -1);
    FRAME_HAS(&a, 1, "{\"op\":\"ack\",\"id\":1}");
    FRAME_HAS(&a, 2, "{\"op\":\"ack\",\"id\":2}");
    FRAME_HAS(&a, 3, "{\"op\":\"error\",\"id\":3,\"code\":\"rate_limited\"");
    FRAME_HAS(&a, 4, "{\"op\":\"error\",\"id\":4,\"code\":\"rate_limited\"");
    CHECK_EQ_INT(a.conn.nframes, 5); /* queued replies first, then the close */
    CHECK_EQ_INT(a.conn.close_code, 1008);
    CHECK_STR(a.conn.reason, "rate limited");
    /* closing: nothing new is taken */
    send_text(&a, "{\"op\":\"ping\",\"id\":6}");
    CHECK_EQ_INT(a.conn.wants, 0);
    tc_close(&a);
    CHECK_EQ_UINT(app.metrics->disconnects[DISC_RATE_LIMITED], 1);
    app_free();
}

static void test_slow_consumer_hard_limit(void)
{
    app_init((const char *const[]){"--max-queue-bytes", "2k", NULL});
    struct tc slow, ok;
    tc_open(&slow, 0, NULL);
    tc_open(&ok, 0, NULL);
    send_text(&slow, "{\"op\":\"subscribe\",\"channel\":\"c\"}");
    send_text(&ok, "{\"op\":\"subscribe\",\"channel\":\"c\"}");
    pump(&ok);
    slow.conn.wants = 0; /* its socket never drains */
    char pub[400];
    snprintf(pub, sizeof pub, "{\"op\":\"publish\",\"channel\":\"c\",\"data\":\"%0300d\"}", 0);
    for (int i = 0; i < 10; i++) {
        send_text(&ok, pub);
        pump(&ok);
    }
    CHECK_EQ_INT(slow.conn.aborted, 1);
    CHECK_EQ_INT(slow.conn.close_code, 0); /* reset, no close frame */
    CHECK_EQ_INT(ok.conn.aborted, 0);
    CHECK_EQ_INT(ok.conn.nframes, 1 + 1 + 10 * 2); /* welcome, ack, 10 x (message, ack) */
    tc_close(&slow);
    CHECK_EQ_UINT(app.metrics->queue_bytes, 0);
    CHECK_EQ_UINT(app.metrics->disconnects[DISC_SLOW_CONSUMER], 1);
    tc_close(&ok);
    app_free();
}

static void test_slow_consumer_soft_limit(void)
{
    app_init((const char *const[]){"--queue-soft-bytes", "100", "--queue-soft-seconds",
                                   "0", NULL});
    struct tc a;
    tc_open(&a, 0, NULL);
    send_text(&a, "{\"op\":\"subscribe\",\"channel\":\"c\"}");
    pump(&a);
    client_sweep(&app);
    CHECK_EQ_INT(a.conn.aborted, 0); /* under the soft limit */
    for (int i = 0; i < 3; i++)
        send_text(&a, "{\"op\":\"publish\",\"channel\":\"c\",\"data\":\"0123456789\"}");
    client_sweep(&app);
    CHECK_EQ_INT(a.conn.aborted, 1);
    tc_close(&a);
    app_free();
}

static void test_keepalive(void)
{
    /* intervals of 0: every sweep finds the client silent long enough */
    app_init((const char *const[]){"--ping-interval", "0", "--ping-timeout", "3600", NULL});
    struct tc a;
    tc_open(&a, 0, NULL);
    client_sweep(&app);
    CHECK_EQ_INT(a.conn.pings, 1);
    client_sweep(&app); /* one ping at a time, and not yet timed out */
    CHECK_EQ_INT(a.conn.pings, 1);
    CHECK_EQ_INT(a.conn.aborted, 0);
    client_heard(a.c); /* the pong */
    client_sweep(&app);
    CHECK_EQ_INT(a.conn.pings, 2);
    tc_close(&a);
    app_free();

    app_init((const char *const[]){"--ping-interval", "0", "--ping-timeout", "0", NULL});
    tc_open(&a, 0, NULL);
    client_sweep(&app);
    CHECK_EQ_INT(a.conn.pings, 1);
    client_sweep(&app); /* no answer: reset, no close frame for nobody */
    CHECK_EQ_INT(a.conn.aborted, 1);
    CHECK_EQ_INT(a.conn.close_code, 0);
    tc_close(&a);
    CHECK_EQ_UINT(app.metrics->disconnects[DISC_TIMEOUT], 1);
    app_free();
}

static void test_batch_joins_queued_frames(void)
{
    app_init(NULL);
    struct tc a;
    tc_open(&a, 1, NULL);
    send_text(&a, "{\"op\":\"subscribe\",\"channel\":\"c\",\"id\":1}");
    send_text(&a, "{\"op\":\"publish\",\"channel\":\"c\",\"data\":\"x\\ny\",\"id\":2}");
    CHECK_EQ_INT(pump(&a), 0);
    CHECK_EQ_INT(a.conn.nframes, 1);
    FRAME_HAS(&a, 0, "{\"op\":\"welcome\"");
    CHECK_MSG(a.conn.nframes == 1 && !strcmp(strchr(a.conn.frames[0], '\n'),
              "\n{\"op\":\"ack\",\"id\":1}\n{\"op\":\"message\",\"channel\":\"c\","
              "\"data\":\"x\\ny\"}\n{\"op\":\"ack\",\"id\":2}"),
              "batch: %s", a.conn.nframes ? a.conn.frames[0] : "");
    tc_close(&a);
    app_free();
}

static void test_plain_frames_leave_together(void)
{
    app_init(NULL);
    struct tc a;
    tc_open(&a, 0, NULL);
    send_text(&a, "{\"op\":\"subscribe\",\"channel\":\"c\",\"id\":1}");
    send_text(&a, "{\"op\":\"publish\",\"channel\":\"c\",\"data\":1,\"id\":2}");
    CHECK_EQ_INT(pump(&a), 0);
    /* welcome, ack, message, ack: one frame each, one joined write */
    CHECK_EQ_INT(a.conn.nframes, 4);
    CHECK_EQ_INT(a.conn.joined_writes, 1);
    FRAME_HAS(&a, 0, "{\"op\":\"welcome\"");
    FRAME_HAS(&a, 2, "{\"op\":\"message\",\"channel\":\"c\",\"data\":1}");
    FRAME_HAS(&a, 3, "{\"op\":\"ack\",\"id\":2}");
    CHECK_EQ_UINT(app.metrics->queue_bytes, 0);
    tc_close(&a);
    app_free();
}

static void test_drain_and_close_after_queue(void)
{
    app_init((const char *const[]){"--drain-seconds", "1", NULL});
    struct tc t[10];
    for (int i = 0; i < 10; i++) {
        tc_open(&t[i], 0, NULL);
        pump(&t[i]);
    }
    send_text(&t[0], "{\"op\":\"ping\",\"id\":1}"); /* queued before the drain */
    struct drain d;
    drain_begin(&d, &app, 1000000);
    CHECK_EQ_INT(app.draining, 1);
    CHECK_EQ_INT(d.per_slice, 2); /* 10 clients over 7 slices of 100 ms */
    CHECK_EQ_INT(drain_slice(&d, &app, 1000000 + 50000), 0); /* first 10%: none */
    int closing = 0;
    for (int i = 0; i < 10; i++)
        closing += t[i].conn.wants > 0 && i != 0;
    CHECK_EQ_INT(closing, 0);
    CHECK_EQ_INT(drain_slice(&d, &app, 1000000 + 100000), 0);
    closing = 0;
    for (int i = 0; i < 10; i++) {
        if (t[i].conn.wants && pump(&t[i]) == -1) {
            CHECK_EQ_INT(t[i].conn.close_code, 1001);
            closing++;
        }
    }
    CHECK_EQ_INT(closing, 2);
    for (int i = 0; i < 10; i++)
        if (t[i].conn.close_code)
            tc_close(&t[i]);
    while (!drain_slice(&d, &app, 2000000)) {
        for (int i = 0; i < 10; i++) {
            if (t[i].c && !t[i].conn.close_code && t[i].conn.wants && pump(&t[i]) == -1) {
                CHECK_EQ_INT(t[i].conn.close_code, 1001);
                tc_close(&t[i]);
                t[i].c = NULL;
            }
        }
    }
    CHECK_EQ_INT(app.nclients, 0);
    CHECK_EQ_UINT(app.metrics->disconnects[DISC_DRAIN], 10);
    app_free();
}

static void test_too_large_and_write_failure(void)
{
    app_init(NULL);
    struct tc a, b;
    tc_open(&a, 0, NULL);
    tc_open(&b, 0, NULL);
    client_too_large(a.c);
    CHECK_EQ_INT(a.conn.close_code, 1009);
    CHECK_EQ_INT(client_closing(a.c), 1);
    b.conn.fail_writes = 1;
    CHECK_EQ_INT(pump(&b), -1);
    tc_close(&a);
    tc_close(&b);
    CHECK_EQ_UINT(app.metrics->disconnects[DISC_TOO_LARGE], 1);
    app_free();
}

/* Socket.IO: the open packet, CONNECT, events published as {event,args}
 * on --socketio-channel and delivered to every Socket.IO client (the sender
 * too) and to v1 subscribers, acks, refusals, encoded once. */
static void test_socketio_events(void)
{
    app_init(NULL);
    struct tc a, b, v;
    tc_open_sio(&a, "polling");
    tc_open_sio(&b, "websocket");
    tc_open(&v, 0, NULL);
    send_text(&v, "{\"op\":\"subscribe\",\"channel\":\"socket.io\",\"id\":1}");
    send_text(&a, "422[\"early\"]");
    send_text(&a, "40");
    send_text(&b, "40{\"token\":\"ignored without --auth\"}");
    send_text(&a, "421[\"chat message\",\"salut\",{\"n\":1}]");
    send_text(&b, "42[\"chat message\"]");
    send_text(&v, "{\"op\":\"publish\",\"channel\":\"socket.io\",\"data\":\"plain\"}");
    pump(&a);
    pump(&b);
    pump(&v);
    char open[128];
    snprintf(open, sizeof open, "0{\"sid\":\"%s\",\"upgrades\":[\"websocket\"],"
             "\"pingInterval\":25000,\"pingTimeout\":35000,\"maxPayload\":65536}", client_id(a.c));
    FRAME_IS(&a, 0, open);
    FRAME_IS(&a, 1, "432[{\"error\":\"not_connected\",\"message\":\"send CONNECT (40) before events\"}]");
    snprintf(open, sizeof open, "40{\"sid\":\"%s\"}", client_id(a.c));
    FRAME_IS(&a, 2, open);
    FRAME_IS(&a, 3, "42[\"chat message\",\"salut\",{\"n\":1}]");
    FRAME_IS(&a, 4, "431[]");
    FRAME_IS(&a, 5, "42[\"chat message\"]");
    FRAME_IS(&a, 6, "42[\"message\",\"plain\"]");
    CHECK_EQ_INT(a.conn.nframes, 7);
    FRAME_HAS(&b, 0, "\"upgrades\":[],");
    FRAME_IS(&b, 2, "42[\"chat message\",\"salut\",{\"n\":1}]");
    FRAME_IS(&b, 3, "42[\"chat message\"]"); /* no ack asked, none sent */
    FRAME_IS(&b, 4, "42[\"message\",\"plain\"]");
    CHECK_EQ_INT(b.conn.nframes, 5);
    CHECK_PTR_EQ(a.conn.bufs[3], b.conn.bufs[2]); /* encoded once */
    FRAME_IS(&v, 2, "{\"op\":\"message\",\"channel\":\"socket.io\",\"data\":"
                    "{\"event\":\"chat message\",\"args\":[\"salut\",{\"n\":1}]}}");
    CHECK_EQ_UINT(app.metrics->protocols[codec_sio.slot].open, 2);
    tc_close(&a);
    tc_close(&b);
    tc_close(&v);
    CHECK_EQ_UINT(app.metrics->protocols[codec_sio.slot].open, 0);
    CHECK_EQ_UINT(app.metrics->protocols[codec_sio.slot].opened, 2);
    app_free();
}

/* Socket.IO refusals: another namespace, a bad event, binary, a malformed
 * packet (closes with 1002), DISCONNECT (closes with 1000). */
static void test_socketio_bad_input(void)
{
    app_init(NULL);
    struct tc a;
    tc_open_sio(&a, "websocket");
    send_text(&a, "40/admin,");
    send_text(&a, "40");
    send_text(&a, "423{\"not\":\"an array\"}");
    send_text(&a, "451-4[\"up\",{\"_placeholder\":true,\"num\":0}]");
    client_receive(a.c, "\x01\x02", 2, 1);
    send_text(&a, "3");
    pump(&a);
    FRAME_IS(&a, 1, "44/admin,{\"message\":\"Invalid namespace\"}");
    FRAME_HAS(&a, 2, "40{\"sid\":");
    FRAME_HAS(&a, 3, "433[{\"error\":\"bad_request\"");
    FRAME_HAS(&a, 4, "434[{\"error\":\"binary_unsupported\"");
    FRAME_HAS(&a, 5, "42[\"error\",{\"error\":\"binary_unsupported\"");
    CHECK_EQ_INT(a.conn.nframes, 6);
    CHECK_EQ_INT(client_closing(a.c), 0);
    send_text(&a, "4x");
    CHECK_EQ_INT(pump(&a), -1);
    CHECK_EQ_INT(a.conn.close_code, 1002);
    tc_close(&a);
    tc_open_sio(&a, "websocket");
    send_text(&a, "41");
    CHECK_EQ_INT(pump(&a), -1);
    CHECK_EQ_INT(a.conn.close_code, 1000);
    tc_close(&a);
    CHECK_EQ_UINT(app.metrics->disconnects[DISC_PROTOCOL], 1);
    app_free();
}

/* Engine.IO pings come from the server every --ping-interval whatever the
 * client sends, as "2" frames; no answer within --ping-timeout: reset. */
static void test_socketio_pings(void)
{
    app_init((const char *const[]){"--ping-interval", "0", "--ping-timeout", "0", NULL});
    struct tc a;
    tc_open_sio(&a, "websocket");
    client_sweep(&app);
    pump(&a);
    FRAME_IS(&a, 1, "2");
    CHECK_EQ_INT(a.conn.pings, 0); /* not the transport's ping */
    send_text(&a, "3");
    client_sweep(&app); /* answered: the next ping */
    pump(&a);
    FRAME_IS(&a, 2, "2");
    CHECK_EQ_INT(a.conn.aborted, 0);
    client_sweep(&app); /* no answer */
    CHECK_EQ_INT(a.conn.aborted, 1);
    tc_close(&a);
    CHECK_EQ_UINT(app.metrics->disconnects[DISC_TIMEOUT], 1);
    app_free();
}

int main(void)
{
    RUN(test_welcome_and_ping);
    RUN(test_subscribe_publish_deliver);
    RUN(test_bad_frames_keep_the_connection);
    RUN(test_grants);
    RUN(test_channel_limit);
    RUN(test_rate_limit_closes_with_1008);
    RUN(test_slow_consumer_hard_limit);
    RUN(test_slow_consumer_soft_limit);
    RUN(test_keepalive);
    RUN(test_batch_joins_queued_frames);
    RUN(test_plain_frames_leave_together);
    RUN(test_drain_and_close_after_queue);
    RUN(test_too_large_and_write_failure);
    RUN(test_socketio_events);
    RUN(test_socketio_bad_input);
    RUN(test_socketio_pings);
    return check_summary();
}

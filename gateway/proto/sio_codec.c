/* sio_codec.c - see sio_codec.h. */
#include "proto/sio_codec.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/app.h"
#include "core/client.h"
#include "log.h"
#include "proto/eio.h"
#include "proto/json.h"
#include "proto/sio.h"

/* The client's protocol byte: whether it asked for "/" (events before
 * that are refused). */
enum { NSP_NONE = 0, NSP_ASKED = 1 };

/* Request ids the codec gives the client: an ack id is {1, id}; a CONNECT
 * waiting for its subscription is {REQ_CONNECT, 0}. */
#define REQ_CONNECT 2

static const char *channel_of(struct client *c, size_t *len)
{
    const char *ch = client_app(c)->cfg.socketio_channel;
    *len = strlen(ch);
    return ch;
}

static void refuse(struct client *c, const struct sio_packet *p, const char *code,
                   const char *message)
{
    struct req_id id = {p->has_id, p->id};
    log_info("session %s: socket.io packet refused: %s", client_id(c), message);
    client_reply(c, &id, code, message);
}

static void connect_error(struct client *c, const struct sio_packet *p,
                          const char *code, const char *message)
{
    log_info("session %s: socket.io CONNECT refused: %s", client_id(c), message);
    client_send(c, sio_encode_connect_error(p->nsp, p->nsp_len, code, message));
}

/* auth.token, when --auth is on: verified as /ws?token= is. Returns 0, or
 * -1 after answering CONNECT_ERROR. */
static int authenticate(struct client *c, const struct sio_packet *p)
{
    const struct app *app = client_app(c);
    static const char *const keys[] = {"token"};
    struct json_span tok = {0};
    char token[AUTH_TOKEN_MAX + 1];
    long n = -1;
    if (!app->auth)
        return 0;
    if (p->data && json_object(p->data, p->data_len, keys, &tok, 1) == 0 && tok.text)
        n = json_string_ascii(&tok, token, sizeof token);
    if (!tok.text) {
        if (app->cfg.auth_mode == AUTH_MODE_REQUIRED && !client_has_claims(c)) {
            connect_error(c, p, "token_missing", "a connect token is required (auth.token)");
            return -1;
        }
        return 0;
    }
    struct auth_claims *claims;
    struct auth_error err = {.code = "bad_token",
                             .message = "auth.token must be a string holding a token"};
    if (n < 0 || auth_verify(app->auth, token, (size_t)n, (int64_t)time(NULL), &claims,
                             &err) < 0) {
        connect_error(c, p, err.code, err.message);
        return -1;
    }
    client_set_claims(c, claims);
    return 0;
}

static void on_connect(struct client *c, const struct sio_packet *p)
{
    if (authenticate(c, p) < 0)
        return;
    *client_proto_state(c) = NSP_ASKED;
    size_t len;
    const char *ch = channel_of(c, &len);
    client_subscribe(c, ch, len, &(struct req_id){REQ_CONNECT, 0}, NULL);
}

static void on_event(struct client *c, const struct sio_packet *p)
{
    if (*client_proto_state(c) != NSP_ASKED) {
        refuse(c, p, "not_connected", "send CONNECT (40) before events");
        return;
    }
    const char *why;
    size_t plen, len;
    char *payload = sio_event_payload(p->data, p->data_len, &plen, &why);
    if (!payload) {
        refuse(c, p, why ? "bad_request" : "internal", why ? why : "out of memory");
        return;
    }
    const char *ch = channel_of(c, &len);
    client_publish(c, ch, len, payload, plen, &(struct req_id){p->has_id, p->id});
    free(payload);
}

/* One Socket.IO packet (an Engine.IO message's data). */
static void on_message(struct client *c, const char *buf, size_t len)
{
    struct sio_packet p;
    const char *why;
    if (sio_parse(buf, len, &p, &why) < 0) {
        log_info("session %s: malformed socket.io packet: %s", client_id(c), why);
        client_close(c, DISC_PROTOCOL);
        return;
    }
    if (p.nsp_len != 1) {
        if (p.type == SIO_CONNECT)
            connect_error(c, &p, NULL, "Invalid namespace");
        else
            log_info("session %s: socket.io packet for %.*s ignored: not connected",
                     client_id(c), (int)(p.nsp_len > 64 ? 64 : p.nsp_len), p.nsp);
        return;
    }
    switch (p.type) {
    case SIO_CONNECT:
        on_connect(c, &p);
        break;
    case SIO_DISCONNECT: /* "/" is the only namespace: the session ends */
        client_close(c, DISC_CLIENT);
        break;
    case SIO_EVENT:
        on_event(c, &p);
        break;
    case SIO_ACK: /* the gateway never asks the client for acks */
        log_info("session %s: socket.io ACK %lld ignored: none was asked", client_id(c),
                 (long long)p.id);
        break;
    case SIO_BINARY_EVENT:
    case SIO_BINARY_ACK:
        refuse(c, &p, "binary_unsupported", "binary events are not supported");
        break;
    case SIO_CONNECT_ERROR:
        log_info("session %s: CONNECT_ERROR is a server packet", client_id(c));
        client_close(c, DISC_PROTOCOL);
        break;
    }
}

static void receive(struct client *c, const char *buf, size_t len, int binary)
{
    int t = binary ? EIO_BINARY : eio_type(buf, len);
    switch (t) {
    case EIO_MESSAGE:
        on_message(c, buf + 1, len - 1);
        break;
    case EIO_PONG: /* client_receive() has noted the peer is alive */
    case EIO_NOOP:
    case EIO_UPGRADE: /* the transport handles upgrades; a late one is harmless */
        break;
    case EIO_PING: /* the server pings in v4; answer anyway */
        client_send(c, eio_encode_bare(EIO_PONG));
        break;
    case EIO_CLOSE:
        client_close(c, DISC_CLIENT);
        break;
    case EIO_BINARY:
        client_reply(c, &(struct req_id){0, 0}, "binary_unsupported",
                     "binary packets are not supported");
        log_info("session %s: binary engine.io packet refused", client_id(c));
        break;
    default:
        log_info("session %s: malformed engine.io packet", client_id(c));
        client_close(c, DISC_PROTOCOL);
        break;
    }
}

static struct msg *welcome(const struct app *app, const char *session,
                           const char *transport)
{
    return eio_encode_open(session, !strcmp(transport, "polling"), app->cfg.ping_interval,
                           app->cfg.ping_timeout, app->cfg.max_message_size);
}

static struct msg *reply(const char *session, const struct req_id *id,
                         const char *code, const char *message)
{
    if (id->has == REQ_CONNECT) /* a second CONNECT finds "/" joined: fine */
        return !code || !strcmp(code, "already_subscribed")
                   ? sio_encode_connected(session)
                   : sio_encode_connect_error("/", 1, code, message);
    if (id->has)
        return sio_encode_ack(id->v, code, message);
    return sio_encode_error_event(code, message);
}

static struct msg *delivery(const struct delivery *d)
{
    return sio_encode_delivery(d->payload, d->payload_len);
}

static struct msg *ping(void)
{
    return eio_encode_bare(EIO_PING);
}

const struct codec codec_sio = {
    .name = "socketio",
    .slot = 1,
    .batch_sep = 0,
    .quiet_acks = 1,
    .receive = receive,
    .welcome = welcome,
    .reply = reply,
    .ping = ping,
    .delivery = delivery,
};

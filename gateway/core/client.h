/* client.h - one connected client, whatever its wire protocol: its send
 * queue, grants, publish bucket, limits and close reasons.
 *
 * The network layer opens a client when a connection is established (with
 * the codec its route chose and a struct conn to write through), hands it
 * every complete inbound message (client_receive), tells it when the peer
 * can take more (client_writable) and when the connection is gone
 * (client_gone). The codec parses what arrives and calls the request
 * functions below; the client applies grants and limits, talks to the hub
 * and the broker, and queues what the codec encodes (bounded by
 * --max-queue-bytes: a client over the bound is cut off as a slow consumer).
 *
 * Ownership: the client is owned by its connection until client_gone(),
 * and also by each of its publishes still awaiting the broker; it is freed
 * when the last of these lets go. After client_gone() it never touches the
 * conn again. */
#ifndef WSGATE_CLIENT_H
#define WSGATE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "core/app.h"
#include "core/conn.h"
#include "core/hub.h"
#include "core/metrics.h"
#include "proto/codec.h"

struct client;

/* The callbacks the hub uses to reach clients. */
extern const struct hub_callbacks client_hub_callbacks;

/* Options of a new connection, decided by the network layer. */
struct client_opts {
    const struct codec *codec;
    struct conn *conn;
    const struct conn_ops *ops;
    const char *peer;            /* remote address, for logs; copied */
    const char *transport;       /* for the codec's welcome; NULL: "websocket" */
    int batch;                   /* joins queued frames (codec->batch_sep) */
    struct auth_claims *claims;  /* verified token's, or NULL: anonymous */
};

/* Opens a client and queues the codec's welcome. The client takes over
 * o->claims on success. Returns NULL when out of memory (the caller refuses
 * the connection and keeps the claims). */
struct client *client_open(struct app *app, const struct client_opts *o);

/* One complete inbound message, handed to the codec. */
void client_receive(struct client *c, const char *buf, size_t len, int binary);

/* The peer is alive: a pong (or any frame) came in. */
void client_heard(struct client *c);

/* The peer can take more: writes the next queued frame (or batch). Returns
 * -1 when the connection must now close (its close frame has been set
 * through conn_ops.close, or it failed), else 0. */
int client_writable(struct client *c);

/* The connection is gone: drops subscriptions and the queue. */
void client_gone(struct client *c);

/* The inbound message being received is over --max-message-size: records
 * why and sets the 1009 close frame; the caller closes now. */
void client_too_large(struct client *c);

/* Asks for a graceful close, with the code and reason of why, once the
 * queue has been written. */
void client_close(struct client *c, enum disconnect_reason why);

/* client_close() on up to n clients not already closing; returns how many. */
unsigned client_close_some(struct app *app, enum disconnect_reason why, unsigned n);

/* The once-a-second sweep: cuts off clients whose queue stayed over
 * --queue-soft-bytes for --queue-soft-seconds, closes those whose token
 * has expired (4001), pings clients silent for --ping-interval and resets
 * those still silent --ping-timeout later. Costs only the clients with a
 * deadline reached (app->timers), not one look at every client. */
void client_sweep(struct app *app);

/* The connection changed under the client (an Engine.IO session upgraded
 * from long-polling to a WebSocket): from now on it writes through conn.
 * The previous conn is no longer touched. */
void client_rebind(struct client *c, struct conn *conn, const struct conn_ops *ops);

/* ---- for codecs -------------------------------------------------------- */

const struct app *client_app(const struct client *c);
/* The session id: 16 hex digits, unique across nodes. */
const char *client_id(const struct client *c);
/* One byte the codec keeps per connection (0 at open). */
unsigned char *client_proto_state(struct client *c);
int client_has_claims(const struct client *c);
/* Replaces the client's claims by those of a token verified later (a
 * Socket.IO CONNECT); the client takes them over. */
void client_set_claims(struct client *c, struct auth_claims *claims);

/* ---- requests: called by codecs ---------------------------------------- */

/* Queues a frame the codec built (its reference is taken over; NULL is
 * logged as out of memory). */
void client_send(struct client *c, struct msg *m);

/* Queues the codec's reply to id: an ack when code is NULL, else an error. */
void client_reply(struct client *c, const struct req_id *id, const char *code,
                  const char *message);

/* Each answers through client_reply() exactly once, now or when the broker
 * has answered. channel: a valid name of len bytes. */
/* o: recover from a position, presence events (NULL: none). */
void client_subscribe(struct client *c, const char *channel, size_t len,
                      const struct req_id *id, const struct hub_sub_opts *o);
void client_unsubscribe(struct client *c, const char *channel, size_t len,
                        const struct req_id *id);
void client_publish(struct client *c, const char *channel, size_t len,
                    const char *data, size_t data_len, const struct req_id *id);

/* Who is subscribed to channel (stats: only the counts), on every node;
 * needs a subscribe grant. Answers once, now or when the broker has. */
void client_presence(struct client *c, const char *channel, size_t len,
                     const struct req_id *id, int stats);

/* 1 while the client takes no new requests (closing or cut off). */
int client_closing(const struct client *c);

/* 1 while client_writable() has something to write: frames, or the close. */
int client_owes_write(const struct client *c);

#endif

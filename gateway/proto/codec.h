/* codec.h - what a wire protocol provides to the rest of the gateway.
 *
 * A client (core/client.h) knows nothing of any wire format: it hands each
 * complete inbound message to its codec's receive(), which parses it and
 * drives the client through client.h, and it asks the codec for the frames
 * it sends (replies, deliveries). The HTTP router (net/ws.c) maps a path to
 * a codec, so a new protocol is one file plus one route.
 *
 * Frames are struct msg with one reference owned by the caller (NULL when
 * out of memory). Codecs hold no per-client state of their own: what a
 * protocol must remember per connection lives in the client. */
#ifndef WSGATE_CODEC_H
#define WSGATE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "core/delivery.h"
#include "core/msg.h"
#include "core/presence.h"

struct app;
struct client;

/* The id a client gave a request, echoed in its reply. */
struct req_id {
    int has;
    int64_t v;
};

/* What an ack tells about a channel's history. */
struct ack_position {
    const struct position *pos; /* publish: the message's position; subscribe:
                                   the channel's epoch and top offset; may be NULL */
    int recover;                /* subscribe asked to recover */
    const char *unrecovered;    /* with recover: NULL recovered, else why not */
};

struct codec {
    const char *name; /* "v1": in logs and metrics */
    unsigned slot;    /* its frame slot in struct delivery, < DELIVERY_CODECS */
    /* The separator of batched frames (several objects in one frame), or 0
     * when the protocol cannot batch. */
    char batch_sep;
    /* 1: a request without an id gets no ack (errors still get a frame). */
    unsigned char quiet_acks;
    /* One complete inbound message; binary: it came as a binary frame. */
    void (*receive)(struct client *c, const char *buf, size_t len, int binary);
    /* The first frame of a connection; transport: "websocket" or
     * "polling" (what the client may still upgrade from). It tells the
     * client the largest inbound message (--max-message-size), so it can
     * refuse a bigger one before sending it instead of being closed. */
    struct msg *(*welcome)(const struct app *app, const char *session,
                           const char *transport);
    /* The answer to request id of client session: an ack when code is
     * NULL, else an error with a snake_case code and one human sentence. */
    struct msg *(*reply)(const char *session, const struct req_id *id,
                         const char *code, const char *message);
    /* The protocol's own ping frame (queued like any frame; the answer is
     * any inbound message), or NULL: the transport pings. */
    struct msg *(*ping)(void);
    /* A delivery, encoded once for every subscriber of this protocol. */
    struct msg *(*delivery)(const struct delivery *d);
    /* Optional (NULL: acks stay plain, losses go unreported): an ack with
     * history positions, and the notice that messages on a subscribed
     * channel were lost for good (why: a snake_case reason) and delivery
     * goes on after top. */
    struct msg *(*ack)(const struct req_id *id, const struct ack_position *a);
    struct msg *(*lost)(const char *channel, size_t len, const char *why,
                        const struct position *top);
    /* Optional (NULL: presence requests get a plain ack): the answer to a
     * presence request, the member list or (stats) only the counts. */
    struct msg *(*presence)(const struct req_id *id, const char *channel, size_t len,
                            const struct presence_read *r, int stats);
    /* Optional (NULL: not reported): a session joined or left a channel. */
    struct msg *(*presence_event)(const char *channel, size_t len, int join,
                                  const struct presence_member *m);
};

/* The codec's frame for d, encoded on first use; borrowed from d. */
static inline struct msg *codec_frame(const struct codec *codec,
                                      struct delivery *d)
{
    struct msg **slot = &d->frames[codec->slot];
    if (!*slot && (*slot = codec->delivery(d)))
        (*slot)->born_us = d->born_us;
    return *slot;
}

#endif

/* v1.h - client protocol v1: frame parsing and encoding, no I/O.
 *
 * Parsing is one pass of the strict scanner (proto/json.h) that also picks
 * out the members a request uses; no JSON tree is built. A parsed request
 * points into the caller's frame for its payload (data: the "data" member's
 * text exactly as sent), so it is valid only as long as that buffer.
 * Encoders return a new struct msg (core/msg.h) with one reference, or NULL
 * when out of memory; the caller owns that reference. Errors carry static
 * strings only. The codec built on these is proto/v1_codec.c. */
#ifndef WSGATE_V1_H
#define WSGATE_V1_H

#include <stddef.h>
#include <stdint.h>

#include "core/channel.h"
#include "core/delivery.h"
#include "core/history.h"
#include "core/msg.h"
#include "proto/codec.h"

enum v1_op { OP_SUBSCRIBE, OP_UNSUBSCRIBE, OP_PUBLISH, OP_PING, OP_PRESENCE,
             OP_PRESENCE_STATS };

struct v1_req {
    enum v1_op op;
    struct req_id id;
    char channel[CHANNEL_MAX + 1]; /* NUL-terminated, validated */
    size_t channel_len;
    const char *data; /* publish only: borrowed from the parsed buffer */
    size_t data_len;
    int has_recover;  /* subscribe only: "recover":{"epoch":E,"offset":N} */
    struct position recover;
    int presence_events; /* subscribe only: "presence":true */
};

struct v1_error {
    const char *code;    /* bad_json, bad_request, unknown_op, bad_channel
                            (a malformed "recover" is bad_request) */
    const char *message; /* one human sentence */
    struct req_id id;    /* the bad frame's id, when it had a valid one */
};

/* Parses one client frame of len bytes (need not be NUL-terminated).
 * Returns 0 with req filled, or -1 with err. */
int v1_parse_request(const char *buf, size_t len, struct v1_req *req,
                     struct v1_error *err);

/* Parses the body of POST /api/publish: {"channel":C,"data":<JSON>}. Fills
 * req->channel and req->data as for a publish frame. Returns 0 or -1. */
int v1_parse_publish_body(const char *buf, size_t len, struct v1_req *req,
                          struct v1_error *err);

/* {"op":"message","channel":C[,"offset":N,"epoch":E],"data":<data>}; the
 * delivery's channel and payload must be valid (neither is escaped: both
 * are safe as they are). Raw newlines in the payload are blanked so batched
 * frames split on '\n'. */
struct msg *v1_encode_message(const struct delivery *d);
/* The body of a POST /api/publish success: {"ok":true[,"offset":N,"epoch":E]} */
struct msg *v1_encode_published(const struct position *pos);
/* The body of GET /api/history: {"epoch":E,"offset":top,"messages":
 * [{"offset":N,"data":<json>},...]}; entries that are not valid JSON are
 * left out. */
struct msg *v1_encode_history(const struct history_read *r);
/* The JSON body of an HTTP API error: {"error":code,"message":message} */
struct msg *v1_encode_http_error(const char *code, const char *message);
/* {"op":"welcome","node":..,"session":..,"max_message":N} */
struct msg *v1_encode_welcome(const char *node, const char *session, size_t max_message);
/* {"op":"ack"[,"id":N]} when code is NULL, else an error frame. */
struct msg *v1_encode_reply(const struct req_id *id, const char *code,
                            const char *message);
struct msg *v1_encode_pong(const struct req_id *id);
/* {"op":"ack"[,"id":N][,"epoch":E,"offset":N][,"recovered":B[,"reason":R]]} */
struct msg *v1_encode_ack(const struct req_id *id, const struct ack_position *a);
/* {"op":"presence","id":N,"channel":C,"members":[{"session":S,"node":N
 * [,"sub":U]},...]}, or with stats {"op":"presence_stats","id":N,
 * "channel":C,"sessions":n,"users":distinct subs}. */
struct msg *v1_encode_presence(const struct req_id *id, const char *channel, size_t len,
                               const struct presence_read *r, int stats);
/* The body of GET /api/presence: {"channel":C,"sessions":n,"users":u,
 * "members":[...]} */
struct msg *v1_encode_presence_http(const char *channel, size_t len,
                                    const struct presence_read *r);
/* {"op":"join"|"leave","channel":C,"session":S,"node":N[,"sub":U]} */
struct msg *v1_encode_presence_event(const char *channel, size_t len, int join,
                                     const struct presence_member *m);
/* {"op":"lost","channel":C,"reason":R,"epoch":E,"offset":N} */
struct msg *v1_encode_lost(const char *channel, size_t len, const char *why,
                           const struct position *top);

#endif

/* proto.h - client protocol v1: frame parsing and encoding, no I/O.
 *
 * Parsing uses cJSON. A parsed publish points into the caller's frame for
 * its payload (data: the "data" member's text exactly as sent), so it is
 * valid only as long as that buffer. Encoders return a
 * new struct msg (see msg.h) with one reference, or NULL when out of memory;
 * the caller owns that reference. Errors carry static strings only. */
#ifndef WSGATE_PROTO_H
#define WSGATE_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "core/msg.h"

#include "core/channel.h"

#define PROTO_CHANNEL_MAX CHANNEL_MAX

enum proto_op { OP_SUBSCRIBE, OP_UNSUBSCRIBE, OP_PUBLISH, OP_PING };

struct proto_req {
    enum proto_op op;
    int has_id;
    int64_t id;
    char channel[PROTO_CHANNEL_MAX + 1]; /* NUL-terminated, validated */
    size_t channel_len;
    const char *data; /* publish only: borrowed from the parsed buffer */
    size_t data_len;
};

struct proto_error {
    const char *code;    /* bad_json, bad_request, unknown_op, bad_channel */
    const char *message; /* one human sentence */
    int has_id;          /* the id of the bad frame, when it had a valid one */
    int64_t id;
};

/* Parses one client frame of len bytes (need not be NUL-terminated).
 * Returns 0 with req filled, or -1 with err. */
int proto_parse_request(const char *buf, size_t len, struct proto_req *req,
                        struct proto_error *err);

/* Parses the body of POST /api/publish: {"channel":C,"data":<JSON>}. Fills
 * req->channel and req->data as for a publish frame. Returns 0 or -1. */
int proto_parse_publish_body(const char *buf, size_t len,
                             struct proto_req *req, struct proto_error *err);

/* 1 when name is 1..200 bytes of A-Z a-z 0-9 _ - . : @ / */
int proto_channel_valid(const char *name, size_t len);

/* 1 when buf holds exactly one JSON value (surrounding whitespace allowed)
 * in valid UTF-8. buf need not be NUL-terminated. */
int proto_json_valid(const char *buf, size_t len);

/* {"op":"message","channel":C,"data":<data>}; data must be valid JSON and
 * channel a valid name (neither is escaped: both are safe as they are). */
struct msg *proto_encode_message(const char *channel, size_t channel_len,
                                 const char *data, size_t data_len);
/* The JSON body of an HTTP API error: {"error":code,"message":message} */
struct msg *proto_encode_http_error(const char *code, const char *message);
struct msg *proto_encode_welcome(const char *node, const char *session);
struct msg *proto_encode_ack(int has_id, int64_t id);
struct msg *proto_encode_pong(int has_id, int64_t id);
struct msg *proto_encode_error(int has_id, int64_t id, const char *code,
                               const char *message);

#endif

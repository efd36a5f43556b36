/* sio.h - Socket.IO v5 packets, no I/O.
 *
 * A Socket.IO packet travels as the data of an Engine.IO message packet
 * ("4" + packet): <type digit>[<attachments>-][<namespace>,][<ack id>][<JSON>].
 * Types: 0 CONNECT, 1 DISCONNECT, 2 EVENT, 3 ACK, 4 CONNECT_ERROR,
 * 5 BINARY_EVENT, 6 BINARY_ACK.
 *
 * wsgate carries events on one channel as {"event":E,"args":[...]}, the
 * form every other publisher (v1 clients, POST /api/publish, Redis) uses
 * too: sio_event_payload() turns an EVENT's ["E",...] into it, and
 * sio_encode_delivery() turns it back into 42["E",...] for Socket.IO
 * clients. Parsed packets point into the caller's buffer. Encoders return
 * a new struct msg with one reference owned by the caller (the whole
 * Engine.IO packet, "4" included), or NULL when out of memory. */
#ifndef WSGATE_SIO_H
#define WSGATE_SIO_H

#include <stddef.h>
#include <stdint.h>

#include "core/msg.h"
#include "proto/json.h"

enum sio_type {
    SIO_CONNECT = 0,
    SIO_DISCONNECT,
    SIO_EVENT,
    SIO_ACK,
    SIO_CONNECT_ERROR,
    SIO_BINARY_EVENT,
    SIO_BINARY_ACK
};

#define SIO_ID_MAX 9007199254740991LL /* ack ids: JavaScript safe integers */

struct sio_packet {
    enum sio_type type;
    const char *nsp;  /* "/" when the packet names none */
    size_t nsp_len;
    int has_id;
    int64_t id;       /* ack id, when has_id */
    const char *data; /* JSON text (validated), or NULL when absent */
    size_t data_len;
};

/* Parses one Socket.IO packet of len bytes (the Engine.IO message data,
 * without its "4"). Binary types parse (the caller refuses them). Returns
 * 0, or -1 with *why set to one static human sentence. */
int sio_parse(const char *buf, size_t len, struct sio_packet *p, const char **why);

/* The channel payload of an EVENT's data ["E",a,b...]: a NUL-terminated
 * malloc'd {"event":"E","args":[a,b...]} (the caller frees it), its length
 * in *out_len. NULL with *why set when data is not an array starting with
 * a string, or with *why NULL when out of memory. */
char *sio_event_payload(const char *data, size_t len, size_t *out_len, const char **why);

/* Whether a channel payload (valid JSON) is an event that Socket.IO
 * clients get as such: {"event":E,"args":[...]} with E a string the client
 * does not reserve. Returns 1 with the spans of E (a JSON string) and of the
 * args array (brackets included), else 0: the payload travels whole as the
 * one argument of the event "message". */
int sio_payload_event(const char *payload, size_t len, struct json_span *name,
                      struct json_span *args);

/* 42["E",a,b...] for a channel payload {"event":"E","args":[a,b...]}
 * (valid JSON, as delivered); any other payload P, and one naming an event
 * the client reserves ("connect", "disconnect", ...), arrives as the event
 * "message": 42["message",P]. */
struct msg *sio_encode_delivery(const char *payload, size_t len);

/* 40{"sid":S}: the namespace "/" is connected. */
struct msg *sio_encode_connected(const char *sid);
/* 44[<nsp>,]{"message":M[,"data":{"code":C}]} (code may be NULL). */
struct msg *sio_encode_connect_error(const char *nsp, size_t nsp_len,
                                     const char *code, const char *message);
/* 43<id>[] when code is NULL, else 43<id>[{"error":C,"message":M}]. */
struct msg *sio_encode_ack(int64_t id, const char *code, const char *message);
/* 42["error",{"error":C,"message":M}]: a refusal nobody asked an ack for. */
struct msg *sio_encode_error_event(const char *code, const char *message);

#endif

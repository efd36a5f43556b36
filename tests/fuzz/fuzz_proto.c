/* fuzz_proto.c - libFuzzer entry point for client frames: the strict JSON
 * scanner and the request parser, and the frame built from what they accept.
 *
 * Besides crashes (ASan/UBSan), it aborts when an accepted request breaks a
 * rule the rest of the gateway relies on: a valid channel name; publish data
 * that lies inside the frame and is itself valid JSON; and a message frame
 * built from them that is valid JSON without a raw newline (batch mode
 * splits on '\n'). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/json.h"
#include "proto/v1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct proto_req req;
    struct proto_error err;
    json_valid(buf, size);
    if (proto_parse_request(buf, size, &req, &err) < 0) {
        if (!err.code || !err.message)
            abort();
        return 0;
    }
    if (req.op == OP_PING)
        return 0;
    if (!proto_channel_valid(req.channel, req.channel_len) ||
        strlen(req.channel) != req.channel_len)
        abort();
    if (req.op != OP_PUBLISH)
        return 0;
    if (req.data < buf || req.data + req.data_len > buf + size ||
        !json_valid(req.data, req.data_len))
        abort();
    struct msg *m = proto_encode_message(req.channel, req.channel_len, req.data,
                                         req.data_len);
    if (!m)
        return 0;
    if (!json_valid((const char *)msg_data(m), m->len) ||
        memchr(msg_data(m), '\n', m->len))
        abort();
    msg_unref(m);
    return 0;
}

/* fuzz_proto.c - libFuzzer entry point for client frames and HTTP publish
 * bodies: the strict JSON scanner, the one-pass request parser, and the
 * frame built from what they accept.
 *
 * Besides crashes (ASan/UBSan), it aborts when an accepted request breaks a
 * rule the rest of the gateway relies on: the one-pass scan agrees with
 * plain validation; a valid channel name; publish data that lies inside the
 * frame and is itself valid JSON; and a message frame built from them that
 * is valid JSON without a raw newline (batch mode splits on '\n'). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/channel.h"
#include "proto/json.h"
#include "proto/v1.h"

static void check_accepted(const char *buf, size_t size, const struct v1_req *req)
{
    if (req->op == OP_PING)
        return;
    if (!channel_name_valid(req->channel, req->channel_len) ||
        strlen(req->channel) != req->channel_len)
        abort();
    if (req->has_recover) { /* a valid position, and an ack that tells it is JSON */
        if (req->op != OP_SUBSCRIBE ||
            !position_epoch_valid(req->recover.epoch, strlen(req->recover.epoch)) ||
            req->recover.offset > 9007199254740991ULL)
            abort();
        struct msg *a = v1_encode_ack(&req->id, &(struct ack_position){
            .pos = &req->recover, .recover = 1, .unrecovered = "trimmed"});
        if (a && !json_valid((const char *)msg_data(a), a->len))
            abort();
        msg_unref(a);
    }
    if (req->op != OP_PUBLISH)
        return;
    if (req->data < buf || req->data + req->data_len > buf + size ||
        !json_valid(req->data, req->data_len))
        abort();
    struct delivery d = {.channel = req->channel, .channel_len = req->channel_len,
                         .payload = req->data, .payload_len = req->data_len};
    struct msg *m = v1_encode_message(&d);
    if (!m)
        return;
    if (!json_valid((const char *)msg_data(m), m->len) ||
        memchr(msg_data(m), '\n', m->len))
        abort();
    msg_unref(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct v1_req req;
    struct v1_error err;
    int valid = json_valid(buf, size);
    if ((json_object(buf, size, NULL, NULL, 0) == JSON_INVALID) == valid)
        abort();
    if (v1_parse_request(buf, size, &req, &err) == 0)
        check_accepted(buf, size, &req);
    else if (!err.code || !err.message)
        abort();
    if (v1_parse_publish_body(buf, size, &req, &err) == 0)
        check_accepted(buf, size, &req);
    else if (!err.code || !err.message)
        abort();
    return 0;
}

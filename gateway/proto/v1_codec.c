/* v1_codec.c - protocol v1 as a codec (proto/codec.h): each inbound frame
 * is parsed once (proto/v1.h) and turned into client requests; replies,
 * welcome and deliveries are v1 frames; batched frames join with '\n'. */
#include "proto/v1_codec.h"

#include "core/app.h"
#include "core/client.h"
#include "proto/v1.h"

static void receive(struct client *c, const char *buf, size_t len, int binary)
{
    struct v1_req req;
    struct v1_error err;
    if (binary) {
        client_reply(c, &(struct req_id){0, 0}, "bad_request",
                     "binary frames are not supported");
        return;
    }
    if (v1_parse_request(buf, len, &req, &err) < 0) {
        client_reply(c, &err.id, err.code, err.message);
        return;
    }
    switch (req.op) {
    case OP_PING:
        client_send(c, v1_encode_pong(&req.id));
        break;
    case OP_SUBSCRIBE:
        client_subscribe(c, req.channel, req.channel_len, &req.id,
                         &(struct hub_sub_opts){req.has_recover ? &req.recover : NULL,
                                                req.presence_events});
        break;
    case OP_UNSUBSCRIBE:
        client_unsubscribe(c, req.channel, req.channel_len, &req.id);
        break;
    case OP_PUBLISH:
        client_publish(c, req.channel, req.channel_len, req.data, req.data_len, &req.id);
        break;
    case OP_PRESENCE:
    case OP_PRESENCE_STATS:
        client_presence(c, req.channel, req.channel_len, &req.id, req.op == OP_PRESENCE_STATS);
        break;
    }
}

static struct msg *welcome(const struct app *app, const char *session,
                           const char *transport)
{
    (void)transport;
    return v1_encode_welcome(app->node_id, session, app->cfg.max_message_size);
}

static struct msg *reply(const char *session, const struct req_id *id,
                         const char *code, const char *message)
{
    (void)session;
    return v1_encode_reply(id, code, message);
}

const struct codec codec_v1 = {
    .name = "v1",
    .slot = 0,
    .batch_sep = '\n',
    .receive = receive,
    .welcome = welcome,
    .reply = reply,
    .delivery = v1_encode_message,
    .ack = v1_encode_ack,
    .lost = v1_encode_lost,
    .presence = v1_encode_presence,
    .presence_event = v1_encode_presence_event,
};

/* sio_codec.h - Engine.IO v4 / Socket.IO v5 on namespace "/" (at
 * /socket.io/) as a codec. Stateless beyond one byte per client (kept in
 * the client: whether "/" is connected); lives for the process.
 *
 * Frames are Engine.IO packets, one per WebSocket frame or per polling
 * payload element. A CONNECT subscribes the client to --socketio-channel
 * (a connect token in auth.token is checked as /ws?token= is); an EVENT
 * ["E",a...] is published there as {"event":"E","args":[a...]}, and
 * everything published there reaches every connected Socket.IO client as
 * 42["E",a...], the sender's own included (io.emit). Acks answer 43<id>[]
 * once the broker took the event; refusals answer 43<id>[{"error":...}] or,
 * without an ack id, an "error" event. Binary packets are refused. */
#ifndef WSGATE_SIO_CODEC_H
#define WSGATE_SIO_CODEC_H

#include "proto/codec.h"

extern const struct codec codec_sio;

#endif

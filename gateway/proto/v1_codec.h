/* v1_codec.h - client protocol v1 (JSON objects with an "op", at /ws) as a
 * codec. Stateless; lives for the process. */
#ifndef WSGATE_V1_CODEC_H
#define WSGATE_V1_CODEC_H

#include "proto/codec.h"

extern const struct codec codec_v1;

#endif

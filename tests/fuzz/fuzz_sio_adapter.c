/* fuzz_sio_adapter.c - libFuzzer entry point for what arrives on the Socket.IO
 * redis-adapter channel socket.io#/# (--socketio-redis-adapter): any bytes,
 * decoded as MessagePack [uid, packet, opts] into a verdict.
 *
 * Besides crashes (ASan/UBSan), it aborts when a rule the gateway relies on
 * breaks: a verdict is one of enum adapter_verdict; only a delivered message
 * yields a payload, and that payload is a valid JSON object
 * {"event":...,"args":[...]}; encoded again under a Node server's uid it
 * decodes as delivered once more, to valid JSON (what wsgate publishes,
 * Node reads and other replicas would read).
 *
 * msgpack-c 4.0 allocates a container's declared length before reading its
 * elements, so a few bytes declaring an array32 or map32 of billions ask for
 * gigabytes: in the gateway malloc fails and the message counts as
 * malformed (or the reservation is untouched and freed at once), but here
 * libFuzzer would report the big malloc itself. Inputs holding either
 * header byte (0xdd, 0xdf) are skipped; 16-bit lengths cost at most ~3 MB. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/json.h"
#include "proto/sio_adapter.h"

static int delivered_ok(const char *p, size_t n)
{
    static const char head[] = "{\"event\":";
    return n >= sizeof head - 1 && !memcmp(p, head, sizeof head - 1) && json_valid(p, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *payload = NULL, *again = NULL, *msg;
    size_t n, m, n2;
    const char *why = NULL;
    if (memchr(data, 0xdd, size) || memchr(data, 0xdf, size))
        return 0;
    int v = sio_adapter_decode((const char *)data, size, &payload, &n, &why);
    if (v < -1 || v >= ADAPTER_VERDICTS || (v != ADAPTER_DELIVERED && payload) ||
        (v != ADAPTER_DELIVERED && v != ADAPTER_FROM_WSGATE && v >= 0 && !why))
        abort();
    if (v != ADAPTER_DELIVERED)
        return 0;
    if (!delivered_ok(payload, n))
        abort();
    if ((msg = sio_adapter_encode("nodeUi", payload, n, &m))) {
        if (sio_adapter_decode(msg, m, &again, &n2, &why) != ADAPTER_DELIVERED ||
            !delivered_ok(again, n2))
            abort();
        free(again);
        free(msg);
    }
    free(payload);
    return 0;
}

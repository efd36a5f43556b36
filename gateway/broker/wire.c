/* wire.c - see wire.h. */
#include "broker/wire.h"

#include <string.h>

int wire_offset(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len < 1 || len > 16 || s[0] == '0')
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > WIRE_OFFSET_MAX)
        return -1;
    *out = v;
    return 0;
}

int wire_parse(const char *buf, size_t len, struct position *pos, size_t *skip)
{
    if (len == 0 || buf[0] != '#')
        return 0;
    const char *end = buf + len;
    const char *sp1 = memchr(buf + 1, ' ', len - 1);
    if (!sp1 || wire_offset(buf + 1, (size_t)(sp1 - buf - 1), &pos->offset) < 0)
        return -1;
    const char *e = sp1 + 1;
    const char *sp2 = memchr(e, ' ', (size_t)(end - e));
    if (!sp2 || !position_epoch_valid(e, (size_t)(sp2 - e)))
        return -1;
    memcpy(pos->epoch, e, (size_t)(sp2 - e));
    pos->epoch[sp2 - e] = '\0';
    *skip = (size_t)(sp2 + 1 - buf);
    return 1;
}

/* The next space-separated word of [*p, end) into out (cap bytes, NUL
 * included; empty allowed only when last). Returns 0 or -1. */
static int word(const char **p, const char *end, char *out, size_t cap, int last)
{
    const char *sp = last ? end : memchr(*p, ' ', (size_t)(end - *p));
    if (!sp || (size_t)(sp - *p) >= cap || (!last && sp == *p) ||
        memchr(*p, ' ', (size_t)(sp - *p)))
        return -1;
    memcpy(out, *p, (size_t)(sp - *p));
    out[sp - *p] = '\0';
    *p = sp + !last;
    return 0;
}

int wire_presence(const char *buf, size_t len, struct wire_member *m)
{
    if (len == 0 || buf[0] != '!')
        return 0;
    const char *p = buf, *end = buf + len;
    if (len > 6 && !memcmp(buf, "!join ", 6))
        m->join = 1, p += 6;
    else if (len > 7 && !memcmp(buf, "!leave ", 7))
        m->join = 0, p += 7;
    else
        return -1;
    if (word(&p, end, m->session, sizeof m->session, 0) < 0 ||
        word(&p, end, m->node, sizeof m->node, 0) < 0 ||
        word(&p, end, m->sub, sizeof m->sub, 1) < 0)
        return -1;
    return 1;
}

int wire_entry_id(const char *s, size_t len, uint64_t *offset)
{
    if (len < 3 || s[len - 2] != '-' || s[len - 1] != '0')
        return -1;
    return wire_offset(s, len - 2, offset);
}

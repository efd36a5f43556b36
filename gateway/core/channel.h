/* channel.h - the channel name rule, shared by the protocol and the grants:
 * 1-200 bytes of A-Z a-z 0-9 _ - . : @ / (none needs escaping in JSON). */
#ifndef WSGATE_CHANNEL_H
#define WSGATE_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#define CHANNEL_MAX 200

static inline int channel_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.' ||
           c == ':' || c == '@' || c == '/';
}

/* 1 when the len bytes at s are all channel characters (len may be 0). */
static inline int channel_chars(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!channel_char((unsigned char)s[i]))
            return 0;
    return 1;
}

static inline int channel_name_valid(const char *s, size_t len)
{
    return len >= 1 && len <= CHANNEL_MAX && channel_chars(s, len);
}

/* FNV-1a of a name: the hash of every channel table. */
static inline uint32_t channel_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

#endif

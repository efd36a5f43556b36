/* log.c - see log.h. */
#include "log.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#define LINE_MAX_BYTES 2048

static enum log_level min_level = LOG_INFO;
static enum log_format format = LOG_TEXT;
static const char *node = "";
static const char *const names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *name, enum log_level *out)
{
    for (int i = LOG_DEBUG; i <= LOG_ERROR; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

int log_format_parse(const char *name, enum log_format *out)
{
    if (!strcmp(name, "text") || !strcmp(name, "json")) {
        *out = name[0] == 't' ? LOG_TEXT : LOG_JSON;
        return 0;
    }
    return -1;
}

void log_set_level(enum log_level level) { min_level = level; }
void log_set_format(enum log_format f) { format = f; }
void log_set_node(const char *n) { node = n ? n : ""; }
int log_enabled(enum log_level level) { return level >= min_level; }

static void timestamp(char *out, size_t cap)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%03dZ", (int)(tv.tv_usec / 1000));
}

/* The line goes out with one write(2), unbuffered: nothing waits in the
 * process to be lost with it (SIGKILL), and processes sharing the fd do not
 * mix lines. A stderr someone made non-blocking (the flag is shared by all
 * holders of a pipe) is waited for as a blocking one would be, not dropped.
 * A failure has nowhere left to be reported. */
static void write_line(char *line, size_t n)
{
    if (n > LINE_MAX_BYTES - 1)
        n = LINE_MAX_BYTES - 1;
    line[n++] = '\n';
    for (size_t off = 0; off < n;) {
        ssize_t w = write(STDERR_FILENO, line + off, n - off);
        if (w > 0) {
            off += (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = {.fd = STDERR_FILENO, .events = POLLOUT};
            if (poll(&p, 1, -1) < 0 && errno != EINTR)
                return;
        } else if (w == 0 || errno != EINTR) {
            return;
        }
    }
}

/* The one place a line is shaped: text or JSON, with the fields in ap. */
static void emit(enum log_level level, const char *msg, va_list ap)
{
    char ts[40], line[LINE_MAX_BYTES];
    timestamp(ts, sizeof ts);
    if (format == LOG_TEXT) {
        int n = snprintf(line, sizeof line, "%s %-5s %s", ts, names[level], msg);
        for (const char *k; n > 0 && (size_t)n < sizeof line && (k = va_arg(ap, const char *));) {
            const char *v = va_arg(ap, const char *);
            if (v && v[0])
                n += snprintf(line + n, sizeof line - (size_t)n, " %s=%s", k, v);
        }
        if (n > 0)
            write_line(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "ts", ts);
    cJSON_AddStringToObject(o, "level", names[level]);
    if (node[0])
        cJSON_AddStringToObject(o, "node", node);
    cJSON_AddStringToObject(o, "msg", msg);
    for (const char *k; (k = va_arg(ap, const char *));) {
        const char *v = va_arg(ap, const char *);
        if (v && v[0])
            cJSON_AddStringToObject(o, k, v);
    }
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (text) {
        size_t n = strlen(text);
        if (n < sizeof line) {
            memcpy(line, text, n);
            write_line(line, n);
        }
        cJSON_free(text);
    }
}

static void emit_fields(enum log_level level, const char *msg, ...)
{
    va_list ap;
    va_start(ap, msg);
    emit(level, msg, ap);
    va_end(ap);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char msg[LINE_MAX_BYTES / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit_fields(level, msg, (const char *)NULL);
}

void log_fields(enum log_level level, const char *msg, ...)
{
    if (!log_enabled(level))
        return;
    va_list ap;
    va_start(ap, msg);
    emit(level, msg, ap);
    va_end(ap);
}

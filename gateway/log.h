/* log.h - level-gated log lines on stderr, as text or JSON.
 *
 * One line per event, with a UTC timestamp and the level; in JSON format
 * also the node id and any key/value fields. Level, format and node are set
 * once at start-up: they are the only process-wide state outside the app
 * context, as a logger must be reachable from every module. A line is
 * written with one write(2), so lines of concurrent processes do not mix. */
#ifndef WSGATE_LOG_H
#define WSGATE_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_TEXT = 0, LOG_JSON };

/* Return 0 and set *out for a known name ("debug".."error"; "text",
 * "json"), else -1. */
int log_level_parse(const char *name, enum log_level *out);
int log_format_parse(const char *name, enum log_format *out);

void log_set_level(enum log_level level);
void log_set_format(enum log_format format);
/* Borrowed: must outlive logging. */
void log_set_node(const char *node);
int log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* msg plus fields given as key, value, key, value, ..., NULL; a NULL or
 * empty value omits its key. Text: "msg key=value ...". */
void log_fields(enum log_level level, const char *msg, ...)
    __attribute__((sentinel));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif

/* log.h - level-gated log lines on stderr.
 *
 * One line per event, prefixed with a UTC timestamp and the level. The level
 * is set once at start-up (log_set_level); it is the only process-wide state
 * outside the app context, as a logger must be reachable from every module.
 * Nothing here allocates; a line longer than 1 KiB is truncated. */
#ifndef WSGATE_LOG_H
#define WSGATE_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Returns 0 and sets *out for "debug", "info", "warn" or "error", else -1. */
int log_level_parse(const char *name, enum log_level *out);
void log_set_level(enum log_level level);
int log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif

/*
 * log: one line per event on stderr, in logfmt:
 *   ts=2026-11-28T00:18:23.123Z level=info event=listening addr=0.0.0.0:8080
 * The caller passes the key=value rest of the line already formatted.
 * The level is process-wide state set once at startup by main (the only
 * mutable global in the program besides nothing: it is read-only after).
 */
#ifndef MSGHUB_LOG_H
#define MSGHUB_LOG_H

#include <stdio.h>

typedef enum { MH_LOG_DEBUG = 0, MH_LOG_INFO, MH_LOG_WARN, MH_LOG_ERROR } mh_log_level_t;

void mh_log_set_level(mh_log_level_t level);
mh_log_level_t mh_log_get_level(void);
/* Parses "debug", "info", "warn", "error"; returns -1 if unknown. */
int mh_log_parse_level(const char *s);
/* Where lines go (NULL: stderr); for tests. */
void mh_log_set_output(FILE *out);
/* Writes the "log_suppressed" count of every line that was rate limited (see log.c). */
void mh_log_flush(void);
/*
 * Writes one line: ts, level, event, then the formatted key=value pairs.
 * The same line more than 10 times a second is counted instead of written.
 */
void mh_log(mh_log_level_t level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define mh_debug(ev, ...)                                                                          \
    do {                                                                                           \
        if (mh_log_get_level() <= MH_LOG_DEBUG)                                                    \
            mh_log(MH_LOG_DEBUG, ev, __VA_ARGS__);                                                 \
    } while (0)
#define mh_info(ev, ...) mh_log(MH_LOG_INFO, ev, __VA_ARGS__)
#define mh_warn(ev, ...) mh_log(MH_LOG_WARN, ev, __VA_ARGS__)
#define mh_error(ev, ...) mh_log(MH_LOG_ERROR, ev, __VA_ARGS__)

#endif

/*
 * log: logfmt lines on stderr. The level is the one process-wide setting,
 * written once by main before the loop starts and only read afterwards.
 *
 * Repeated lines are rate limited: each distinct line (event and text,
 * without the timestamp) may be written LOG_BURST times per LOG_WINDOW_MS;
 * beyond that it is counted, and one "log_suppressed" line with the count
 * is written when its window ends (mh_log_flush(), called every second by
 * the server, or the next occurrence). A flood (lws' "accept: errno 24"
 * in a busy loop wrote 240 MB in 5 s) becomes a few lines per second. The
 * limiter's table is the second piece of process-wide state: like the
 * level it belongs to the single loop thread.
 */
#include "msghub/log.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define LOG_SLOTS 64
#define LOG_BURST 10
#define LOG_WINDOW_MS 1000
#define LOG_LINE_MAX 2048
#define LOG_EVENT_MAX 48

static mh_log_level_t current_level = MH_LOG_INFO;
static FILE *log_out; /* NULL: stderr */

static const char *const level_names[] = {"debug", "info", "warn", "error"};

typedef struct log_slot {
    uint64_t hash;
    uint64_t window_ms; /* start of the current window */
    unsigned emitted;   /* lines written in this window */
    unsigned long suppressed;
    mh_log_level_t level;
    char event[LOG_EVENT_MAX];
} log_slot_t;

static log_slot_t slots[LOG_SLOTS];

void mh_log_set_level(mh_log_level_t level)
{
    current_level = level;
}

mh_log_level_t mh_log_get_level(void)
{
    return current_level;
}

void mh_log_set_output(FILE *out)
{
    log_out = out;
}

int mh_log_parse_level(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (s && strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* FNV-1a of the event and the rest of the line. */
static uint64_t line_hash(const char *event, const char *rest, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *c = event; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)rest[i]) * 1099511628211ull;
    return h;
}

static void write_line(mh_log_level_t level, const char *event, const char *rest, size_t n)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char line[LOG_LINE_MAX + 128];
    int h =
        snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (long)(tv.tv_usec / 1000), level_names[level], event);
    if (h < 0)
        return;
    size_t len = (size_t)h < sizeof(line) - 2 ? (size_t)h : sizeof(line) - 2;
    if (n && len + n + 2 < sizeof(line)) {
        line[len++] = ' ';
        memcpy(line + len, rest, n);
        len += n;
    }
    line[len++] = '\n';
    fwrite(line, 1, len, log_out ? log_out : stderr);
}

static void report_suppressed(log_slot_t *s)
{
    char rest[128];
    int n = snprintf(rest, sizeof(rest), "of=%s count=%lu window_ms=%d", s->event, s->suppressed,
                     LOG_WINDOW_MS);
    s->suppressed = 0;
    if (n > 0)
        write_line(s->level, "log_suppressed", rest, (size_t)n);
}

/* 1 when the line may be written now; counts it otherwise. */
static int admit(mh_log_level_t level, const char *event, const char *rest, size_t n)
{
    uint64_t h = line_hash(event, rest, n), now = mono_ms();
    log_slot_t *s = &slots[h % LOG_SLOTS];
    if (s->hash != h) { /* another line takes the slot: report what the old one hid */
        if (s->suppressed)
            report_suppressed(s);
        s->hash = h;
        s->window_ms = now;
        s->emitted = 0;
        s->level = level;
        snprintf(s->event, sizeof(s->event), "%s", event);
    } else if (now - s->window_ms >= LOG_WINDOW_MS) {
        if (s->suppressed)
            report_suppressed(s);
        s->window_ms = now;
        s->emitted = 0;
    }
    if (s->emitted < LOG_BURST) {
        s->emitted++;
        return 1;
    }
    s->suppressed++;
    return 0;
}

void mh_log_flush(void)
{
    for (size_t i = 0; i < LOG_SLOTS; i++)
        if (slots[i].suppressed)
            report_suppressed(&slots[i]);
}

void mh_log(mh_log_level_t level, const char *event, const char *fmt, ...)
{
    if (level < current_level)
        return;
    char rest[LOG_LINE_MAX];
    int n = 0;
    if (fmt && *fmt) {
        va_list ap;
        va_start(ap, fmt);
        n = vsnprintf(rest, sizeof(rest), fmt, ap);
        va_end(ap);
        if (n < 0)
            n = 0;
        if ((size_t)n >= sizeof(rest))
            n = (int)sizeof(rest) - 1;
    }
    if (admit(level, event, rest, (size_t)n))
        write_line(level, event, rest, (size_t)n);
}

/*
 * metrics: the hub's counters, gauges and the relay latency histogram, and
 * their rendering in the Prometheus text exposition format (version 0.0.4).
 * Plain fields, incremented directly by the single loop thread: no atomics.
 * Ownership: embedded in the server by value; nothing to free.
 */
#ifndef MSGHUB_METRICS_H
#define MSGHUB_METRICS_H

#include <stdint.h>

#include "msghub/util.h"

/* Error codes of the contract, in the order used by errors_by_code[]. */
typedef enum {
    MH_ERR_BAD_JSON = 0,
    MH_ERR_BAD_REQUEST,
    MH_ERR_UNKNOWN_TYPE,
    MH_ERR_TOO_MANY_RECEIVERS,
    MH_ERR_BODY_TOO_LARGE,
    MH_ERR_RATE_LIMITED,
    MH_ERR_UNAVAILABLE,
    MH_ERR_INTERNAL,
    MH_ERR_UNAUTHORIZED,
    MH_ERR_FORBIDDEN,
    MH_ERR_UNSUPPORTED_MEDIA_TYPE,
    MH_ERR_NOT_FOUND,
    MH_ERR_METHOD_NOT_ALLOWED,
    MH_ERR__COUNT
} mh_err_code_t;

/* Wire name of an error code, e.g. "too_many_receivers". */
const char *mh_err_name(mh_err_code_t code);
/* HTTP status of an error code (400, 401, 403, 404, 405, 413, 415, 429, 500, 503). */
int mh_err_http_status(mh_err_code_t code);

#define MH_METRICS_LATENCY_BUCKETS 14

typedef struct mh_metrics {
    uint64_t connections; /* gauge: open WebSocket sessions */
    uint64_t connections_total;
    uint64_t frames_received_total;
    uint64_t frames_sent_total;
    uint64_t bytes_received_total;
    uint64_t bytes_sent_total;
    uint64_t relays_total;
    uint64_t deliveries_total; /* frames of type message written to a socket */
    uint64_t inbox_stored_total;
    uint64_t inbox_dropped_total;
    uint64_t acks_total;
    uint64_t redeliveries_total;
    uint64_t http_requests_total;
    uint64_t slow_consumer_closes_total;
    uint64_t sockets;               /* gauge: accepted sockets open (HTTP and WebSocket) */
    uint64_t sockets_refused_total; /* accepted and closed at once: at the socket limit */
    uint64_t request_timeouts_total;
    uint64_t memory_bytes;       /* gauge: bytes counted against --memory-limit */
    uint64_t memory_limit_bytes; /* gauge: --memory-limit */
    uint64_t memory_refusals_total;
    uint64_t loop_busy_max_us; /* gauge: longest event loop turn (work between two polls) */
    uint64_t errors_total[MH_ERR__COUNT];
    /* relay latency, receipt to last local write, seconds */
    uint64_t latency_buckets[MH_METRICS_LATENCY_BUCKETS]; /* non-cumulative counts */
    uint64_t latency_count;
    double latency_sum_s;
} mh_metrics_t;

void mh_metrics_init(mh_metrics_t *m);
void mh_metrics_error(mh_metrics_t *m, mh_err_code_t code);
void mh_metrics_observe_latency(mh_metrics_t *m, uint64_t micros);
/* Appends the Prometheus text of every metric to out. */
void mh_metrics_render(const mh_metrics_t *m, mh_buf_t *out);

#endif

/*
 * metrics: the error code table (wire name, HTTP status), counter updates,
 * the relay latency histogram and the Prometheus text rendering (format
 * 0.0.4) served at GET /metrics.
 *
 * Does not know where the numbers come from, nor serve HTTP. Ownership:
 * mh_metrics_t is a plain value embedded by its user; render appends to the
 * caller's buffer.
 */
#include "msghub/metrics.h"

#include <stddef.h>
#include <string.h>

static const struct {
    const char *name;
    int status;
} err_table[MH_ERR__COUNT] = {
    [MH_ERR_BAD_JSON] = {"bad_json", 400},
    [MH_ERR_BAD_REQUEST] = {"bad_request", 400},
    [MH_ERR_UNKNOWN_TYPE] = {"unknown_type", 400},
    [MH_ERR_TOO_MANY_RECEIVERS] = {"too_many_receivers", 400},
    [MH_ERR_BODY_TOO_LARGE] = {"body_too_large", 413},
    [MH_ERR_RATE_LIMITED] = {"rate_limited", 429},
    [MH_ERR_UNAVAILABLE] = {"unavailable", 503},
    [MH_ERR_INTERNAL] = {"internal", 500},
    [MH_ERR_UNAUTHORIZED] = {"unauthorized", 401},
    [MH_ERR_FORBIDDEN] = {"forbidden", 403},
    [MH_ERR_UNSUPPORTED_MEDIA_TYPE] = {"unsupported_media_type", 415},
    [MH_ERR_NOT_FOUND] = {"not_found", 404},
    [MH_ERR_METHOD_NOT_ALLOWED] = {"method_not_allowed", 405},
};

/* Upper bounds of the latency buckets, in microseconds and as printed in "le". */
static const uint64_t bucket_us[MH_METRICS_LATENCY_BUCKETS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000,
};
static const char *const bucket_le[MH_METRICS_LATENCY_BUCKETS] = {
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01",
    "0.025",  "0.05",    "0.1",    "0.25",  "0.5",    "1",     "2.5",
};

/* An out-of-range code is a bug in the caller: report it as internal. */
static mh_err_code_t valid_code(mh_err_code_t code)
{
    return (unsigned)code < MH_ERR__COUNT ? code : MH_ERR_INTERNAL;
}

const char *mh_err_name(mh_err_code_t code)
{
    return err_table[valid_code(code)].name;
}

int mh_err_http_status(mh_err_code_t code)
{
    return err_table[valid_code(code)].status;
}

void mh_metrics_init(mh_metrics_t *m)
{
    memset(m, 0, sizeof(*m));
}

void mh_metrics_error(mh_metrics_t *m, mh_err_code_t code)
{
    m->errors_total[valid_code(code)]++;
}

/* Buckets are inclusive upper bounds (Prometheus "le"); slower goes only to +Inf. */
void mh_metrics_observe_latency(mh_metrics_t *m, uint64_t micros)
{
    for (size_t i = 0; i < MH_METRICS_LATENCY_BUCKETS; i++) {
        if (micros <= bucket_us[i]) {
            m->latency_buckets[i]++;
            break;
        }
    }
    m->latency_count++;
    m->latency_sum_s += (double)micros / 1e6;
}

static void render_one(mh_buf_t *out, const char *name, const char *type, const char *help,
                       uint64_t v)
{
    mh_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s ", name, help, name, type, name);
    mh_buf_u64(out, v);
    mh_buf_puts(out, "\n");
}

static void render_counters(const mh_metrics_t *m, mh_buf_t *out)
{
    static const struct {
        const char *name, *help;
        size_t off;
    } counters[] = {
        {"msghub_connections_total", "WebSocket sessions opened.",
         offsetof(mh_metrics_t, connections_total)},
        {"msghub_frames_received_total", "WebSocket frames received from clients.",
         offsetof(mh_metrics_t, frames_received_total)},
        {"msghub_frames_sent_total", "WebSocket frames written to clients.",
         offsetof(mh_metrics_t, frames_sent_total)},
        {"msghub_bytes_received_total", "Payload bytes received from clients.",
         offsetof(mh_metrics_t, bytes_received_total)},
        {"msghub_bytes_sent_total", "Payload bytes written to clients.",
         offsetof(mh_metrics_t, bytes_sent_total)},
        {"msghub_relays_total", "Messages accepted for relay (WebSocket and HTTP).",
         offsetof(mh_metrics_t, relays_total)},
        {"msghub_deliveries_total", "Message frames written to a receiver's socket.",
         offsetof(mh_metrics_t, deliveries_total)},
        {"msghub_inbox_stored_total", "Messages appended to receivers' logs.",
         offsetof(mh_metrics_t, inbox_stored_total)},
        {"msghub_inbox_dropped_total",
         "Log entries dropped by retention (count, bytes or TTL) before they were acknowledged.",
         offsetof(mh_metrics_t, inbox_dropped_total)},
        {"msghub_acks_total", "Ack requests and resumes with since that acknowledged something.",
         offsetof(mh_metrics_t, acks_total)},
        {"msghub_redeliveries_total", "Messages pushed again after a reconnect.",
         offsetof(mh_metrics_t, redeliveries_total)},
        {"msghub_http_requests_total", "HTTP API requests served.",
         offsetof(mh_metrics_t, http_requests_total)},
        {"msghub_slow_consumer_closes_total",
         "Connections closed because their outbound buffer was full.",
         offsetof(mh_metrics_t, slow_consumer_closes_total)},
        {"msghub_sockets_refused_total", "Sockets closed right after accept: at the socket limit.",
         offsetof(mh_metrics_t, sockets_refused_total)},
        {"msghub_request_timeouts_total", "HTTP connections closed: request not complete in time.",
         offsetof(mh_metrics_t, request_timeouts_total)},
        {"msghub_memory_refusals_total", "Requests refused or closed because of --memory-limit.",
         offsetof(mh_metrics_t, memory_refusals_total)},
    };
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        const uint64_t *v = (const uint64_t *)((const char *)m + counters[i].off);
        render_one(out, counters[i].name, "counter", counters[i].help, *v);
    }
}

static void render_errors(const mh_metrics_t *m, mh_buf_t *out)
{
    mh_buf_puts(out, "# HELP msghub_errors_total Errors answered to clients, by code.\n"
                     "# TYPE msghub_errors_total counter\n");
    for (int i = 0; i < MH_ERR__COUNT; i++) {
        mh_buf_printf(out, "msghub_errors_total{code=\"%s\"} ", err_table[i].name);
        mh_buf_u64(out, m->errors_total[i]);
        mh_buf_puts(out, "\n");
    }
}

static void render_latency(const mh_metrics_t *m, mh_buf_t *out)
{
    const char *name = "msghub_relay_latency_seconds";
    mh_buf_printf(out,
                  "# HELP %s Time from receipt of a relay to its last local write.\n"
                  "# TYPE %s histogram\n",
                  name, name);
    uint64_t cum = 0;
    for (size_t i = 0; i < MH_METRICS_LATENCY_BUCKETS; i++) {
        cum += m->latency_buckets[i];
        mh_buf_printf(out, "%s_bucket{le=\"%s\"} ", name, bucket_le[i]);
        mh_buf_u64(out, cum);
        mh_buf_puts(out, "\n");
    }
    mh_buf_printf(out, "%s_bucket{le=\"+Inf\"} ", name);
    mh_buf_u64(out, m->latency_count);
    mh_buf_printf(out, "\n%s_sum %.6f\n%s_count ", name, m->latency_sum_s, name);
    mh_buf_u64(out, m->latency_count);
    mh_buf_puts(out, "\n");
}

void mh_metrics_render(const mh_metrics_t *m, mh_buf_t *out)
{
    render_one(out, "msghub_connections", "gauge", "Open WebSocket sessions.", m->connections);
    render_one(out, "msghub_sockets", "gauge", "Accepted sockets open (HTTP and WebSocket).",
               m->sockets);
    render_one(out, "msghub_memory_bytes", "gauge",
               "Bytes held in reassembly, outbound queues, HTTP bodies and in-memory logs.",
               m->memory_bytes);
    render_one(out, "msghub_memory_limit_bytes", "gauge", "The --memory-limit budget.",
               m->memory_limit_bytes);
    mh_buf_puts(out, "# HELP msghub_loop_busy_max_seconds Longest event loop turn since start "
                     "(work between two polls: how long the loop stalled).\n"
                     "# TYPE msghub_loop_busy_max_seconds gauge\n");
    mh_buf_printf(out, "msghub_loop_busy_max_seconds %.6f\n", (double)m->loop_busy_max_us / 1e6);
    render_counters(m, out);
    render_errors(m, out);
    render_latency(m, out);
}

/*
 * session: one connected WebSocket client: its id, its outbound queue of
 * (shared frame, seq) entries, its rate limiter, the reassembly buffer for
 * fragmented messages, and its cursor over its id's log (msglog.h).
 *
 * Writes: queueing onto an empty queue asks lws for a WRITEABLE callback,
 * which writes exactly one entry and asks again while more wait. A message
 * entry is composed (head + `,"seq":N` + tail) into the server's scratch
 * buffer at write time: no copy per receiver is ever kept.
 *
 * The log is the truth (PROTOCOL.md section 5). A session is a cursor over
 * it: next_seq is the next seq to queue. A live message with exactly that
 * seq is queued; one below is a duplicate and dropped; a gap, or anything
 * while the session is "backlogged", is left in the log and read from it
 * (in slices, up to half the outbound limit queued), so the client sees
 * its messages in seq order with no gap. On attach the log is opened
 * (since acknowledges), hello reports ack / seq / recovered, and everything
 * owed is read before anything newer. Client acks (or, with ?ack=auto,
 * writes) acknowledge in the log. Closing or a dropped connection discards
 * the queue: the log still holds everything unacknowledged.
 *
 * Ownership: lws owns the per-connection mh_conn_t; the session struct is
 * allocated at ESTABLISHED and freed at CLOSED. Asynchronous operations hold
 * references to s->handle, which is cleared when the session is freed.
 * session.c has the connection's life and the queue; session_log.c the
 * cursor over the log and the acks.
 */
#ifndef MSGHUB_SESSION_H
#define MSGHUB_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "msghub/cursor.h"
#include "msghub/outq.h"
#include "msghub/ratelimit.h"
#include "msghub/hub.h"

struct lws;

/* What the client asked for in the upgrade's query (checked before the upgrade). */
typedef struct mh_session_opts {
    uint64_t since; /* ?since=N: acknowledges <= N (0: none) */
    int ack_auto;   /* ?ack=auto */
} mh_session_opts_t;

struct mh_session {
    struct lws *wsi;
    mh_handle_t *handle;
    uint64_t id;
    uint64_t claimed_ms; /* when this connection claimed its id */
    int resumed;
    int attached;   /* id known and registered */
    int opened;     /* log opened, hello queued: messages may flow */
    int registered; /* in the local registry (and, distributed, in Redis presence) */
    int closing;    /* close code to send, 0 while open */
    int close_sent;
    int rx_binary;
    mh_session_opts_t opts;
    /* the position in the id's log (cursor.h) and its reads (session_log.c) */
    mh_cursor_t cur;
    int reading;          /* a log read is in flight */
    int in_read;          /* inside start_read's loop (memory logs call back at once) */
    int read_again;       /* a read finished inside that loop and more is owed */
    uint64_t known_seq;   /* highest seq this connection knows of (hello.seq, queued) */
    uint64_t acked_seq;   /* acknowledged in the log as far as this connection knows */
    uint64_t owed_seq;    /* last seq at open: messages up to it are redeliveries */
    uint64_t written_seq; /* ?ack=auto: highest seq written to the socket */
    uint32_t written_unacked;
    int tick_pending; /* in the server's list for the next tick (auto ack, held pushes) */
    int write_due;    /* in the server's list for a WRITEABLE (mh_session_arm_writes) */
    mh_outq_t outq;
    size_t tx_off; /* wire bytes of the head entry already written (entries over a batch) */
    mh_rate_t rate;
    mh_buf_t rx;
    mh_mem_partial_t rx_partial; /* while rx holds part of a text message (ws.c) */
    uint64_t last_app_us;
};
typedef struct mh_session mh_session_t;

/* Creates the session for a new connection; resumed_id is 0 for a new user. */
mh_session_t *mh_session_open(mh_server_t *srv, struct lws *wsi, uint64_t resumed_id,
                              const mh_session_opts_t *opts);
/* The connection is gone: unregister, flush an auto ack, drop the queue, free. */
void mh_session_closed(mh_server_t *srv, mh_session_t *s);

/* Queues a reply frame (not a message) built in b; b is reset. */
void mh_session_send_text(mh_server_t *srv, mh_session_t *s, mh_buf_t *b);
/* Queues an error frame (echoing ref when ref_len > 0) and counts it in the metrics. */
void mh_session_send_error(mh_server_t *srv, mh_session_t *s, mh_err_code_t code, const char *msg,
                           const char *ref, size_t ref_len);
/*
 * A message with this receiver's seq is in its log: queue it if it is the
 * next one, drop a duplicate, or read the log to fill a gap (see above).
 */
void mh_session_deliver(mh_server_t *srv, mh_session_t *s, mh_frame_t *f, uint64_t seq);
/* Starts closing with code (an MH_CLOSE_*, codec.h). */
void mh_session_close(mh_server_t *srv, mh_session_t *s, int code);
/* WRITEABLE: writes one frame or the close frame; returns -1 to drop the connection. */
int mh_session_writeable(mh_server_t *srv, mh_session_t *s);

/* Re-reads the log from next_seq (pushes may have been lost): the sweep, broker reconnects. */
void mh_session_check_log(mh_server_t *srv, mh_session_t *s);

/* A client's {"type":"ack","seq":N[,"ref":...]}: validates, acknowledges, answers. */
void mh_session_ack(mh_server_t *srv, mh_session_t *s, uint64_t seq, const char *ref,
                    size_t ref_len);

/* The server's timer, every MH_SESSION_ACK_FLUSH_MS: auto acks due, gaps pushes did not fill. */
void mh_session_flush_auto_acks(mh_server_t *srv);
#define MH_SESSION_ACK_FLUSH_MS 100
#define MH_SESSION_ACK_BATCH 100 /* auto: ack at the latest after this many writes */

/*
 * The most one write of a session hands to lws (a batch of frames, or one
 * piece of a bigger one). server.c gives lws the same figure as the
 * protocol's tx_packet_size, so such a write is one send().
 */
#define MH_SESSION_WRITE_BYTES (64 * 1024)

/*
 * Before each poll of the loop (server.c's prepare handle): asks lws for one
 * WRITEABLE per session that queued something or wants to go on writing
 * since the last poll, however many relays reached it meanwhile.
 */
void mh_session_arm_writes(mh_server_t *srv);

/* ---- between session.c and session_log.c ---- */
/* Puts s on the server's list of sessions to arm POLLOUT for before the next poll. */
void mh_session_want_write(mh_server_t *srv, mh_session_t *s);
/* Queues (f, seq); closes with MH_CLOSE_SLOW_CONSUMER past the outbound limit. */
void mh_session_queue_message(mh_server_t *srv, mh_session_t *s, mh_frame_t *f, uint64_t seq,
                              int live);
/* Attach: opens the log with opts.since, sends hello, starts redelivery. */
void mh_session_log_open(mh_server_t *srv, mh_session_t *s);
/* A message entry with seq was written to the socket. */
void mh_session_log_written(mh_server_t *srv, mh_session_t *s, uint64_t seq);
/* The queue has room again: continue reading the log if it owes more. */
void mh_session_log_room(mh_server_t *srv, mh_session_t *s);
/* Closing: acknowledge what ?ack=auto wrote. */
void mh_session_log_close(mh_server_t *srv, mh_session_t *s);

/* Another instance took id over at claimed_ms: close ours if it is older. */
void mh_session_kick(mh_server_t *srv, uint64_t id, uint64_t claimed_ms);

/* What liveness asks of a connection's session (session_live.c): srv->live_ops. */
const struct mh_live_ops *mh_session_live_ops(void);

#endif

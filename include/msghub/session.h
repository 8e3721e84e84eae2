/*
 * session: one connected WebSocket client: its id, its outbound queue of
 * shared frames, its rate limiter, the reassembly buffer for fragmented
 * messages, and the flow of stored messages from its inbox.
 *
 * Writes: queueing onto an empty queue asks lws for a WRITEABLE callback,
 * which writes exactly one frame and asks again while more wait.
 *
 * Stored messages come first: while a session is "backlogged" (its inbox
 * may hold messages), new messages for it are appended to the inbox and the
 * queue is refilled from the inbox head, so the client sees them oldest
 * first. In memory (standalone) frames are popped; in Redis (distributed)
 * they are read with LRANGE and trimmed only after they were written, so a
 * crash loses nothing (the client may see a message twice).
 *
 * Closing: a session that must close is checked out of presence at once,
 * its unwritten messages go back to the head of its inbox, and the next
 * WRITEABLE sends the close frame; a deadline drops a peer that never reads.
 *
 * Ownership: lws owns the per-connection mh_conn_t; the session struct is
 * allocated at ESTABLISHED and freed at CLOSED. Asynchronous operations hold
 * references to s->handle, which is cleared when the session is freed.
 */
#ifndef MSGHUB_SESSION_H
#define MSGHUB_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "msghub/outq.h"
#include "msghub/ratelimit.h"
#include "msghub/server.h"

struct lws;

struct mh_session {
    struct lws *wsi;
    mh_handle_t *handle;
    uint64_t id;
    uint64_t claimed_ms; /* when this connection claimed its id */
    int resumed;
    int attached;   /* id known, registered, hello sent */
    int registered; /* in the local registry (and, distributed, in Redis presence) */
    int backlog;    /* the inbox may hold messages to deliver before anything new */
    int closing;    /* close code to send, 0 while open */
    int close_sent;
    int rx_binary;
    /* distributed inbox flow */
    int peeking;          /* an LRANGE is in flight */
    size_t inbox_queued;  /* frames read from the inbox and not yet trimmed */
    size_t inbox_written; /* of those, written to the socket */
    size_t pushed_since_peek;
    mh_outq_t outq;
    mh_rate_t rate;
    mh_buf_t rx;
    uint64_t last_app_us;
};
typedef struct mh_session mh_session_t;

/* Creates the session for a new connection; resumed_id is 0 for a new user. */
mh_session_t *mh_session_open(mh_server_t *srv, struct lws *wsi, uint64_t resumed_id);
/* The connection is gone: unregister, keep unwritten messages, free. */
void mh_session_closed(mh_server_t *srv, mh_session_t *s);

/* Queues a reply frame (not a message) built in b; b is reset. */
void mh_session_send_text(mh_server_t *srv, mh_session_t *s, mh_buf_t *b);
/* Queues a message frame, or stores it in the inbox when backlogged or closing. */
void mh_session_deliver(mh_server_t *srv, mh_session_t *s, mh_frame_t *f);
/* Starts closing with code (4000, 4008, 4409, 1001, 1009, 1011). */
void mh_session_close(mh_server_t *srv, mh_session_t *s, int code);
/* WRITEABLE: writes one frame or the close frame; returns -1 to drop the connection. */
int mh_session_writeable(mh_server_t *srv, mh_session_t *s);

/* The session's Redis inbox holds messages: deliver them (before anything newer). */
void mh_session_check_inbox(mh_server_t *srv, mh_session_t *s);

/* Another instance took id over at claimed_ms: close ours if it is older. */
void mh_session_kick(mh_server_t *srv, uint64_t id, uint64_t claimed_ms);

#endif

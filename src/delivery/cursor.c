/* cursor: a connection's position in its log and its decisions (see cursor.h). */
#include "msghub/cursor.h"

#include <string.h>

void mh_cursor_release(mh_cursor_t *c)
{
    for (size_t i = 0; i < c->n_held; i++)
        mh_frame_unref(c->held[i].f);
    c->n_held = 0;
}

static mh_cursor_action_t need_read(mh_cursor_t *c)
{
    mh_cursor_release(c);
    c->backlog = 1;
    return MH_CURSOR_READ;
}

void mh_cursor_recheck(mh_cursor_t *c)
{
    if (c->next_seq)
        need_read(c);
}

mh_cursor_action_t mh_cursor_open(mh_cursor_t *c, uint64_t acked_seq, uint64_t last_seq)
{
    c->next_seq = acked_seq + 1;
    c->empty_reads = 0;
    if (last_seq >= c->next_seq || c->seen_seq >= c->next_seq)
        return need_read(c);
    return MH_CURSOR_DONE;
}

/* Queues one entry and advances; nonzero when the owner said stop. */
static int queue(mh_cursor_t *c, mh_frame_t *f, uint64_t seq, int live, mh_cursor_queue_fn q,
                 void *ud)
{
    c->next_seq = seq + 1;
    return q(ud, f, seq, live);
}

/* Queues the held pushes that continue the cursor, drops the ones below it. */
static void drain_held(mh_cursor_t *c, mh_cursor_queue_fn q, void *ud)
{
    size_t k = 0;
    int stop = 0;
    for (; k < c->n_held && c->held[k].seq <= c->next_seq && !stop; k++)
        if (c->held[k].seq == c->next_seq)
            stop = queue(c, c->held[k].f, c->held[k].seq, 1, q, ud);
    for (size_t i = 0; i < k; i++)
        mh_frame_unref(c->held[i].f);
    memmove(&c->held[0], &c->held[k], (c->n_held - k) * sizeof(c->held[0]));
    c->n_held -= k;
}

/* Keeps (f, seq) aside in seq order; 0, or -1 when the buffer is full. */
static int hold(mh_cursor_t *c, mh_frame_t *f, uint64_t seq, uint64_t now_ms)
{
    size_t i = c->n_held;
    while (i > 0 && c->held[i - 1].seq > seq)
        i--;
    if (i > 0 && c->held[i - 1].seq == seq)
        return 0; /* a duplicate push */
    if (c->n_held == MH_CURSOR_HOLD_MAX)
        return -1;
    memmove(&c->held[i + 1], &c->held[i], (c->n_held - i) * sizeof(c->held[0]));
    c->held[i] = (mh_cursor_held_t){mh_frame_ref(f), seq};
    if (!c->n_held++)
        c->held_since_ms = now_ms;
    return 0;
}

mh_cursor_action_t mh_cursor_push(mh_cursor_t *c, mh_frame_t *f, uint64_t seq, uint64_t now_ms,
                                  mh_cursor_queue_fn q, void *ud)
{
    if (!seq)
        return MH_CURSOR_DONE;
    if (seq > c->seen_seq)
        c->seen_seq = seq;
    if (!c->next_seq || seq < c->next_seq)
        return MH_CURSOR_DONE; /* not open yet, or a duplicate */
    if (c->backlog)
        return MH_CURSOR_READ;
    if (seq > c->next_seq)
        return hold(c, f, seq, now_ms) == 0 ? MH_CURSOR_HELD : need_read(c);
    if (queue(c, f, seq, 1, q, ud) == 0 && c->n_held)
        drain_held(c, q, ud);
    return c->n_held ? MH_CURSOR_HELD : MH_CURSOR_DONE;
}

mh_cursor_action_t mh_cursor_read_done(mh_cursor_t *c, const mh_msglog_entry_t *e, size_t n,
                                       uint64_t last_seq, mh_cursor_room_fn room,
                                       mh_cursor_queue_fn q, void *ud)
{
    for (size_t i = 0; i < n; i++) {
        if (e[i].seq < c->next_seq)
            continue;
        if (!room(ud) || queue(c, e[i].frame, e[i].seq, 0, q, ud))
            break; /* the rest is read again once the queue drains */
    }
    if (n == 0 && last_seq >= c->next_seq)
        c->next_seq = last_seq + 1; /* acknowledged elsewhere or dropped by retention */
    uint64_t want = last_seq > c->seen_seq ? last_seq : c->seen_seq;
    /*
     * A push seen while the read was in flight may be newer than the read's
     * snapshot: read again, but only MH_CURSOR_EMPTY_READS times in a row
     * without progress, so a log that lost its seqs cannot loop us.
     */
    c->empty_reads = n ? 0 : c->empty_reads + 1;
    if (c->next_seq > want || c->empty_reads > MH_CURSOR_EMPTY_READS) {
        c->backlog = 0;
        c->empty_reads = 0;
        return MH_CURSOR_DONE;
    }
    return MH_CURSOR_READ;
}

mh_cursor_action_t mh_cursor_tick(mh_cursor_t *c, uint64_t now_ms, uint64_t wait_ms)
{
    if (!c->n_held)
        return MH_CURSOR_DONE;
    if (now_ms - c->held_since_ms < wait_ms)
        return MH_CURSOR_HELD;
    return need_read(c);
}

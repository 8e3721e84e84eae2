/* msglog_closed: every operation fails with MH_EIO at once (see msglog_closed.h). */
#include "msghub/msglog_closed.h"

static void closed_append(void *impl, const uint64_t *ids, size_t n, mh_frame_t *f, uint64_t now_ms,
                          mh_msglog_append_fn cb, void *ud)
{
    mh_msglog_appended_t res = {0};
    cb(ud, MH_EIO, &res);
}

static void closed_read(void *impl, uint64_t id, uint64_t after, size_t max, mh_msglog_read_fn cb,
                        void *ud)
{
    cb(ud, MH_EIO, NULL, 0, 0);
}

static void closed_open(void *impl, uint64_t id, uint64_t since, mh_msglog_state_fn cb, void *ud)
{
    mh_msglog_state_t st = {0, 0, 1};
    cb(ud, MH_EIO, &st);
}

static void closed_ack(void *impl, uint64_t id, uint64_t seq, mh_msglog_status_fn cb, void *ud)
{
    if (cb)
        cb(ud, MH_EIO);
}

static void closed_free(void *impl)
{
}

static const mh_msglog_ops_t closed_ops = {
    .append = closed_append,
    .read = closed_read,
    .open = closed_open,
    .ack = closed_ack,
    .free = closed_free,
    .last_seq_now = NULL,
};

void mh_msglog_closed(mh_msglog_t *out)
{
    out->ops = &closed_ops;
    out->impl = NULL;
}

/*
 * transport: the port between instances. Envelopes (codec.h) go to another
 * instance by its id: none (standalone: there is no other instance) or
 * AMQP (transport_amqp, distributed: RabbitMQ, relay pushes coalesced per
 * instance and loop turn by pubbatch). Relay and takeover call only this
 * port, so standalone and distributed mode differ only in what server.c
 * plugs in.
 *
 * Each send calls its callback exactly once with 0, MH_ENOENT (no such
 * instance) or MH_EIO. The "none" transport (zeroed, or after
 * mh_transport_close) has no peer: mh_transport_none() is 1 and a send
 * fails with MH_ENOENT at once.
 *
 * Layer 2 (src/delivery).
 */
#ifndef MSGHUB_TRANSPORT_H
#define MSGHUB_TRANSPORT_H

#include <stddef.h>

#include "msghub/util.h"

typedef void (*mh_transport_status_fn)(void *ud, int status);

typedef struct mh_transport_ops {
    /* Pushes env to instance, coalesced with the others to it in this loop turn (relays). */
    void (*push)(void *impl, const char *instance, const void *env, size_t len,
                 mh_transport_status_fn cb, void *ud);
    /* Sends env to instance on its own, now (takeover signals). */
    void (*send)(void *impl, const char *instance, const void *env, size_t len,
                 mh_transport_status_fn cb, void *ud);
    void (*free)(void *impl);
} mh_transport_ops_t;

typedef struct mh_transport {
    const mh_transport_ops_t *ops;
    void *impl;
} mh_transport_t;

/* 1 when there is no other instance to send to. */
static inline int mh_transport_none(const mh_transport_t *t)
{
    return t->ops == NULL;
}
static inline void mh_transport_push(mh_transport_t *t, const char *instance, const void *env,
                                     size_t len, mh_transport_status_fn cb, void *ud)
{
    if (t->ops)
        t->ops->push(t->impl, instance, env, len, cb, ud);
    else
        cb(ud, MH_ENOENT);
}
static inline void mh_transport_send(mh_transport_t *t, const char *instance, const void *env,
                                     size_t len, mh_transport_status_fn cb, void *ud)
{
    if (t->ops)
        t->ops->send(t->impl, instance, env, len, cb, ud);
    else
        cb(ud, MH_ENOENT);
}
/* Frees the implementation and leaves the "none" transport. */
static inline void mh_transport_close(mh_transport_t *t)
{
    if (t->ops)
        t->ops->free(t->impl);
    t->ops = NULL;
    t->impl = NULL;
}

#endif

/*
 * broker_amqp: RabbitMQ through rabbitmq-c 0.11, its socket watched by a
 * uv_poll_t on the hub's loop; frames are read with a zero timeout and
 * drained while amqp_frames_enqueued() or amqp_data_in_buffer() is true;
 * heartbeats are serviced from a uv timer.
 *
 * Topology (P = prefix, I = instance id), declared on every (re)connect:
 *   queue  P.inst.I      durable, x-message-ttl = msg_ttl_ms (a stale push is
 *                        dropped: the receivers' logs have the message),
 *                        x-expires = queue_expiry_ms
 * Messages for instance J are published to the default exchange with
 * routing key P.inst.J, transient (delivery mode 1: a push is a shortcut,
 * the receivers' logs in Redis are the truth, and every instance re-reads
 * its sessions' logs when its broker connection comes back, so nothing a
 * broker restart drops is lost; persisting them only cost RabbitMQ disk
 * writes), mandatory, on a channel in confirm mode
 * (AMQP_CONFIRM_SELECT_METHOD sent by hand: 0.11 has no helper).
 *
 * Publishing: the callback runs once per publish: 0 when RabbitMQ confirmed
 * it (basic.ack), MH_ENOENT when it came back with basic.return (no such
 * queue: the instance is gone; also for an instance name too long to be a
 * queue name), MH_EIO on basic.nack, when the connection drops before the
 * confirm, or when called while down or while RabbitMQ has blocked the
 * connection (memory or disk alarm). While down or blocked the callback
 * runs at once, inside mh_broker_publish; otherwise always from the loop,
 * and callbacks run in publish order.
 *
 * Consuming: on_delivery runs for each message of P.inst.I; body is valid
 * only during the call. The
 * hub acknowledges it later (or from inside on_delivery) with
 * mh_broker_ack(), after the work it implies is done. The tag is opaque: it
 * carries the connection's epoch, so a tag from before a reconnect is
 * ignored. Deliveries not acked when the connection drops are redelivered
 * by RabbitMQ (at least once). Acking a tag twice is a protocol error that
 * costs a reconnect.
 *
 * Reconnection with exponential backoff and jitter (100 ms doubling to 5 s,
 * +-20 %), redeclaring the topology and restarting the consumers;
 * on_state reports each change (not on mh_broker_free). Connection setup
 * uses short socket timeouts (it runs on the loop; docs/DISTRIBUTED.md and
 * src/backplane/broker_amqp.c say what that costs and why it is acceptable); reading
 * never blocks on the network; publishes and acks that would not fit in the
 * kernel's socket buffer are not sent (rabbitmq-c would poll() without a
 * deadline): a publish fails with MH_EIO, an ack is folded into the next one. Heartbeats every 10
 * s: a server silent for 20 s counts as a lost connection.
 */
#ifndef MSGHUB_BROKER_AMQP_H
#define MSGHUB_BROKER_AMQP_H

#include <stddef.h>
#include <stdint.h>

struct uv_loop_s;
typedef struct mh_broker mh_broker_t;

typedef void (*mh_broker_state_fn)(void *ud, int up);
typedef void (*mh_broker_delivery_fn)(void *ud, uint64_t tag, const void *body, size_t len);
typedef void (*mh_broker_publish_fn)(void *ud, int status);

typedef struct mh_broker_options {
    const char *url; /* amqp://user:pass@host:port/vhost */
    const char *prefix;
    const char *instance_id;
    uint32_t msg_ttl_ms;      /* how long a message may wait in an instance queue [10000] */
    uint32_t queue_expiry_ms; /* an unused instance queue is deleted after [60000] */
    uint16_t prefetch;        /* unacked deliveries per consumer [256] */
    mh_broker_state_fn on_state;
    mh_broker_delivery_fn on_delivery;
    void *ud;
} mh_broker_options_t;

/*
 * Validates the options and the URL (amqp:// only; "amqp://host/" means the
 * vhost "/") and starts connecting on the next loop turn; NULL with a
 * message in err if malformed. Zero ttl / expiry / prefetch take the
 * defaults in brackets; on_delivery is required.
 */
mh_broker_t *mh_broker_new(struct uv_loop_s *loop, const mh_broker_options_t *opts, char *err,
                           size_t errlen);
/*
 * Fails pending publishes with MH_EIO, closes the connection (AMQP close,
 * at most 500 ms), frees. NULL is a no-op. May be called from any of the
 * broker's callbacks; the memory is released by the loop's close callbacks.
 */
void mh_broker_free(mh_broker_t *b);
/* 1 while connected with the topology declared and the consumers running. */
int mh_broker_up(const mh_broker_t *b);

/*
 * 1 while connected but unable to take more: the socket holds more unsent
 * bytes than the hub allows, or a publish has waited for its confirm past the
 * deadline (the connection is then dropped at the next publish). /readyz is
 * 503 meanwhile.
 */
int mh_broker_stalled(const mh_broker_t *b);

/*
 * Publishes body to instance's queue (copied). cb runs exactly once. Never
 * waits on the network: when the socket could not take the publish without
 * blocking (a frozen broker), it fails at once with MH_EIO.
 */
void mh_broker_publish(mh_broker_t *b, const char *instance, const void *body, size_t len,
                       mh_broker_publish_fn cb, void *ud);
/*
 * Acknowledges a delivery and every earlier one (call in delivery order);
 * a tag from before a reconnect is ignored. The basic.ack may wait up to
 * 20 ms for later deliveries to cover them too (at most a quarter of the
 * prefetch window waits); mh_broker_free sends a waiting one.
 */
void mh_broker_ack(mh_broker_t *b, uint64_t tag);
/* basic.ack frames sent so far (each covers every delivery acked before it). */
uint64_t mh_broker_ack_frames(const mh_broker_t *b);

#endif

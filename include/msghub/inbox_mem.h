/*
 * inbox_mem: offline inboxes of standalone mode. Per user id, a FIFO of
 * frame references with their store time, capped in count (the oldest are
 * dropped) and in age (expired ones are dropped when seen or swept).
 *
 * Ownership: the inbox holds one reference per stored frame; pop hands it
 * to the caller. mh_inbox_mem_free() drops all of them.
 */
#ifndef MSGHUB_INBOX_MEM_H
#define MSGHUB_INBOX_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "msghub/util.h"

typedef struct mh_inbox_mem mh_inbox_mem_t;

mh_inbox_mem_t *mh_inbox_mem_new(uint32_t max_per_id, uint64_t ttl_ms);
void mh_inbox_mem_free(mh_inbox_mem_t *ib);
/* A budget counter that follows the bytes of the frames stored (--memory-limit), or NULL. */
void mh_inbox_mem_set_account(mh_inbox_mem_t *ib, uint64_t *account);

/* Stores a new reference to f for id; returns how many old messages were dropped for room. */
size_t mh_inbox_mem_push(mh_inbox_mem_t *ib, uint64_t id, mh_frame_t *f, uint64_t now_ms);
/*
 * Puts f back at the head of id's inbox (a frame taken out for delivery but
 * not written). Not subject to the cap. Takes a new reference. Its store
 * time is now_ms, or the current head's if that is earlier (it was stored
 * before the head), so store times ascend from head to tail.
 */
void mh_inbox_mem_push_front(mh_inbox_mem_t *ib, uint64_t id, mh_frame_t *f, uint64_t now_ms);
/*
 * Removes the oldest unexpired message of id and returns its reference, or
 * NULL. Expired messages met on the way are dropped and added to *dropped.
 */
mh_frame_t *mh_inbox_mem_pop(mh_inbox_mem_t *ib, uint64_t id, uint64_t now_ms, size_t *dropped);
/* Messages stored for id (expired ones included until dropped). */
size_t mh_inbox_mem_count(const mh_inbox_mem_t *ib, uint64_t id);
/* Drops every expired message; returns how many. */
size_t mh_inbox_mem_expire(mh_inbox_mem_t *ib, uint64_t now_ms);

#endif

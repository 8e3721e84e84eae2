/*
 * u64map: an open-addressing hash map from nonzero uint64 keys to pointers
 * (linear probing, backward-shift deletion, no tombstones). Used for the
 * session registry and the in-memory inboxes.
 *
 * Ownership: the map never owns the values. mh_u64map_free() releases only
 * the table.
 */
#ifndef MSGHUB_U64MAP_H
#define MSGHUB_U64MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct mh_u64map mh_u64map_t;

mh_u64map_t *mh_u64map_new(void);
void mh_u64map_free(mh_u64map_t *m);
size_t mh_u64map_size(const mh_u64map_t *m);
/* Value for key, or NULL. */
void *mh_u64map_get(const mh_u64map_t *m, uint64_t key);
/* Inserts or replaces; returns the previous value or NULL. key must be nonzero. */
void *mh_u64map_put(mh_u64map_t *m, uint64_t key, void *value);
/* Removes key; returns its value or NULL. */
void *mh_u64map_del(mh_u64map_t *m, uint64_t key);
/*
 * Iteration: *cursor starts at 0; returns 1 and fills key/value for each
 * entry, 0 at the end. The map must not change during iteration.
 */
int mh_u64map_next(const mh_u64map_t *m, size_t *cursor, uint64_t *key, void **value);

#endif

/*
 * registry: the sessions connected to this process, by user id, and the
 * id allocator of standalone mode. Sessions are opaque pointers borrowed
 * from the transport (libwebsockets owns them); the registry never frees
 * them, and the transport removes a session before it goes away.
 */
#ifndef MSGHUB_REGISTRY_H
#define MSGHUB_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

typedef struct mh_registry mh_registry_t;

mh_registry_t *mh_registry_new(void);
void mh_registry_free(mh_registry_t *r);

/* Hands out the next id (1, 2, ...). */
uint64_t mh_registry_alloc_id(mh_registry_t *r);
/* Highest id handed out so far; ids above it are unknown. */
uint64_t mh_registry_last_id(const mh_registry_t *r);
/* Marks id as handed out (a valid token for it proves it was). */
void mh_registry_note_id(mh_registry_t *r, uint64_t id);

/* Session holding id, or NULL. */
void *mh_registry_get(const mh_registry_t *r, uint64_t id);
/* Makes sess the holder of id; returns the previous holder (to take over) or NULL. */
void *mh_registry_put(mh_registry_t *r, uint64_t id, void *sess);
/* Removes id only if sess is its current holder; returns 1 if removed. */
int mh_registry_remove(mh_registry_t *r, uint64_t id, void *sess);
size_t mh_registry_count(const mh_registry_t *r);

/*
 * Writes the connected ids except `exclude` (0 = none), ascending, into a
 * new array the caller frees; returns the count.
 */
size_t mh_registry_ids(const mh_registry_t *r, uint64_t exclude, uint64_t **out);

/* Iterates (id, session) pairs; *cursor starts at 0. No changes while iterating. */
int mh_registry_next(const mh_registry_t *r, size_t *cursor, uint64_t *id, void **sess);

#endif

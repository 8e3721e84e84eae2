/*
 * dlist: an intrusive doubly linked list. The element embeds an mh_dlink_t
 * and the owner keeps an mh_dlist_t (head and tail, NULL-terminated), so
 * appending, prepending and unlinking any element are O(1) and allocate
 * nothing. A zeroed list is empty and a zeroed link is unlinked: both can
 * live in calloc'ed or memset structs with no init call.
 *
 * MH_CONTAINER_OF turns a link (or any embedded member) back into its
 * element. Header only: every function is a few pointer moves.
 */
#ifndef MSGHUB_DLIST_H
#define MSGHUB_DLIST_H

#include <stddef.h>

#define MH_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

typedef struct mh_dlink {
    struct mh_dlink *prev, *next;
} mh_dlink_t;

typedef struct mh_dlist {
    mh_dlink_t *head, *tail;
} mh_dlist_t;

/* 1 when n is on l (n is on no list, or on l: a link knows neighbours, not its list). */
static inline int mh_dlist_has(const mh_dlist_t *l, const mh_dlink_t *n)
{
    return n->prev != NULL || l->head == n;
}

static inline void mh_dlist_push_back(mh_dlist_t *l, mh_dlink_t *n)
{
    n->next = NULL;
    n->prev = l->tail;
    if (l->tail)
        l->tail->next = n;
    else
        l->head = n;
    l->tail = n;
}

static inline void mh_dlist_push_front(mh_dlist_t *l, mh_dlink_t *n)
{
    n->prev = NULL;
    n->next = l->head;
    if (l->head)
        l->head->prev = n;
    else
        l->tail = n;
    l->head = n;
}

/* Takes n (which must be on l) off l; n is unlinked afterwards. */
static inline void mh_dlist_unlink(mh_dlist_t *l, mh_dlink_t *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    n->prev = n->next = NULL;
}

#endif

/*
 * test_presence_mem: standalone presence over the registry (presence_mem.h):
 * ids from the counter, a resumed id keeps later ids above it, claims
 * answer at once without a previous instance, list is the ids connected
 * here, ascending; a closed port fails every call with MH_EIO.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "msghub/presence_mem.h"

typedef struct answer {
    int calls, status;
    uint64_t id;
    const char *previous;
    size_t n;
    uint64_t ids[8];
} answer_t;

static void got_id(void *ud, int status, uint64_t id)
{
    answer_t *a = ud;
    a->calls++;
    a->status = status;
    a->id = id;
}

static void claimed(void *ud, int status, const char *previous)
{
    answer_t *a = ud;
    a->calls++;
    a->status = status;
    a->previous = previous;
}

static void listed(void *ud, int status, uint64_t *ids, size_t n)
{
    answer_t *a = ud;
    a->calls++;
    a->status = status;
    a->n = n;
    for (size_t i = 0; i < n && i < 8; i++)
        a->ids[i] = ids[i];
    free(ids);
}

static void test_ids_and_resumed(void **state)
{
    mh_registry_t *r = mh_registry_new();
    mh_presence_t p;
    mh_presence_mem_init(&p, r);
    answer_t a = {0};
    mh_presence_alloc_id(&p, got_id, &a);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, 0);
    assert_int_equal(a.id, 1);
    mh_presence_note_id(&p, 7); /* a token for 7 was valid: 7 was handed out */
    mh_presence_alloc_id(&p, got_id, &a);
    assert_int_equal(a.id, 8);
    mh_presence_close(&p);
    mh_registry_free(r);
}

static void test_claim_checkout_list(void **state)
{
    mh_registry_t *r = mh_registry_new();
    mh_presence_t p;
    mh_presence_mem_init(&p, r);
    int s5, s3;
    answer_t a = {0};
    a.previous = "x";
    mh_presence_claim(&p, 5, claimed, &a);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, 0);
    assert_null(a.previous);
    mh_registry_put(r, 5, &s5); /* the session registers itself */
    mh_registry_put(r, 3, &s3);
    answer_t l = {0};
    mh_presence_list(&p, 0, listed, &l);
    assert_int_equal(l.calls, 1);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.ids[0], 3);
    assert_int_equal(l.ids[1], 5);
    mh_presence_checkout(&p, 5); /* nothing to do: the registry is the presence */
    mh_presence_list(&p, 0, listed, &l);
    assert_int_equal(l.n, 2);
    mh_presence_close(&p);
    mh_registry_free(r);
}

static void test_closed_port_fails(void **state)
{
    mh_presence_t p = {0};
    answer_t a = {0};
    mh_presence_alloc_id(&p, got_id, &a);
    assert_int_equal(a.status, MH_EIO);
    mh_presence_claim(&p, 1, claimed, &a);
    assert_int_equal(a.status, MH_EIO);
    mh_presence_list(&p, 0, listed, &a);
    assert_int_equal(a.status, MH_EIO);
    assert_int_equal(a.calls, 3);
    mh_presence_note_id(&p, 1);
    mh_presence_checkout(&p, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_and_resumed),
        cmocka_unit_test(test_claim_checkout_list),
        cmocka_unit_test(test_closed_port_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

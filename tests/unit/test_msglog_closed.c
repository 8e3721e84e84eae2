/*
 * test_msglog_closed: the log plugged in after shutdown freed the real one
 * (msglog_closed.h): every operation fails with MH_EIO inside the call.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "msghub/msglog_closed.h"

static int calls, last_status;

static void appended(void *ud, int status, const mh_msglog_appended_t *res)
{
    calls++;
    last_status = status;
}

static void read_done(void *ud, int status, const mh_msglog_entry_t *e, size_t n, uint64_t last)
{
    calls++;
    last_status = status;
}

static void opened(void *ud, int status, const mh_msglog_state_t *st)
{
    calls++;
    last_status = status;
}

static void acked(void *ud, int status)
{
    calls++;
    last_status = status;
}

static void test_everything_fails_at_once(void **state)
{
    mh_msglog_t l;
    mh_msglog_closed(&l);
    uint64_t ids[] = {1};
    mh_frame_t *f = mh_frame_new("x", 1);
    mh_msglog_append(&l, ids, 1, f, 0, appended, NULL);
    assert_int_equal(calls, 1);
    assert_int_equal(last_status, MH_EIO);
    mh_msglog_read(&l, 1, 0, 10, read_done, NULL);
    assert_int_equal(calls, 2);
    assert_int_equal(last_status, MH_EIO);
    mh_msglog_open(&l, 1, 0, opened, NULL);
    assert_int_equal(calls, 3);
    assert_int_equal(last_status, MH_EIO);
    mh_msglog_ack(&l, 1, 1, acked, NULL);
    assert_int_equal(calls, 4);
    assert_int_equal(last_status, MH_EIO);
    mh_msglog_free(&l);
    mh_frame_unref(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_everything_fails_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

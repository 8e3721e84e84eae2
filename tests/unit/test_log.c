/*
 * test_log: the rate limit of repeated log lines (log.c): a flood of one
 * line is cut to LOG_BURST lines and one count; other lines are not held.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msghub/log.h"

static size_t count_lines(FILE *f, const char *needle)
{
    char line[4096];
    size_t n = 0;
    rewind(f);
    while (fgets(line, sizeof(line), f))
        if (strstr(line, needle))
            n++;
    return n;
}

static void test_flood_is_cut_and_counted(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    mh_log_set_output(f);
    for (int i = 0; i < 1000; i++)
        mh_log(MH_LOG_WARN, "lws", "msg=\"accept: errno 24\"");
    mh_log(MH_LOG_INFO, "other", "k=%d", 1);
    mh_log_flush();
    fflush(f);
    assert_int_equal(count_lines(f, "event=lws "), 10);
    assert_int_equal(count_lines(f, "event=other k=1"), 1);
    assert_int_equal(count_lines(f, "event=log_suppressed of=lws count=990 "), 1);
    mh_log_set_output(NULL);
    fclose(f);
}

static void test_distinct_lines_pass(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    mh_log_set_output(f);
    for (int i = 0; i < 50; i++)
        mh_log(MH_LOG_INFO, "distinct", "i=%d", i);
    mh_log_flush();
    fflush(f);
    assert_int_equal(count_lines(f, "event=distinct "), 50);
    assert_int_equal(count_lines(f, "log_suppressed"), 0);
    mh_log_set_output(NULL);
    fclose(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flood_is_cut_and_counted),
        cmocka_unit_test(test_distinct_lines_pass),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

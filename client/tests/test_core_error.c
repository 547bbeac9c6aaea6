/*
 * iotc_err and iotc_strerror (iotc/error.h): the codes are fixed (they are
 * ABI and get logged as numbers), every one has its own text, and
 * iotc_strerror never returns NULL.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <limits.h>
#include <string.h>
#include <cmocka.h>

#include "iotc/error.h"

static const int all_codes[] = {
    IOTC_OK,
    IOTC_ERR_INVALID_ARG,
    IOTC_ERR_NOMEM,
    IOTC_ERR_QUEUE_DROPPED,
    IOTC_ERR_QUEUE_OFF,
    IOTC_ERR_TIMEOUT,
    IOTC_ERR_NOT_CONNECTED,
    IOTC_ERR_CLOSED,
    IOTC_ERR_REFUSED,
    IOTC_ERR_TLS,
    IOTC_ERR_PROTOCOL,
    IOTC_ERR_BUSY,
    IOTC_ERR_INTERNAL,
    IOTC_ERR_CONNECTION_LOST,
    IOTC_ERR_CONNECT,
    IOTC_ERR_TOO_LARGE,
    IOTC_ERR_CREDENTIALS,
    IOTC_ERR_UNSUPPORTED,
    IOTC_ERR_REJECTED,
};
#define NCODES (sizeof all_codes / sizeof all_codes[0])

static void test_values_are_fixed(void **state)
{
    (void)state;
    /* Changing one of these breaks every program built against the header. */
    assert_int_equal(IOTC_OK, 0);
    assert_int_equal(IOTC_ERR_INVALID_ARG, -1);
    assert_int_equal(IOTC_ERR_NOMEM, -2);
    assert_int_equal(IOTC_ERR_QUEUE_DROPPED, -3);
    assert_int_equal(IOTC_ERR_QUEUE_OFF, -4);
    assert_int_equal(IOTC_ERR_TIMEOUT, -5);
    assert_int_equal(IOTC_ERR_NOT_CONNECTED, -6);
    assert_int_equal(IOTC_ERR_CLOSED, -7);
    assert_int_equal(IOTC_ERR_REFUSED, -8);
    assert_int_equal(IOTC_ERR_TLS, -9);
    assert_int_equal(IOTC_ERR_PROTOCOL, -10);
    assert_int_equal(IOTC_ERR_BUSY, -11);
    assert_int_equal(IOTC_ERR_INTERNAL, -12);
    assert_int_equal(IOTC_ERR_CONNECTION_LOST, -13);
    assert_int_equal(IOTC_ERR_CONNECT, -14);
    assert_int_equal(IOTC_ERR_TOO_LARGE, -15);
    assert_int_equal(IOTC_ERR_CREDENTIALS, -16);
    assert_int_equal(IOTC_ERR_UNSUPPORTED, -17);
    assert_int_equal(IOTC_ERR_REJECTED, -18);
    /* Dense from 0 down: the list above is all of them. */
    for (size_t i = 0; i < NCODES; i++)
        assert_int_equal(all_codes[i], -(int)i);
}

static void test_every_code_has_its_own_text(void **state)
{
    (void)state;
    const char *unknown = iotc_strerror(INT_MIN);
    for (size_t i = 0; i < NCODES; i++) {
        const char *s = iotc_strerror(all_codes[i]);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
        assert_string_not_equal(s, unknown);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(s, iotc_strerror(all_codes[j]));
    }
    assert_string_equal(iotc_strerror(IOTC_OK), "success");
    assert_string_equal(iotc_strerror(IOTC_ERR_QUEUE_DROPPED), "dropped from the offline queue");
}

/* The names are what tools print for programs (iotc-agent's status_name):
 * each code's own, spelled as in the header. */
static void test_names(void **state)
{
    (void)state;
    static const char *const names[] = {
        "IOTC_OK", "IOTC_ERR_INVALID_ARG", "IOTC_ERR_NOMEM", "IOTC_ERR_QUEUE_DROPPED", "IOTC_ERR_QUEUE_OFF",
        "IOTC_ERR_TIMEOUT", "IOTC_ERR_NOT_CONNECTED", "IOTC_ERR_CLOSED", "IOTC_ERR_REFUSED", "IOTC_ERR_TLS",
        "IOTC_ERR_PROTOCOL", "IOTC_ERR_BUSY", "IOTC_ERR_INTERNAL", "IOTC_ERR_CONNECTION_LOST",
        "IOTC_ERR_CONNECT", "IOTC_ERR_TOO_LARGE", "IOTC_ERR_CREDENTIALS", "IOTC_ERR_UNSUPPORTED",
        "IOTC_ERR_REJECTED"};
    assert_int_equal(sizeof names / sizeof names[0], sizeof all_codes / sizeof all_codes[0]);
    for (size_t i = 0; i < sizeof all_codes / sizeof all_codes[0]; i++)
        assert_string_equal(iotc_err_name(all_codes[i]), names[i]);
    assert_string_equal(iotc_err_name(1), "IOTC_ERR_UNKNOWN");
    assert_string_equal(iotc_err_name(-19), "IOTC_ERR_UNKNOWN");
    assert_string_equal(iotc_err_name(-2147483647 - 1), "IOTC_ERR_UNKNOWN");
}

static void test_unknown_values_are_never_null(void **state)
{
    (void)state;
    const int odd[] = {1, 2, 17, -19, -100, 1000, INT_MAX, INT_MIN, INT_MIN + 1, -(int)NCODES};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        const char *s = iotc_strerror(odd[i]);
        assert_non_null(s);
        assert_string_equal(s, "unknown error");
    }
    /* A sweep: every int in a wide band has some text. */
    for (int v = -5000; v <= 5000; v++)
        assert_non_null(iotc_strerror(v));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_are_fixed),
        cmocka_unit_test(test_every_code_has_its_own_text),
        cmocka_unit_test(test_unknown_values_are_never_null),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

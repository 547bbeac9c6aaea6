/*
 * The AWS IoT CONNECT username (net/username.h): the custom-authorizer
 * query and the metrics suffix as the AWS IoT Device SDK v2 builders write
 * them (aws-broker.md §5.3, §5.4), the '?'/'&' rule, percent-encoding, the
 * buffer-size protocol and the 65535-byte MQTT limit.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "net/username.h"

/* Builds into a generous buffer, checks IOTC_OK, the text and *needed. */
static void expect_username(const iotc_username_params *p, const char *want)
{
    char out[1024];
    size_t needed = 12345;
    iotc_err rc = iotc_username_build(p, out, sizeof out, &needed);
    if (rc != IOTC_OK)
        fail_msg("rc %d for \"%s\"", rc, want);
    assert_string_equal(out, want);
    assert_int_equal(needed, strlen(want) + 1);
}

static iotc_username_params metrics_on(void)
{
    iotc_username_params p;
    memset(&p, 0, sizeof p);
    p.metrics = true;
    p.metrics_version = "1.0.0";
    return p;
}

static void test_nothing_applies(void **state)
{
    (void)state;
    iotc_username_params p;
    memset(&p, 0, sizeof p);
    char out[8] = "junk";
    size_t needed = 99;
    assert_int_equal(iotc_username_build(&p, out, sizeof out, &needed), IOTC_OK);
    assert_string_equal(out, "");
    assert_int_equal(needed, 1); /* the caller sends no username */
    p.base = "";
    expect_username(&p, "");
    /* needed is optional */
    assert_int_equal(iotc_username_build(&p, out, 1, NULL), IOTC_OK);
    assert_string_equal(out, "");
}

static void test_base_only(void **state)
{
    (void)state;
    iotc_username_params p;
    memset(&p, 0, sizeof p);
    p.base = "device-user";
    expect_username(&p, "device-user");
    /* The base is the caller's: copied verbatim, never encoded. */
    p.base = "a b+c?x=%41";
    expect_username(&p, "a b+c?x=%41");
}

static void test_metrics_only(void **state)
{
    (void)state;
    iotc_username_params p = metrics_on();
    expect_username(&p, "?SDK=libiotc&Version=1.0.0");
    p.base = "";
    expect_username(&p, "?SDK=libiotc&Version=1.0.0");
    p.base = "user";
    expect_username(&p, "user?SDK=libiotc&Version=1.0.0");
    /* Another SDK name, encoded like every added value. */
    p.metrics_sdk = "IoTDeviceSDK/C";
    expect_username(&p, "user?SDK=IoTDeviceSDK%2FC&Version=1.0.0");
}

static void test_base_with_query(void **state)
{
    (void)state;
    iotc_username_params p = metrics_on();
    p.base = "user?tenant=a";
    expect_username(&p, "user?tenant=a&SDK=libiotc&Version=1.0.0");
    p.authorizer_name = "auth";
    expect_username(&p, "user?tenant=a&x-amz-customauthorizer-name=auth&SDK=libiotc&Version=1.0.0");
    /* The SDK's rule taken literally: a trailing '?' still counts. */
    p.base = "user?";
    p.metrics = false;
    expect_username(&p, "user?&x-amz-customauthorizer-name=auth");
}

/* The exact SDK v2 shape: name, signature, token, then metrics, one '?'. */
static void test_custom_authorizer_full(void **state)
{
    (void)state;
    iotc_username_params p = metrics_on();
    p.base = "user";
    p.authorizer_name = "my-auth";
    p.signature = "ab+/=";
    p.token_key_name = "token";
    p.token_value = "v 1";
    expect_username(&p, "user?x-amz-customauthorizer-name=my-auth"
                        "&x-amz-customauthorizer-signature=ab%2B%2F%3D"
                        "&token=v%201&SDK=libiotc&Version=1.0.0");

    /* No base: the query starts the username. */
    p.base = NULL;
    p.metrics = false;
    expect_username(&p, "?x-amz-customauthorizer-name=my-auth"
                        "&x-amz-customauthorizer-signature=ab%2B%2F%3D&token=v%201");

    /* Default authorizer with signing disabled: only the token. */
    p.authorizer_name = NULL;
    p.signature = NULL;
    expect_username(&p, "?token=v%201");

    /* Name alone (an unsigned authorizer reading the password). */
    memset(&p, 0, sizeof p);
    p.base = "u";
    p.authorizer_name = "x";
    expect_username(&p, "u?x-amz-customauthorizer-name=x");
    /* "" is sent empty, as the SDK does (it tests for None only). */
    p.authorizer_name = "";
    expect_username(&p, "u?x-amz-customauthorizer-name=");
}

static void test_encoding(void **state)
{
    (void)state;
    iotc_username_params p;
    memset(&p, 0, sizeof p);
    /* Unreserved characters stay; '&', '=', '?', '#' and UTF-8 do not. */
    p.authorizer_name = "AZaz09-._~";
    p.token_key_name = "k&=";
    p.token_value = "a?b#c\xc3\xa9";
    expect_username(&p, "?x-amz-customauthorizer-name=AZaz09-._~&k%26%3D=a%3Fb%23c%C3%A9");

    /* A real base64 signature: '+', '/' and '=' padding encoded. */
    memset(&p, 0, sizeof p);
    p.signature = "kV3b+/Qw9Z==";
    expect_username(&p, "?x-amz-customauthorizer-signature=kV3b%2B%2FQw9Z%3D%3D");
}

/* A signature that already holds a '%' was encoded by the caller. */
static void test_signature_already_encoded(void **state)
{
    (void)state;
    iotc_username_params p;
    memset(&p, 0, sizeof p);
    p.signature = "ab%2B%2F%3D";
    expect_username(&p, "?x-amz-customauthorizer-signature=ab%2B%2F%3D");
    /* ... even when the rest is not: the SDK's test is '%' anywhere. */
    p.signature = "a+b%2F";
    expect_username(&p, "?x-amz-customauthorizer-signature=a+b%2F");
    /* The other fields have no such exception. */
    p.signature = NULL;
    p.token_key_name = "t";
    p.token_value = "50%";
    expect_username(&p, "?t=50%25");
}

static void test_no_double_metrics(void **state)
{
    (void)state;
    iotc_username_params p = metrics_on();
    p.base = "user?SDK=Mine&Version=2";
    expect_username(&p, "user?SDK=Mine&Version=2");
    p.base = "user?a=1&SDK=Mine";
    p.authorizer_name = "auth";
    expect_username(&p, "user?a=1&SDK=Mine&x-amz-customauthorizer-name=auth");
    p.base = "user?SDK";
    p.authorizer_name = NULL;
    expect_username(&p, "user?SDK");

    /* Only a key counts: not a value, a longer key, or the bare username. */
    p.base = "user?x=SDK=1";
    expect_username(&p, "user?x=SDK=1&SDK=libiotc&Version=1.0.0");
    p.base = "user?SDKx=1";
    expect_username(&p, "user?SDKx=1&SDK=libiotc&Version=1.0.0");
    p.base = "SDK=1";
    expect_username(&p, "SDK=1?SDK=libiotc&Version=1.0.0");

    /* A token key named SDK would make the key appear twice. */
    p.base = NULL;
    p.token_key_name = "SDK";
    p.token_value = "t";
    expect_username(&p, "?SDK=t");
}

static void test_too_small(void **state)
{
    (void)state;
    iotc_username_params p = metrics_on();
    p.base = "user";
    const char *want = "user?SDK=libiotc&Version=1.0.0";
    size_t n = strlen(want) + 1;

    char out[64];
    size_t needed = 0;
    memset(out, 'x', sizeof out);
    assert_int_equal(iotc_username_build(&p, out, n - 1, &needed), IOTC_ERR_TOO_LARGE);
    assert_int_equal(needed, n);
    assert_string_equal(out, ""); /* never a truncated username */
    assert_int_equal(out[n - 1], 'x'); /* nothing written past cap */

    assert_int_equal(iotc_username_build(&p, out, 0, &needed), IOTC_ERR_TOO_LARGE);
    assert_int_equal(needed, n);
    assert_int_equal(out[0], '\0'); /* left from above: cap 0 writes nothing */
    out[0] = 'y';
    assert_int_equal(iotc_username_build(&p, out, 0, &needed), IOTC_ERR_TOO_LARGE);
    assert_int_equal(out[0], 'y');

    /* Retry with what it asked for: exact fit. */
    char *exact = malloc(needed);
    assert_non_null(exact);
    assert_int_equal(iotc_username_build(&p, exact, needed, &needed), IOTC_OK);
    assert_string_equal(exact, want);
    assert_int_equal(needed, n);
    free(exact);

    /* The empty username needs one byte. */
    iotc_username_params none;
    memset(&none, 0, sizeof none);
    assert_int_equal(iotc_username_build(&none, out, 0, &needed), IOTC_ERR_TOO_LARGE);
    assert_int_equal(needed, 1);
}

static void test_mqtt_limit(void **state)
{
    (void)state;
    char *big = malloc(IOTC_USERNAME_MAX + 2);
    char *out = malloc(IOTC_USERNAME_MAX + 16);
    assert_non_null(big);
    assert_non_null(out);
    iotc_username_params p;
    memset(&p, 0, sizeof p);
    size_t needed = 7;

    /* Exactly 65535 bytes is allowed. */
    memset(big, 'u', IOTC_USERNAME_MAX);
    big[IOTC_USERNAME_MAX] = '\0';
    p.base = big;
    assert_int_equal(iotc_username_build(&p, out, IOTC_USERNAME_MAX + 16, &needed), IOTC_OK);
    assert_int_equal(needed, IOTC_USERNAME_MAX + 1);
    assert_int_equal(strlen(out), IOTC_USERNAME_MAX);

    /* One more byte is refused, and needed 0 says no buffer helps. */
    big[IOTC_USERNAME_MAX] = 'u';
    big[IOTC_USERNAME_MAX + 1] = '\0';
    assert_int_equal(iotc_username_build(&p, out, IOTC_USERNAME_MAX + 16, &needed),
                     IOTC_ERR_TOO_LARGE);
    assert_int_equal(needed, 0);
    assert_string_equal(out, "");

    /* Over the limit only after encoding: 21846 spaces become 65538 bytes. */
    memset(big, ' ', 21846);
    big[21846] = '\0';
    p.base = NULL;
    p.token_key_name = "t";
    p.token_value = big;
    assert_int_equal(iotc_username_build(&p, out, IOTC_USERNAME_MAX + 16, &needed),
                     IOTC_ERR_TOO_LARGE);
    assert_int_equal(needed, 0);

    /* Over the limit with a small buffer too: the limit wins. */
    assert_int_equal(iotc_username_build(&p, out, 4, &needed), IOTC_ERR_TOO_LARGE);
    assert_int_equal(needed, 0);

    /* The metrics suffix can be what tips it over. */
    memset(&p, 0, sizeof p);
    memset(big, 'u', IOTC_USERNAME_MAX - 5);
    big[IOTC_USERNAME_MAX - 5] = '\0';
    p.base = big;
    assert_int_equal(iotc_username_build(&p, out, IOTC_USERNAME_MAX + 16, &needed), IOTC_OK);
    p.metrics = true;
    p.metrics_version = "1";
    assert_int_equal(iotc_username_build(&p, out, IOTC_USERNAME_MAX + 16, &needed),
                     IOTC_ERR_TOO_LARGE);
    assert_int_equal(needed, 0);
    free(big);
    free(out);
}

static void test_bad_args(void **state)
{
    (void)state;
    iotc_username_params p;
    memset(&p, 0, sizeof p);
    char out[64];
    size_t needed = 5;
    assert_int_equal(iotc_username_build(NULL, out, sizeof out, &needed), IOTC_ERR_INVALID_ARG);
    assert_int_equal(needed, 0);
    needed = 5;
    assert_int_equal(iotc_username_build(&p, NULL, sizeof out, &needed), IOTC_ERR_INVALID_ARG);
    assert_int_equal(needed, 0);
    assert_int_equal(iotc_username_build(NULL, NULL, 0, NULL), IOTC_ERR_INVALID_ARG);

    /* A token value without its key name, and the reverse. */
    p.token_value = "v";
    assert_int_equal(iotc_username_build(&p, out, sizeof out, &needed), IOTC_ERR_INVALID_ARG);
    p.token_value = NULL;
    p.token_key_name = "k";
    assert_int_equal(iotc_username_build(&p, out, sizeof out, &needed), IOTC_ERR_INVALID_ARG);
    /* An empty key would send "=token". */
    p.token_key_name = "";
    p.token_value = "v";
    assert_int_equal(iotc_username_build(&p, out, sizeof out, &needed), IOTC_ERR_INVALID_ARG);
    /* Metrics need a version. */
    memset(&p, 0, sizeof p);
    p.metrics = true;
    assert_int_equal(iotc_username_build(&p, out, sizeof out, &needed), IOTC_ERR_INVALID_ARG);
    assert_int_equal(needed, 0);
    /* ... but not a SDK name. */
    p.metrics_version = "0.1.0";
    expect_username(&p, "?SDK=" IOTC_USERNAME_METRICS_SDK "&Version=0.1.0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nothing_applies),
        cmocka_unit_test(test_base_only),
        cmocka_unit_test(test_metrics_only),
        cmocka_unit_test(test_base_with_query),
        cmocka_unit_test(test_custom_authorizer_full),
        cmocka_unit_test(test_encoding),
        cmocka_unit_test(test_signature_already_encoded),
        cmocka_unit_test(test_no_double_metrics),
        cmocka_unit_test(test_too_small),
        cmocka_unit_test(test_mqtt_limit),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

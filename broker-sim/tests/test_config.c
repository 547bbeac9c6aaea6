/* sim_config_parse: every key by name, profiles, and refusals with the key and the reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "sim_config.h"

static int parse(sim_config *c, sim_profile *p, const char *json, char *err, size_t n)
{
    *p = SIM_PROFILE_CLASSIC;
    sim_config_init(c, *p);
    err[0] = 0;
    return sim_config_parse(c, p, json, strlen(json), err, n);
}

static void test_defaults_per_profile(void **state)
{
    (void)state;
    sim_config a, b;
    sim_config_init(&a, SIM_PROFILE_CLASSIC);
    sim_config_init(&b, SIM_PROFILE_CURRENT);
    /* aws-broker.md §2 figures. */
    assert_int_equal(a.max_payload, 131072);
    assert_int_equal(a.max_packet, 131072);
    assert_int_equal(a.max_topic_bytes, 256);
    assert_int_equal(a.max_topic_slashes, 7);
    assert_int_equal(a.max_client_id, 128);
    assert_int_equal(a.max_filters_per_subscribe, 8);
    assert_int_equal(a.max_subscriptions, 50);
    assert_int_equal(a.publish_rate, 100);
    assert_int_equal(a.throughput, 512 * 1024);
    assert_int_equal(a.connect_interval_ms, 1000);
    assert_int_equal(a.max_inflight, 100);
    assert_int_equal(a.keepalive_min, 30);
    assert_int_equal(a.keepalive_max, 1200);
    assert_int_equal(a.session_expiry_s, 3600);
    assert_int_equal(a.replay_rate, 10);
    /* The two profiles differ where the documents do (§1.3, §1.4). */
    assert_int_equal(a.retain, SIM_RETAIN_DISCONNECT);
    assert_int_equal(b.retain, SIM_RETAIN_STORE);
    assert_true(a.takeover_connack_both);
    assert_false(b.takeover_connack_both);
    /* Deviations that distort delivery are off unless asked for. */
    assert_int_equal(a.qos0_dup_permille, 0);
    assert_int_equal(a.reorder_permille, 0);
    assert_int_equal(a.suback_delay_ms, 0);
    assert_false(a.hash_matches_parent);
}

static void test_every_key(void **state)
{
    (void)state;
    sim_config c;
    sim_profile p;
    char err[256];
    const char *j = "{\"profile\":\"current\",\"limits\":{\"max_payload\":1,\"max_packet\":200,\"max_topic_bytes\":2,"
                    "\"max_topic_slashes\":3,\"max_client_id\":4,\"max_filters_per_subscribe\":5,"
                    "\"max_subscriptions\":6,\"over_subscriptions\":\"refuse\",\"publish_rate\":7,\"throughput\":8,"
                    "\"connect_interval_ms\":9,\"max_inflight\":10,\"keepalive_min\":11,\"keepalive_max\":12,"
                    "\"session_expiry_s\":13,\"replay_rate\":14,\"max_queued\":15,\"qos1_retry_ms\":16,"
                    "\"qos1_retry_max_ms\":17,\"connect_timeout_ms\":18,\"topic_alias_max\":19},"
                    "\"deviations\":{\"retain\":\"disconnect\",\"takeover_connack_both\":true,"
                    "\"v3_qos2_subscribe_close\":true,\"qos0_dup_permille\":20,\"suback_delay_ms\":21,"
                    "\"reorder_permille\":22,\"reorder_hold_ms\":23,\"lifecycle_events\":false,"
                    "\"hash_matches_parent\":true}}";
    assert_int_equal(parse(&c, &p, j, err, sizeof err), 0);
    assert_int_equal(p, SIM_PROFILE_CURRENT);
    assert_int_equal(c.max_payload, 1);
    assert_int_equal(c.max_packet, 200);
    assert_int_equal(c.max_topic_bytes, 2);
    assert_int_equal(c.max_topic_slashes, 3);
    assert_int_equal(c.max_client_id, 4);
    assert_int_equal(c.max_filters_per_subscribe, 5);
    assert_int_equal(c.max_subscriptions, 6);
    assert_int_equal(c.over_subscriptions, SIM_OVER_SUBS_REFUSE);
    assert_int_equal(c.publish_rate, 7);
    assert_int_equal(c.throughput, 8);
    assert_int_equal(c.connect_interval_ms, 9);
    assert_int_equal(c.max_inflight, 10);
    assert_int_equal(c.keepalive_min, 11);
    assert_int_equal(c.keepalive_max, 12);
    assert_int_equal(c.session_expiry_s, 13);
    assert_int_equal(c.replay_rate, 14);
    assert_int_equal(c.max_queued, 15);
    assert_int_equal(c.qos1_retry_ms, 16);
    assert_int_equal(c.qos1_retry_max_ms, 17);
    assert_int_equal(c.connect_timeout_ms, 18);
    assert_int_equal(c.topic_alias_max, 19);
    /* An explicit switch wins over the profile's default. */
    assert_int_equal(c.retain, SIM_RETAIN_DISCONNECT);
    assert_true(c.takeover_connack_both);
    assert_true(c.v3_qos2_subscribe_close);
    assert_int_equal(c.qos0_dup_permille, 20);
    assert_int_equal(c.suback_delay_ms, 21);
    assert_int_equal(c.reorder_permille, 22);
    assert_int_equal(c.reorder_hold_ms, 23);
    assert_false(c.lifecycle_events);
    assert_true(c.hash_matches_parent);
}

static void refused(const char *json, const char *want)
{
    sim_config c;
    sim_profile p;
    char err[256];
    assert_int_equal(parse(&c, &p, json, err, sizeof err), -1);
    if (!strstr(err, want))
        fail_msg("for %s: want \"%s\" in \"%s\"", json, want, err);
}

static void test_refusals(void **state)
{
    (void)state;
    refused("[1]", "not a JSON object");
    refused("{\"limits\":{\"max_payload\":", "not a JSON object");
    refused("{\"bogus\":1}", "bogus: unknown key");
    refused("{\"limits\":{\"bogus\":1}}", "limits.bogus: unknown key");
    refused("{\"deviations\":{\"max_payload\":1}}", "deviations.max_payload: unknown key");
    refused("{\"limits\":3}", "limits: must be an object");
    refused("{\"limits\":{\"max_payload\":-1}}", "limits.max_payload: must be between 0 and");
    refused("{\"limits\":{\"max_payload\":1.5}}", "limits.max_payload: must be a whole number");
    refused("{\"limits\":{\"max_payload\":\"9\"}}", "limits.max_payload: must be a whole number");
    refused("{\"limits\":{\"keepalive_max\":70000}}", "limits.keepalive_max: must be between 1 and 65535");
    refused("{\"limits\":{\"keepalive_min\":100,\"keepalive_max\":50}}", "keepalive_min: must not exceed");
    refused("{\"deviations\":{\"qos0_dup_permille\":1001}}", "qos0_dup_permille: must be between 0 and 1000");
    refused("{\"deviations\":{\"lifecycle_events\":1}}", "lifecycle_events: must be true or false");
    refused("{\"deviations\":{\"retain\":\"keep\"}}", "retain: must be \"disconnect\" or \"store\"");
    refused("{\"limits\":{\"over_subscriptions\":1}}", "over_subscriptions: must be \"disconnect\" or \"refuse\"");
    refused("{\"profile\":\"modern\"}", "profile: must be \"classic\" or \"current\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_per_profile),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

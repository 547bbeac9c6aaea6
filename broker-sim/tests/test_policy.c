/*
 * test_policy.c: the IoT policy module (sim_policy.h) on its own: parsing
 * and its refusals, §6.4 wildcards, §6.3 variables, Deny over Allow, default
 * deny, the store's attachments and ARNs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sim_policy.h"

#define ARN "arn:aws:iot:us-east-1:123456789012:"

static sim_policy *parse_ok(const char *name, const char *doc)
{
    char err[512] = "";
    sim_policy *p = sim_policy_parse(name, doc, strlen(doc), err, sizeof err);
    if (!p)
        fail_msg("%s: %s", name, err);
    return p;
}

/* Parses a bad document and checks that the error names `want`. */
static void parse_bad(const char *doc, const char *want)
{
    char err[512] = "";
    sim_policy *p = sim_policy_parse("bad", doc, strlen(doc), err, sizeof err);
    if (p) {
        sim_policy_free(p);
        fail_msg("accepted: %s", doc);
    }
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not say \"%s\"", err, want);
}

static sim_policy_decision eval1(const sim_policy *p, const char *action, const char *arn, const sim_policy_vars *v)
{
    sim_policy_decision d;
    sim_policy_eval(&p, 1, action, arn, v, &d);
    return d;
}

static bool allowed(const sim_policy *p, const char *action, const char *arn, const sim_policy_vars *v)
{
    return eval1(p, action, arn, v).allowed;
}

static void test_glob(void **state)
{
    (void)state;
    assert_true(sim_policy_glob("*", "", false));
    assert_true(sim_policy_glob("*", "a/b/c", false));
    /* §6.4: `*` spans levels, `?` is one character, + and # are plain. */
    assert_true(sim_policy_glob("topic/a/*", "topic/a/b/c/d", false));
    assert_true(sim_policy_glob("topic/a/?", "topic/a/b", false));
    assert_false(sim_policy_glob("topic/a/?", "topic/a/bc", false));
    assert_false(sim_policy_glob("topic/a/?", "topic/a/", false));
    assert_true(sim_policy_glob("f/a/#", "f/a/#", false));
    assert_false(sim_policy_glob("f/a/#", "f/a/b", false));
    assert_false(sim_policy_glob("f/+/t", "f/x/t", false));
    assert_true(sim_policy_glob("f/+/t", "f/+/t", false));
    assert_true(sim_policy_glob("a*b*c", "aXXbYYbZc", false));
    assert_false(sim_policy_glob("a*b*c", "aXXbYYbZ", false));
    assert_true(sim_policy_glob("iot:pub*", "iot:Publish", true));
    assert_false(sim_policy_glob("iot:pub*", "iot:Publish", false));
    assert_true(sim_policy_glob("*Publish", "iot:RetainPublish", false));
}

static void test_actions_and_resources(void **state)
{
    (void)state;
    sim_policy *p = parse_ok("p", "{\"Version\":\"2012-10-17\",\"Statement\":["
                                  "{\"Effect\":\"Allow\",\"Action\":\"iot:Connect\",\"Resource\":\"" ARN "client/dev-*\"},"
                                  "{\"Effect\":\"Allow\",\"Action\":[\"iot:Publish\",\"iot:Receive\"],"
                                  "\"Resource\":[\"" ARN "topic/a/*\",\"" ARN "topic/b\"]},"
                                  "{\"Effect\":\"Allow\",\"Action\":\"iot:subscribe\",\"Resource\":\"" ARN "topicfilter/a/#\"}]}");
    assert_true(allowed(p, "iot:Connect", ARN "client/dev-1", NULL));
    assert_false(allowed(p, "iot:Connect", ARN "client/other", NULL));
    assert_true(allowed(p, "iot:Publish", ARN "topic/a/x/y", NULL));
    assert_true(allowed(p, "iot:Receive", ARN "topic/b", NULL));
    assert_false(allowed(p, "iot:Publish", ARN "topic/b/c", NULL));
    /* Actions are case-insensitive; the filter is matched as sent. */
    assert_true(allowed(p, "iot:Subscribe", ARN "topicfilter/a/#", NULL));
    assert_false(allowed(p, "iot:Subscribe", ARN "topicfilter/a/+", NULL));
    assert_false(allowed(p, "iot:Subscribe", ARN "topicfilter/a/b", NULL));
    /* Another region or account is another resource. */
    assert_false(allowed(p, "iot:Connect", "arn:aws:iot:eu-west-1:123456789012:client/dev-1", NULL));
    sim_policy_decision d = eval1(p, "iot:Publish", ARN "topic/b", NULL);
    assert_true(d.allowed);
    assert_string_equal(d.policy, "p");
    assert_int_equal(d.statement, 1);
    sim_policy_free(p);
}

static void test_deny_wins_and_default_deny(void **state)
{
    (void)state;
    sim_policy *allow = parse_ok("allow", "{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\","
                                          "\"Action\":\"iot:*\",\"Resource\":\"*\"}}");
    sim_policy *deny = parse_ok("deny", "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Sid\":\"nosecret\","
                                        "\"Effect\":\"Deny\",\"Action\":\"iot:Receive\",\"Resource\":\"" ARN
                                        "topic/a/secret/*\"}]}");
    const sim_policy *both[] = {allow, deny};
    sim_policy_decision d;
    sim_policy_eval(both, 2, "iot:Receive", ARN "topic/a/secret/x", NULL, &d);
    assert_false(d.allowed);
    assert_true(d.explicit_deny);
    assert_string_equal(d.policy, "deny");
    assert_int_equal(d.statement, 0);
    assert_string_equal(d.sid, "nosecret");
    sim_policy_eval(both, 2, "iot:Receive", ARN "topic/a/open", NULL, &d);
    assert_true(d.allowed);
    assert_string_equal(d.policy, "allow");
    /* Deny alone allows nothing; no policy at all denies too. */
    sim_policy_eval(both + 1, 1, "iot:Receive", ARN "topic/a/open", NULL, &d);
    assert_false(d.allowed);
    assert_false(d.explicit_deny);
    assert_null(d.policy);
    assert_int_equal(d.statement, -1);
    sim_policy_eval(NULL, 0, "iot:Connect", ARN "client/x", NULL, &d);
    assert_false(d.allowed);
    /* The §6.4 pitfall: a Deny on topicfilter/a/restricted/... does not stop a/#. */
    sim_policy *pit = parse_ok("pit", "{\"Version\":\"2012-10-17\",\"Statement\":["
                                      "{\"Effect\":\"Allow\",\"Action\":\"iot:Subscribe\",\"Resource\":\"" ARN "topicfilter/a/*\"},"
                                      "{\"Effect\":\"Deny\",\"Action\":\"iot:Subscribe\",\"Resource\":\"" ARN
                                      "topicfilter/a/restricted/*\"}]}");
    assert_true(allowed(pit, "iot:Subscribe", ARN "topicfilter/a/#", NULL));
    assert_false(allowed(pit, "iot:Subscribe", ARN "topicfilter/a/restricted/#", NULL));
    sim_policy_free(pit);
    sim_policy_free(allow);
    sim_policy_free(deny);
}

static void test_not_action_not_resource(void **state)
{
    (void)state;
    sim_policy *p = parse_ok("p", "{\"Version\":\"2012-10-17\",\"Statement\":["
                                  "{\"Effect\":\"Allow\",\"Action\":\"iot:Receive\",\"NotResource\":\"" ARN "topic/a/restricted/*\"},"
                                  "{\"Effect\":\"Allow\",\"NotAction\":[\"iot:Receive\",\"iot:Connect\"],\"Resource\":\"*\"}]}");
    assert_true(allowed(p, "iot:Receive", ARN "topic/a/x", NULL));
    assert_false(allowed(p, "iot:Receive", ARN "topic/a/restricted/x", NULL));
    assert_true(allowed(p, "iot:Publish", ARN "topic/anything", NULL));
    assert_false(allowed(p, "iot:Connect", ARN "client/c", NULL));
    sim_policy_free(p);
}

static void test_action_wildcards(void **state)
{
    (void)state;
    sim_policy *p = parse_ok("p", "{\"Version\":\"2012-10-17\",\"Statement\":["
                                  "{\"Effect\":\"Allow\",\"Action\":\"iot:*Publish\",\"Resource\":\"*\"}]}");
    assert_true(allowed(p, "iot:Publish", ARN "topic/t", NULL));
    assert_true(allowed(p, "iot:RetainPublish", ARN "topic/t", NULL));
    assert_false(allowed(p, "iot:Receive", ARN "topic/t", NULL));
    sim_policy_free(p);
    p = parse_ok("q", "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"}]}");
    assert_true(allowed(p, "iot:Connect", ARN "client/x", NULL));
    sim_policy_free(p);
}

static void test_variables(void **state)
{
    (void)state;
    sim_policy *p = parse_ok(
        "vars", "{\"Version\":\"2012-10-17\",\"Statement\":["
                "{\"Effect\":\"Allow\",\"Action\":\"iot:Connect\",\"Resource\":\"" ARN "client/${iot:Connection.Thing.ThingName}\"},"
                "{\"Effect\":\"Allow\",\"Action\":\"iot:Publish\",\"Resource\":\"" ARN "topic/c/${iot:ClientId}/*\"},"
                "{\"Effect\":\"Allow\",\"Action\":\"iot:Subscribe\",\"Resource\":\"" ARN "topicfilter/my/${iot:ClientId}/topic\"},"
                "{\"Effect\":\"Allow\",\"Action\":\"iot:Receive\",\"Resource\":\"" ARN "topic/att/${iot:Connection.Thing.IsAttached}\"},"
                "{\"Effect\":\"Allow\",\"Action\":\"iot:Receive\",\"Resource\":\"" ARN "topic/cn/${iot:Certificate.Subject.CommonName}\"},"
                "{\"Effect\":\"Allow\",\"Action\":\"iot:Receive\",\"Resource\":\"" ARN "topic/ou/${iot:Certificate.Subject.OrganizationalUnit.1}\"},"
                "{\"Effect\":\"Allow\",\"Action\":\"iot:Receive\",\"Resource\":\"" ARN "topic/lit/${*}/$(?)/${$}\"}]}");
    sim_policy_kv cert[] = {{"Subject.CommonName", "dev1"}, {"Subject.OrganizationalUnit", "ou-a"},
                            {"Subject.OrganizationalUnit.1", "ou-b"}};
    sim_policy_vars v = {"dev1", "dev1", cert, 3};
    assert_true(allowed(p, "iot:Connect", ARN "client/dev1", &v));
    assert_true(allowed(p, "iot:Publish", ARN "topic/c/dev1/x/y", &v));
    assert_false(allowed(p, "iot:Publish", ARN "topic/c/dev2/x", &v));
    assert_true(allowed(p, "iot:Receive", ARN "topic/att/true", &v));
    assert_true(allowed(p, "iot:Receive", ARN "topic/cn/dev1", &v));
    assert_true(allowed(p, "iot:Receive", ARN "topic/ou/ou-b", &v));
    assert_false(allowed(p, "iot:Receive", ARN "topic/ou/ou-a", &v));
    /* Escapes are the literal characters, not wildcards. */
    assert_true(allowed(p, "iot:Receive", ARN "topic/lit/*/?/$", &v));
    assert_false(allowed(p, "iot:Receive", ARN "topic/lit/x/y/$", &v));
    /* A client id that is not the thing's name: no thing variables (§6.3). */
    sim_policy_vars other = {"someone", "dev1", cert, 3};
    assert_false(allowed(p, "iot:Connect", ARN "client/dev1", &other));
    assert_false(allowed(p, "iot:Connect", ARN "client/someone", &other));
    assert_true(allowed(p, "iot:Receive", ARN "topic/att/false", &other));
    /* A substituted value is literal: client id "+" may subscribe only to the
     * literal my/+/topic (the §6.3 danger), and a "*" in it matches only "*". */
    sim_policy_vars plus = {"+", NULL, NULL, 0};
    assert_true(allowed(p, "iot:Subscribe", ARN "topicfilter/my/+/topic", &plus));
    sim_policy_vars star = {"*", NULL, NULL, 0};
    assert_false(allowed(p, "iot:Publish", ARN "topic/c/x/y", &star));
    assert_true(allowed(p, "iot:Publish", ARN "topic/c/*/y", &star));
    /* A certificate value with a wildcard character is not substituted. */
    sim_policy_kv wild[] = {{"Subject.CommonName", "dev*"}};
    sim_policy_vars w = {"dev1", NULL, wild, 1};
    assert_false(allowed(p, "iot:Receive", ARN "topic/cn/dev*", &w));
    assert_true(allowed(p, "iot:Receive", ARN "topic/cn/${iot:Certificate.Subject.CommonName}", &w));
    /* No certificate field: unsubstituted, so no match. */
    sim_policy_vars none = {"dev1", "dev1", NULL, 0};
    assert_false(allowed(p, "iot:Receive", ARN "topic/cn/dev1", &none));
    sim_policy_free(p);
}

static void test_malformed(void **state)
{
    (void)state;
    parse_bad("", "not a JSON object");
    parse_bad("[1]", "not a JSON object");
    parse_bad("{\"Statement\":[]}", "Version");
    parse_bad("{\"Version\":\"2008-10-17\",\"Statement\":[]}", "Version");
    parse_bad("{\"Version\":\"2012-10-17\"}", "Statement");
    parse_bad("{\"Version\":\"2012-10-17\",\"Statement\":[]}", "Statement");
    parse_bad("{\"Version\":\"2012-10-17\",\"Statement\":[],\"Extra\":1}", "Extra: unknown key");
    parse_bad("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"allow\",\"Action\":\"*\",\"Resource\":\"*\"}]}",
              "Statement[0].Effect");
    parse_bad("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Resource\":\"*\"}]}",
              "Statement[0]: needs one of Action and NotAction");
    parse_bad("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"*\"}]}",
              "needs one of Resource and NotResource");
    parse_bad("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\","
              "\"NotResource\":\"*\"}]}",
              "needs one of Resource and NotResource");
    parse_bad("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":[],\"Resource\":\"*\"}]}",
              "Statement[0].Action: must be a string or a non-empty list");
    parse_bad("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":[\"iot:Publish\",3],"
              "\"Resource\":\"*\"}]}",
              "Statement[0].Action[1]: must be a string");
    parse_bad("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"Publish\",\"Resource\":\"*\"}]}",
              "is not an action");
    parse_bad("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"topic/a\"}]}",
              "is not an ARN");
    parse_bad("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":[\"*\","
              "\"arn:aws:iot:r:a:topic/${iot:ClientName}\"]}]}",
              "Statement[0].Resource[1]: unknown policy variable ${iot:ClientName}");
    parse_bad("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":"
              "\"arn:aws:iot:r:a:topic/${iot:ClientId\"}]}",
              "without its");
    parse_bad("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\","
              "\"Condition\":{}}]}",
              "Statement[0].Condition: not simulated");
    parse_bad("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\","
              "\"Effects\":1}]}",
              "Statement[0].Effects: unknown key");
    /* 2048 characters without whitespace at most. */
    size_t n = 2100;
    char *big = malloc(n + 200);
    assert_non_null(big);
    int k = snprintf(big, n + 200, "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"*\","
                                   "\"Resource\":\"arn:aws:iot:r:a:topic/");
    memset(big + k, 'x', n - (size_t)k);
    strcpy(big + n, "\"}]}");
    parse_bad(big, "AWS IoT allows 2048");
    free(big);
    /* Policy names. */
    char err[256];
    assert_null(sim_policy_parse("bad name", "{}", 2, err, sizeof err));
    assert_non_null(strstr(err, "policy name"));
    /* Documented but unsimulated variables load (and never match). */
    sim_policy *p = parse_ok("docd", "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"*\","
                                     "\"Resource\":\"" ARN "topic/${iot:Connection.Thing.Attributes[room]}\"}]}");
    sim_policy_vars v = {"c", "c", NULL, 0};
    assert_false(allowed(p, "iot:Publish", ARN "topic/room", &v));
    sim_policy_free(p);
}

static void test_store(void **state)
{
    (void)state;
    char err[256];
    sim_policy_store *s = sim_policy_store_new("us-east-1", "123456789012");
    assert_non_null(s);
    assert_non_null(sim_policy_store_get(s, SIM_POLICY_ALLOW_ALL));
    /* The built-in name is taken. */
    assert_int_equal(sim_policy_store_add(s, parse_ok(SIM_POLICY_ALLOW_ALL, "{\"Version\":\"2012-10-17\",\"Statement\":"
                                                                           "{\"Effect\":\"Deny\",\"Action\":\"*\",\"Resource\":\"*\"}}"),
                                          err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "built in"));
    assert_int_equal(sim_policy_store_add(s, parse_ok("pubonly", "{\"Version\":\"2012-10-17\",\"Statement\":"
                                                                 "{\"Effect\":\"Allow\",\"Action\":\"iot:Publish\","
                                                                 "\"Resource\":\"" ARN "topic/${iot:ClientId}\"}}"),
                                          err, sizeof err),
                     0);
    assert_int_equal(sim_policy_store_attach(s, "cert-a", "nope", err, sizeof err), -1);
    assert_non_null(strstr(err, "no policy named nope"));
    assert_int_equal(sim_policy_store_attach(s, "cert-a", "pubonly", err, sizeof err), 0);
    assert_int_equal(sim_policy_store_attach(s, "cert-b", SIM_POLICY_ALLOW_ALL, err, sizeof err), 0);
    sim_policy_decision d;
    char arn[256];
    sim_policy_authorize(s, "cert-a", "c1", NULL, SIM_IOT_PUBLISH, "c1xyz", 2, &d, arn, sizeof arn);
    assert_true(d.allowed);
    assert_string_equal(arn, ARN "topic/c1");
    sim_policy_authorize(s, "cert-a", "c1", NULL, SIM_IOT_CONNECT, "c1", 2, &d, arn, sizeof arn);
    assert_false(d.allowed);
    assert_string_equal(arn, ARN "client/c1");
    sim_policy_authorize(s, "cert-a", "c1", NULL, SIM_IOT_SUBSCRIBE, "a/#", 3, &d, arn, sizeof arn);
    assert_string_equal(arn, ARN "topicfilter/a/#");
    sim_policy_authorize(s, "cert-b", "c1", NULL, SIM_IOT_CONNECT, "c1", 2, &d, NULL, 0);
    assert_true(d.allowed);
    /* An unknown principal and a detached one are denied everything. */
    sim_policy_authorize(s, "cert-z", "c1", NULL, SIM_IOT_CONNECT, "c1", 2, &d, NULL, 0);
    assert_false(d.allowed);
    sim_policy_store_detach_all(s, "cert-b");
    sim_policy_authorize(s, "cert-b", "c1", NULL, SIM_IOT_CONNECT, "c1", 2, &d, NULL, 0);
    assert_false(d.allowed);
    /* Ten policies per certificate at most. */
    for (int i = 0; i < 10; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        assert_int_equal(sim_policy_store_add(s, parse_ok(name, "{\"Version\":\"2012-10-17\",\"Statement\":"
                                                                "{\"Effect\":\"Allow\",\"Action\":\"iot:Connect\",\"Resource\":\"*\"}}"),
                                              err, sizeof err),
                         0);
        int rc = sim_policy_store_attach(s, "cert-a", name, err, sizeof err);
        assert_int_equal(rc, i < 9 ? 0 : -1);
    }
    assert_non_null(strstr(err, "more than 10"));
    char *desc = sim_policy_store_describe(s);
    assert_non_null(desc);
    assert_non_null(strstr(desc, "\"name\":\"pubonly\""));
    assert_non_null(strstr(desc, "\"principal\":\"cert-a\""));
    free(desc);
    sim_policy_store_free(s);
}

/* Run-time changes (the control API's): detach one, replace a document,
 * delete; each refuses what AWS refuses. */
static void test_store_changes(void **state)
{
    (void)state;
    char err[256];
    sim_policy_decision d;
    sim_policy_store *s = sim_policy_store_new("us-east-1", "123456789012");
    assert_non_null(s);
    const char *pub_a = "{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\","
                        "\"Action\":\"iot:Publish\",\"Resource\":\"" ARN "topic/a\"}}";
    const char *pub_b = "{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\","
                        "\"Action\":\"iot:Publish\",\"Resource\":\"" ARN "topic/b\"}}";
    assert_int_equal(sim_policy_store_add(s, parse_ok("pub", pub_a), err, sizeof err), 0);
    assert_int_equal(sim_policy_store_add(s, parse_ok("other", pub_b), err, sizeof err), 0);
    assert_int_equal(sim_policy_store_attach(s, "cert-a", "pub", err, sizeof err), 0);
    assert_int_equal(sim_policy_store_attach(s, "cert-a", "other", err, sizeof err), 0);
    assert_int_equal(sim_policy_store_attach(s, "cert-b", "pub", err, sizeof err), 0);

    /* Replacing the document changes the decision for every holder. */
    sim_policy_authorize(s, "cert-b", "c", NULL, SIM_IOT_PUBLISH, "a", 1, &d, NULL, 0);
    assert_true(d.allowed);
    assert_int_equal(sim_policy_store_replace(s, parse_ok("pub", pub_b), err, sizeof err), 0);
    sim_policy_authorize(s, "cert-b", "c", NULL, SIM_IOT_PUBLISH, "a", 1, &d, NULL, 0);
    assert_false(d.allowed);
    sim_policy_authorize(s, "cert-b", "c", NULL, SIM_IOT_PUBLISH, "b", 1, &d, NULL, 0);
    assert_true(d.allowed);
    assert_string_equal(d.policy, "pub");
    assert_int_equal(sim_policy_store_replace(s, parse_ok("nope", pub_b), err, sizeof err), -1);
    assert_non_null(strstr(err, "no policy named nope"));
    assert_int_equal(sim_policy_store_replace(s, parse_ok(SIM_POLICY_ALLOW_ALL, pub_b), err, sizeof err), -1);
    assert_non_null(strstr(err, "built in"));

    /* Detach one: the other stays attached, in its order. */
    const char *names[SIM_POLICY_MAX_ATTACHED];
    assert_int_equal(sim_policy_store_attached(s, "cert-a", names, SIM_POLICY_MAX_ATTACHED), 2);
    assert_string_equal(names[0], "pub");
    assert_string_equal(names[1], "other");
    assert_int_equal(sim_policy_store_detach(s, "cert-a", "pub", err, sizeof err), 0);
    assert_int_equal(sim_policy_store_attached(s, "cert-a", names, 1), 1);
    assert_string_equal(names[0], "other");
    assert_int_equal(sim_policy_store_attached(s, "cert-z", names, 1), 0);
    sim_policy_authorize(s, "cert-a", "c", NULL, SIM_IOT_PUBLISH, "b", 1, &d, NULL, 0);
    assert_true(d.allowed);
    assert_string_equal(d.policy, "other");
    assert_int_equal(sim_policy_store_detach(s, "cert-a", "pub", err, sizeof err), -1);
    assert_non_null(strstr(err, "not attached"));
    assert_int_equal(sim_policy_store_detach(s, "cert-z", "pub", err, sizeof err), -1);
    assert_int_equal(sim_policy_store_detach(s, "cert-a", "nope", err, sizeof err), -1);
    assert_non_null(strstr(err, "no policy named nope"));

    /* Delete: refused while attached, as AWS does; then gone. */
    assert_int_equal(sim_policy_store_delete(s, "pub", err, sizeof err), -1);
    assert_non_null(strstr(err, "attached to 1 certificate"));
    assert_int_equal(sim_policy_store_detach(s, "cert-b", "pub", err, sizeof err), 0);
    assert_int_equal(sim_policy_store_delete(s, "pub", err, sizeof err), 0);
    assert_null(sim_policy_store_get(s, "pub"));
    assert_non_null(sim_policy_store_get(s, "other"));
    assert_int_equal(sim_policy_store_attach(s, "cert-b", "pub", err, sizeof err), -1);
    assert_int_equal(sim_policy_store_delete(s, "pub", err, sizeof err), -1);
    assert_int_equal(sim_policy_store_delete(s, SIM_POLICY_ALLOW_ALL, err, sizeof err), -1);
    assert_non_null(strstr(err, "built in"));
    /* The name is free again. */
    assert_int_equal(sim_policy_store_add(s, parse_ok("pub", pub_a), err, sizeof err), 0);
    sim_policy_store_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_glob),
        cmocka_unit_test(test_actions_and_resources),
        cmocka_unit_test(test_deny_wins_and_default_deny),
        cmocka_unit_test(test_not_action_not_resource),
        cmocka_unit_test(test_action_wildcards),
        cmocka_unit_test(test_variables),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_store),
        cmocka_unit_test(test_store_changes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_identity_api.c: the fleet provisioning client (iotc/identity.h) on the
 * real client against the scripted fake broker (helpers/fake_broker.h),
 * which lets a test hold a SUBACK back, refuse it, and see every packet the
 * client sends.  A responder thread plays the fleet provisioning service
 * where a test needs answers.
 *
 * The end-to-end counterpart, against iotsim's provisioning service, is
 * `iotc provision` in client/tools/tests/iotc.sh.
 *
 * Timing: every wait is a condition with a generous deadline (Valgrind on a
 * busy machine); "nothing happens" is checked over a short sleep.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "helpers/fake_broker.h"
#include "helpers/fb_client.h"
#include "helpers/test_wait.h"
#include "iotc/client.h"
#include "iotc/identity.h"

#define T_KEYS "$aws/certificates/create/json"
#define T_CSR "$aws/certificates/create-from-csr/json"
#define T_REG(t) "$aws/provisioning-templates/" t "/provision/json"

static const char ACCEPTED_KEYS[] =
    "{\"certificateId\":\"c0ffee\",\"certificatePem\":\"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END "
    "CERTIFICATE-----\\n\",\"privateKey\":\"-----BEGIN RSA PRIVATE KEY-----\\nMIIE\\n-----END RSA PRIVATE "
    "KEY-----\\n\",\"certificateOwnershipToken\":\"tok-keys\"}";
static const char ACCEPTED_CSR[] = "{\"certificateOwnershipToken\":\"tok-csr\",\"certificateId\":\"c5r\","
                                   "\"certificatePem\":\"-----BEGIN CERTIFICATE-----\\nMIIC\\n-----END "
                                   "CERTIFICATE-----\\n\"}";
static const char REJECTED_TOKEN[] = "{\"statusCode\":400,\"errorCode\":\"InvalidCertificateOwnershipToken\","
                                     "\"errorMessage\":\"Certificate ownership token cannot be empty.\"}";
static const char CSR_PEM[] = "-----BEGIN CERTIFICATE REQUEST-----\nMIIBVTCB/AIBADAa\n-----END CERTIFICATE "
                              "REQUEST-----\n";

/* ---- results the callbacks record ------------------------------------------------------- */

typedef struct {
    int calls;
    iotc_identity_result res; /* a copy (iotc_identity_result_copy), freed by the test */
    bool on_service;
    uint64_t at;
    int busy_rc; /* a blocking helper tried from inside the callback */
    int chained_rc; /* a RegisterThing made from inside the callback */
} result_rec;

static iotc_identity *g_free_in_cb; /* an identity client the next result callback frees */
static bool g_try_wait_in_cb;
static result_rec *g_chain; /* when set: the callback registers a thing with the token it got */

/* The client the service-thread check asks; set per test. */
static iotc_client *g_client;

static void on_result(iotc_identity *id, const iotc_identity_result *r, void *user)
{
    result_rec *rec = user;
    bool svc = iotc_client_on_service_thread(g_client);
    int busy = 0, chained = 0;
    pthread_mutex_lock(&g_mu);
    bool try_wait = g_try_wait_in_cb;
    iotc_identity *to_free = g_free_in_cb == id ? id : NULL;
    if (to_free)
        g_free_in_cb = NULL;
    result_rec *chain = g_chain;
    g_chain = NULL;
    pthread_mutex_unlock(&g_mu);
    if (try_wait)
        busy = iotc_identity_create_keys_and_certificate_wait(id, 1000, NULL);
    if (chain && r->status == IOTC_OK) {
        const char *k[] = {"SerialNumber"}, *v[] = {"7"};
        chained = iotc_identity_register_thing(id, "Chain", r->certificate_ownership_token, k, v, 1, WAIT_MS, on_result,
                                               chain);
    }
    /* No cmocka assertion here: this is the service thread. */
    iotc_identity_result copy;
    if (iotc_identity_result_copy(r, &copy) != IOTC_OK)
        copy.status = -999;
    pthread_mutex_lock(&g_mu);
    rec->calls++;
    iotc_identity_result_free(&rec->res);
    rec->res = copy;
    rec->on_service = svc;
    rec->at = now_ms();
    rec->busy_rc = busy;
    rec->chained_rc = chained;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    if (to_free)
        iotc_identity_free(to_free);
}

static void rec_free(result_rec *r)
{
    iotc_identity_result_free(&r->res);
}

/* ---- fixtures --------------------------------------------------------------------------- */

static fb *broker;

static int setup(void **state)
{
    (void)state;
    broker = fb_start();
    g_free_in_cb = NULL;
    g_try_wait_in_cb = false;
    g_chain = NULL;
    return broker ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    fb_stop(broker);
    broker = NULL;
    return 0;
}

static iotc_client *client(bool connect, int64_t queue)
{
    iotc_client *c = fb_client_new(broker, "identity-test", queue, connect, WAIT_MS);
    assert_non_null(c);
    g_client = c;
    return c;
}

static iotc_identity *identity(iotc_client *c)
{
    iotc_identity *id = NULL;
    assert_int_equal(iotc_identity_new(c, &id), IOTC_OK);
    assert_non_null(id);
    return id;
}

/* The i-th received packet of `type` (copied fields the tests need). */
static void get_rec(uint8_t type, size_t i, char *topic, size_t tcap, char *payload, size_t pcap)
{
    fb_rec r;
    assert_true(fb_get(broker, type, i, &r));
    if (topic)
        snprintf(topic, tcap, "%s", type == IOTC_MQTT_PUBLISH ? r.topic : r.filter ? r.filter : "");
    if (payload)
        snprintf(payload, pcap, "%s", r.payload ? r.payload : "");
    fb_rec_free(&r);
}

static uint16_t next_pid = 1;

static void answer(const char *topic, const char *payload)
{
    assert_true(fb_publish(broker, topic, payload, 1, next_pid++));
}

/* Whether some SUBSCRIBE so far was for `filter` with QoS 1. */
static bool subscribed_to(const char *filter)
{
    size_t n = fb_count(broker, IOTC_MQTT_SUBSCRIBE);
    for (size_t i = 0; i < n; i++) {
        fb_rec r;
        if (!fb_get(broker, IOTC_MQTT_SUBSCRIBE, i, &r))
            continue;
        bool hit = r.filter && !strcmp(r.filter, filter) && r.sub_qos == 1;
        fb_rec_free(&r);
        if (hit)
            return true;
    }
    return false;
}

/* ---- a responder thread: the fleet provisioning service, minimal -------------------------------- */

typedef enum { R_ACCEPT, R_REJECT, R_SILENT } r_mode;

typedef struct {
    pthread_t t;
    volatile bool stop;
    r_mode mode;
    size_t seen; /* PUBLISH records handled */
    int answered;
} responder;

/* RegisterThing's answer: thing "Dev_<SerialNumber>", or a rejection for
 * a token that is not one this service issued. */
static void answer_register(const char *topic, const char *payload)
{
    char reply[300];
    cJSON *doc = cJSON_Parse(payload);
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(doc, "certificateOwnershipToken");
    const cJSON *sn =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "parameters"), "SerialNumber");
    bool ok = cJSON_IsString(tok) && (!strcmp(tok->valuestring, "tok-keys") || !strcmp(tok->valuestring, "tok-csr"));
    if (ok) {
        snprintf(reply, sizeof reply, "%s/accepted", topic);
        char body[512];
        snprintf(body, sizeof body,
                 "{\"deviceConfiguration\":{\"FallbackUrl\":\"https://www.example.com/test-site\",\"Serial\":\"%s\"},"
                 "\"thingName\":\"Dev_%s\"}",
                 cJSON_IsString(sn) ? sn->valuestring : "", cJSON_IsString(sn) ? sn->valuestring : "");
        answer(reply, body);
    } else {
        snprintf(reply, sizeof reply, "%s/rejected", topic);
        answer(reply, "{\"statusCode\":400,\"errorCode\":\"InvalidCertificateOwnershipToken\",\"errorMessage\":"
                      "\"Certificate ownership token is invalid.\"}");
    }
    cJSON_Delete(doc);
}

static void *responder_main(void *p)
{
    responder *r = p;
    while (!r->stop) {
        if (!fb_wait_count(broker, IOTC_MQTT_PUBLISH, r->seen + 1, 50))
            continue;
        char topic[256], payload[4096];
        get_rec(IOTC_MQTT_PUBLISH, r->seen++, topic, sizeof topic, payload, sizeof payload);
        if (strncmp(topic, "$aws/", 5) != 0 || r->mode == R_SILENT)
            continue;
        char reply[300];
        if (r->mode == R_REJECT) {
            snprintf(reply, sizeof reply, "%s/rejected", topic);
            answer(reply, REJECTED_TOKEN);
        } else if (!strcmp(topic, T_KEYS)) {
            answer(T_KEYS "/accepted", ACCEPTED_KEYS);
        } else if (!strcmp(topic, T_CSR)) {
            answer(T_CSR "/accepted", ACCEPTED_CSR);
        } else {
            answer_register(topic, payload);
        }
        pthread_mutex_lock(&g_mu);
        r->answered++;
        pthread_cond_broadcast(&g_cv);
        pthread_mutex_unlock(&g_mu);
    }
    return NULL;
}

static void responder_start(responder *r, r_mode mode)
{
    memset(r, 0, sizeof *r);
    r->mode = mode;
    r->seen = fb_count(broker, IOTC_MQTT_PUBLISH);
    assert_int_equal(pthread_create(&r->t, NULL, responder_main, r), 0);
}

static void responder_stop(responder *r)
{
    r->stop = true;
    pthread_join(r->t, NULL);
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_new_and_refused_at_call(void **state)
{
    (void)state;
    iotc_client *c = client(false, 20);
    iotc_identity *id = (iotc_identity *)1;
    assert_int_equal(iotc_identity_new(NULL, &id), IOTC_ERR_INVALID_ARG);
    assert_null(id);
    assert_true(strlen(iotc_identity_why()) > 0);
    assert_int_equal(iotc_identity_new(c, NULL), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_identity_new(c, &id), IOTC_OK);
    assert_string_equal(iotc_identity_why(), "");
    assert_int_equal(iotc_identity_check_template_name("Fleet-Tpl_1"), IOTC_OK);
    assert_string_equal(iotc_identity_why(), "");
    assert_int_equal(iotc_identity_check_template_name("TTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTT"), IOTC_OK); /* 36 */
    assert_int_equal(iotc_identity_check_template_name("TTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTT"), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(iotc_identity_why(), "36"));
    assert_int_equal(iotc_identity_check_template_name("a b"), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(iotc_identity_why(), "[0-9A-Za-z_-]"));
    assert_int_equal(iotc_identity_check_template_name(""), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_identity_check_template_name(NULL), IOTC_ERR_INVALID_ARG);
    result_rec rr = {0};
    const char *k[] = {"a", "a"}, *v[] = {"1", "2"};
    assert_int_equal(iotc_identity_create_keys_and_certificate(id, 0, on_result, &rr), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(iotc_identity_why(), "timeout"));
    assert_int_equal(iotc_identity_create_keys_and_certificate(id, 100, NULL, &rr), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_identity_create_keys_and_certificate(NULL, 100, on_result, &rr), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_identity_create_certificate_from_csr(id, NULL, 100, on_result, &rr), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(iotc_identity_why(), "CSR"));
    assert_int_equal(iotc_identity_create_certificate_from_csr(id, "", 100, on_result, &rr), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_identity_register_thing(id, "bad/name", "t", NULL, NULL, 0, 100, on_result, &rr),
                     IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(iotc_identity_why(), "template name"));
    assert_int_equal(iotc_identity_register_thing(id, NULL, "t", NULL, NULL, 0, 100, on_result, &rr),
                     IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_identity_register_thing(id, "T", NULL, NULL, NULL, 0, 100, on_result, &rr),
                     IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_identity_register_thing(id, "T", "", NULL, NULL, 0, 100, on_result, &rr),
                     IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(iotc_identity_why(), "token"));
    assert_int_equal(iotc_identity_register_thing(id, "T", "t", k, v, 2, 100, on_result, &rr), IOTC_ERR_INVALID_ARG);
    assert_non_null(strstr(iotc_identity_why(), "twice"));
    /* The blocking helpers fill *out even when refused at the call. */
    iotc_identity_result out;
    memset(&out, 0xA5, sizeof out);
    assert_int_equal(iotc_identity_register_thing_wait(id, "T", "", NULL, NULL, 0, 100, &out), IOTC_ERR_INVALID_ARG);
    assert_int_equal(out.status, IOTC_ERR_INVALID_ARG);
    assert_string_equal(out.error_message, "");
    assert_null(out.certificate_id);
    iotc_identity_result_free(&out);
    assert_int_equal(iotc_identity_create_certificate_from_csr_wait(id, NULL, 100, &out), IOTC_ERR_INVALID_ARG);
    iotc_identity_result_free(&out);
    assert_int_equal(iotc_identity_create_keys_and_certificate_wait(NULL, 100, &out), IOTC_ERR_INVALID_ARG);
    iotc_identity_result_free(&out);
    assert_int_equal(iotc_identity_create_keys_and_certificate_wait(id, 0, NULL), IOTC_ERR_INVALID_ARG);
    iotc_identity_result_free(NULL);
    iotc_identity_result_free(&out); /* twice */
    assert_int_equal(iotc_identity_result_copy(NULL, &out), IOTC_ERR_INVALID_ARG);
    iotc_identity_free(id);
    iotc_identity_free(NULL);
    assert_int_equal(rr.calls, 0);
    assert_int_equal(fb_count(broker, 0), 0);
    iotc_client_free(c);
}

/* The heart of it: SUBSCRIBE to accepted and rejected, wait for both
 * SUBACKs, then (and only then) PUBLISH; the answer completes the request;
 * the subscriptions are kept for the next one. */
static void test_subscribe_then_publish(void **state)
{
    (void)state;
    iotc_client *c = client(true, 20);
    iotc_identity *id = identity(c);
    fb_set_withhold_suback(broker, true);
    result_rec rr = {0};
    assert_int_equal(iotc_identity_create_keys_and_certificate(id, WAIT_MS, on_result, &rr), IOTC_OK);
    assert_true(fb_wait_count(broker, IOTC_MQTT_SUBSCRIBE, 2, WAIT_MS));
    assert_true(subscribed_to(T_KEYS "/accepted"));
    assert_true(subscribed_to(T_KEYS "/rejected"));
    uint16_t pid[2];
    for (size_t i = 0; i < 2; i++) {
        fb_rec r;
        assert_true(fb_get(broker, IOTC_MQTT_SUBSCRIBE, i, &r));
        pid[i] = r.packet_id;
        fb_rec_free(&r);
    }
    sleep_ms(150);
    assert_int_equal(fb_count(broker, IOTC_MQTT_PUBLISH), 0);
    assert_true(fb_suback_now(broker, pid[0], 1));
    sleep_ms(150);
    assert_int_equal(fb_count(broker, IOTC_MQTT_PUBLISH), 0); /* one SUBACK is not enough */
    assert_true(fb_suback_now(broker, pid[1], 1));
    assert_true(fb_wait_count(broker, IOTC_MQTT_PUBLISH, 1, WAIT_MS));
    fb_rec pr;
    assert_true(fb_get(broker, IOTC_MQTT_PUBLISH, 0, &pr));
    assert_int_equal(pr.qos, 1);
    assert_false(pr.retain);
    assert_string_equal(pr.topic, T_KEYS);
    assert_string_equal(pr.payload, "{}");
    fb_rec_free(&pr);
    answer(T_KEYS "/accepted", ACCEPTED_KEYS);
    ASSERT_WAIT(rr.calls == 1);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(rr.res.status, IOTC_OK);
    assert_true(rr.on_service);
    assert_string_equal(rr.res.certificate_id, "c0ffee");
    assert_string_equal(rr.res.certificate_pem, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    assert_non_null(strstr(rr.res.private_key, "BEGIN RSA PRIVATE KEY-----\nMIIE"));
    assert_string_equal(rr.res.certificate_ownership_token, "tok-keys");
    assert_string_equal(rr.res.json, ACCEPTED_KEYS);
    assert_int_equal(rr.res.json_len, strlen(ACCEPTED_KEYS));
    assert_string_equal(rr.res.error_code, "");
    assert_string_equal(rr.res.error_message, "");
    assert_int_equal(rr.res.status_code, 0);
    assert_null(rr.res.thing_name);
    pthread_mutex_unlock(&g_mu);
    /* The next one reuses the subscriptions: no SUBSCRIBE, straight out;
     * and this time it is rejected. */
    result_rec r2 = {0};
    assert_int_equal(iotc_identity_create_keys_and_certificate(id, WAIT_MS, on_result, &r2), IOTC_OK);
    assert_true(fb_wait_count(broker, IOTC_MQTT_PUBLISH, 2, WAIT_MS));
    assert_int_equal(fb_count(broker, IOTC_MQTT_SUBSCRIBE), 2);
    answer(T_KEYS "/rejected", "{\"statusCode\":429,\"errorCode\":\"ThrottlingException\",\"errorMessage\":\"slow\"}");
    ASSERT_WAIT(r2.calls == 1);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(r2.res.status, IOTC_ERR_REJECTED);
    assert_int_equal(r2.res.status_code, 429);
    assert_string_equal(r2.res.error_code, "ThrottlingException");
    assert_string_equal(r2.res.error_message, "slow");
    assert_null(r2.res.certificate_id);
    assert_non_null(strstr(r2.res.json, "429"));
    pthread_mutex_unlock(&g_mu);
    /* Another operation subscribes to its own topics. */
    fb_set_withhold_suback(broker, false);
    result_rec r3 = {0};
    assert_int_equal(iotc_identity_create_certificate_from_csr(id, CSR_PEM, WAIT_MS, on_result, &r3), IOTC_OK);
    assert_true(fb_wait_count(broker, IOTC_MQTT_PUBLISH, 3, WAIT_MS));
    assert_int_equal(fb_count(broker, IOTC_MQTT_SUBSCRIBE), 4);
    assert_true(subscribed_to(T_CSR "/accepted"));
    char topic[256], payload[1024];
    get_rec(IOTC_MQTT_PUBLISH, 2, topic, sizeof topic, payload, sizeof payload);
    assert_string_equal(topic, T_CSR);
    assert_string_equal(payload, "{\"certificateSigningRequest\":\"-----BEGIN CERTIFICATE REQUEST-----\\nMIIBVTCB/"
                                 "AIBADAa\\n-----END CERTIFICATE REQUEST-----\\n\"}");
    iotc_identity_free(id);
    ASSERT_WAIT(r3.calls == 1);
    assert_int_equal(r3.res.status, IOTC_ERR_CLOSED);
    assert_null(r3.res.json);
    /* Closing unsubscribes from the four answer topics. */
    assert_true(fb_wait_count(broker, IOTC_MQTT_UNSUBSCRIBE, 4, WAIT_MS));
    iotc_client_free(c);
    assert_int_equal(rr.calls + r2.calls + r3.calls, 3);
    rec_free(&rr);
    rec_free(&r2);
    rec_free(&r3);
}

/* No correlation token: one request per operation (per template) at a
 * time, refused at the call; other operations and templates go on. */
static void test_one_outstanding(void **state)
{
    (void)state;
    iotc_client *c = client(true, 20);
    iotc_identity *id = identity(c);
    result_rec a = {0}, b = {0}, d = {0}, e = {0}, f = {0};
    assert_int_equal(iotc_identity_create_keys_and_certificate(id, WAIT_MS, on_result, &a), IOTC_OK);
    assert_int_equal(iotc_identity_create_keys_and_certificate(id, WAIT_MS, on_result, &b), IOTC_ERR_BUSY);
    assert_non_null(strstr(iotc_identity_why(), "already pending"));
    iotc_identity_result out;
    assert_int_equal(iotc_identity_create_keys_and_certificate_wait(id, 100, &out), IOTC_ERR_BUSY);
    assert_int_equal(out.status, IOTC_ERR_BUSY);
    iotc_identity_result_free(&out);
    assert_int_equal(iotc_identity_create_certificate_from_csr(id, CSR_PEM, WAIT_MS, on_result, &d), IOTC_OK);
    assert_int_equal(iotc_identity_register_thing(id, "A", "tok-keys", NULL, NULL, 0, WAIT_MS, on_result, &e), IOTC_OK);
    assert_int_equal(iotc_identity_register_thing(id, "A", "other", NULL, NULL, 0, WAIT_MS, on_result, &b),
                     IOTC_ERR_BUSY);
    assert_int_equal(iotc_identity_register_thing(id, "B", "tok-keys", NULL, NULL, 0, WAIT_MS, on_result, &f), IOTC_OK);
    assert_true(fb_wait_count(broker, IOTC_MQTT_PUBLISH, 4, WAIT_MS));
    assert_int_equal(fb_count(broker, IOTC_MQTT_SUBSCRIBE), 8);
    /* Each answer goes to the request of its own topics. */
    answer(T_REG("B") "/accepted", "{\"thingName\":\"from-B\"}");
    answer(T_CSR "/accepted", ACCEPTED_CSR);
    answer(T_REG("A") "/rejected", REJECTED_TOKEN);
    answer(T_KEYS "/accepted", ACCEPTED_KEYS);
    ASSERT_WAIT(a.calls == 1 && d.calls == 1 && e.calls == 1 && f.calls == 1);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(a.res.status, IOTC_OK);
    assert_string_equal(a.res.certificate_ownership_token, "tok-keys");
    assert_int_equal(d.res.status, IOTC_OK);
    assert_string_equal(d.res.certificate_id, "c5r");
    assert_null(d.res.private_key);
    assert_int_equal(e.res.status, IOTC_ERR_REJECTED);
    assert_int_equal(e.res.status_code, 400);
    assert_string_equal(e.res.error_code, "InvalidCertificateOwnershipToken");
    assert_int_equal(f.res.status, IOTC_OK);
    assert_string_equal(f.res.thing_name, "from-B");
    assert_int_equal(f.res.device_configuration_len, 0);
    pthread_mutex_unlock(&g_mu);
    /* Answered: the next may go. */
    assert_int_equal(iotc_identity_register_thing(id, "A", "again", NULL, NULL, 0, WAIT_MS, on_result, &b), IOTC_OK);
    /* A second answer for nothing pending is dropped; this one's answer still completes it. */
    answer(T_KEYS "/accepted", ACCEPTED_KEYS);
    answer(T_REG("A") "/accepted", "{\"thingName\":\"A2\"}");
    ASSERT_WAIT(b.calls == 1);
    sleep_ms(100);
    pthread_mutex_lock(&g_mu);
    assert_string_equal(b.res.thing_name, "A2");
    assert_int_equal(a.calls, 1);
    pthread_mutex_unlock(&g_mu);
    iotc_identity_free(id);
    iotc_client_free(c);
    result_rec *all[] = {&a, &b, &d, &e, &f};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(all[i]->calls, 1);
        rec_free(all[i]);
    }
}

static void test_register_payload_and_configuration(void **state)
{
    (void)state;
    iotc_client *c = client(true, 20);
    iotc_identity *id = identity(c);
    result_rec rr = {0};
    const char *k[] = {"SerialNumber", "Location", "Note"};
    const char *v[] = {"42", "Seattle", "say \"hi\"\nback\\slash"};
    assert_int_equal(iotc_identity_register_thing(id, "FleetTpl", "tok-keys", k, v, 3, WAIT_MS, on_result, &rr),
                     IOTC_OK);
    assert_true(fb_wait_count(broker, IOTC_MQTT_PUBLISH, 1, WAIT_MS));
    assert_true(subscribed_to(T_REG("FleetTpl") "/accepted"));
    assert_true(subscribed_to(T_REG("FleetTpl") "/rejected"));
    char topic[256], payload[1024];
    get_rec(IOTC_MQTT_PUBLISH, 0, topic, sizeof topic, payload, sizeof payload);
    assert_string_equal(topic, T_REG("FleetTpl"));
    assert_string_equal(payload, "{\"certificateOwnershipToken\":\"tok-keys\",\"parameters\":{\"SerialNumber\":\"42\","
                                 "\"Location\":\"Seattle\",\"Note\":\"say \\\"hi\\\"\\nback\\\\slash\"}}");
    answer(T_REG("FleetTpl") "/accepted",
           "{\"deviceConfiguration\":{\"FallbackUrl\":\"https://www.example.com/test-site\",\"LocationUrl\":"
           "\"https://example.aws\"},\"thingName\":\"ThingPrefix_42\"}");
    ASSERT_WAIT(rr.calls == 1);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(rr.res.status, IOTC_OK);
    assert_string_equal(rr.res.thing_name, "ThingPrefix_42");
    assert_int_equal(rr.res.device_configuration_len, 2);
    assert_string_equal(rr.res.device_configuration_keys[0], "FallbackUrl");
    assert_string_equal(rr.res.device_configuration_values[0], "https://www.example.com/test-site");
    assert_string_equal(rr.res.device_configuration_keys[1], "LocationUrl");
    assert_string_equal(rr.res.device_configuration_values[1], "https://example.aws");
    assert_null(rr.res.certificate_id);
    assert_null(rr.res.private_key);
    pthread_mutex_unlock(&g_mu);
    iotc_identity_free(id);
    iotc_client_free(c);
    rec_free(&rr);
}

static void test_malformed_answer(void **state)
{
    (void)state;
    iotc_client *c = client(true, 20);
    iotc_identity *id = identity(c);
    result_rec a = {0}, b = {0};
    assert_int_equal(iotc_identity_create_keys_and_certificate(id, WAIT_MS, on_result, &a), IOTC_OK);
    assert_true(fb_wait_count(broker, IOTC_MQTT_PUBLISH, 1, WAIT_MS));
    /* No private key: of no use, and said so, not a timeout later. */
    answer(T_KEYS "/accepted", ACCEPTED_CSR);
    ASSERT_WAIT(a.calls == 1);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(a.res.status, IOTC_ERR_PROTOCOL);
    assert_non_null(strstr(a.res.error_message, "privateKey"));
    assert_string_equal(a.res.json, ACCEPTED_CSR);
    assert_null(a.res.certificate_id);
    pthread_mutex_unlock(&g_mu);
    assert_int_equal(iotc_identity_register_thing(id, "T", "tok", NULL, NULL, 0, WAIT_MS, on_result, &b), IOTC_OK);
    assert_true(fb_wait_count(broker, IOTC_MQTT_PUBLISH, 2, WAIT_MS));
    answer(T_REG("T") "/rejected", "not json at all");
    ASSERT_WAIT(b.calls == 1);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(b.res.status, IOTC_ERR_PROTOCOL);
    assert_non_null(strstr(b.res.error_message, "not JSON"));
    assert_int_equal(b.res.status_code, 0);
    pthread_mutex_unlock(&g_mu);
    iotc_identity_free(id);
    iotc_client_free(c);
    rec_free(&a);
    rec_free(&b);
}

static void test_timeout_on_service_thread(void **state)
{
    (void)state;
    iotc_client *c = client(true, 20);
    iotc_identity *id = identity(c);
    result_rec a = {0}, b = {0};
    uint64_t t0 = now_ms();
    assert_int_equal(iotc_identity_create_keys_and_certificate(id, 400, on_result, &a), IOTC_OK);
    assert_int_equal(iotc_identity_register_thing(id, "T", "tok", NULL, NULL, 0, 200, on_result, &b), IOTC_OK);
    ASSERT_WAIT(a.calls == 1 && b.calls == 1);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(a.res.status, IOTC_ERR_TIMEOUT);
    assert_int_equal(b.res.status, IOTC_ERR_TIMEOUT);
    assert_true(a.on_service);
    assert_true(b.on_service);
    assert_true(b.at >= t0 + 200);
    assert_true(a.at >= t0 + 400);
    assert_true(b.at <= a.at);
    assert_null(a.res.json);
    pthread_mutex_unlock(&g_mu);
    /* Both went out (the broker answered SUBACK), nobody answered. */
    assert_int_equal(fb_count(broker, IOTC_MQTT_PUBLISH), 2);
    /* A late answer changes nothing. */
    answer(T_KEYS "/accepted", ACCEPTED_KEYS);
    sleep_ms(150);
    assert_int_equal(a.calls, 1);
    /* A timed-out request may mean a lost session: the next one subscribes
     * again before publishing, and works. */
    responder rs;
    responder_start(&rs, R_ACCEPT);
    result_rec d = {0};
    assert_int_equal(iotc_identity_create_keys_and_certificate(id, WAIT_MS, on_result, &d), IOTC_OK);
    ASSERT_WAIT(d.calls == 1);
    assert_int_equal(d.res.status, IOTC_OK);
    assert_int_equal(fb_count(broker, IOTC_MQTT_SUBSCRIBE), 6);
    responder_stop(&rs);
    iotc_identity_free(id);
    iotc_client_free(c);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    rec_free(&a);
    rec_free(&b);
    rec_free(&d);
}

static void test_refused_suback(void **state)
{
    (void)state;
    iotc_client *c = client(true, 20);
    iotc_identity *id = identity(c);
    fb_set_suback(broker, 0x80);
    result_rec a = {0};
    assert_int_equal(iotc_identity_create_keys_and_certificate(id, WAIT_MS, on_result, &a), IOTC_OK);
    ASSERT_WAIT(a.calls == 1);
    assert_int_equal(a.res.status, IOTC_ERR_REFUSED);
    assert_true(a.on_service);
    assert_int_equal(fb_count(broker, IOTC_MQTT_PUBLISH), 0);
    assert_int_equal(fb_count(broker, IOTC_MQTT_SUBSCRIBE), 2);
    /* The next request subscribes again. */
    fb_set_suback(broker, 0xFF);
    responder rs;
    responder_start(&rs, R_ACCEPT);
    result_rec d = {0};
    assert_int_equal(iotc_identity_create_keys_and_certificate(id, WAIT_MS, on_result, &d), IOTC_OK);
    ASSERT_WAIT(d.calls == 1);
    assert_int_equal(d.res.status, IOTC_OK);
    assert_int_equal(fb_count(broker, IOTC_MQTT_SUBSCRIBE), 4);
    responder_stop(&rs);
    iotc_identity_free(id);
    iotc_client_free(c);
    rec_free(&a);
    rec_free(&d);
}

static void test_blocking_helpers(void **state)
{
    (void)state;
    iotc_client *c = client(true, 20);
    iotc_identity *id = identity(c);
    responder rs;
    responder_start(&rs, R_ACCEPT);
    iotc_identity_result keys, csr, reg;
    assert_int_equal(iotc_identity_create_keys_and_certificate_wait(id, WAIT_MS, &keys), IOTC_OK);
    assert_int_equal(keys.status, IOTC_OK);
    assert_string_equal(keys.certificate_id, "c0ffee");
    assert_non_null(strstr(keys.private_key, "PRIVATE KEY"));
    assert_string_equal(keys.json, ACCEPTED_KEYS); /* NUL-terminated in a copy */
    assert_int_equal(iotc_identity_create_certificate_from_csr_wait(id, CSR_PEM, WAIT_MS, &csr), IOTC_OK);
    assert_string_equal(csr.certificate_ownership_token, "tok-csr");
    assert_null(csr.private_key);
    const char *k[] = {"SerialNumber"}, *v[] = {"42"};
    assert_int_equal(iotc_identity_register_thing_wait(id, "DevTpl", keys.certificate_ownership_token, k, v, 1,
                                                       WAIT_MS, &reg),
                     IOTC_OK);
    assert_string_equal(reg.thing_name, "Dev_42");
    assert_int_equal(reg.device_configuration_len, 2);
    assert_string_equal(reg.device_configuration_keys[1], "Serial");
    assert_string_equal(reg.device_configuration_values[1], "42");
    iotc_identity_result_free(&keys);
    iotc_identity_result_free(&csr);
    assert_null(keys.certificate_id);
    /* A token the service does not know: rejected. */
    iotc_identity_result_free(&reg);
    assert_int_equal(iotc_identity_register_thing_wait(id, "DevTpl", "forged", NULL, NULL, 0, WAIT_MS, &reg),
                     IOTC_ERR_REJECTED);
    assert_int_equal(reg.status_code, 400);
    assert_string_equal(reg.error_code, "InvalidCertificateOwnershipToken");
    assert_string_equal(reg.error_message, "Certificate ownership token is invalid.");
    assert_null(reg.thing_name);
    iotc_identity_result_free(&reg);
    /* NULL out: the status alone. */
    assert_int_equal(iotc_identity_create_keys_and_certificate_wait(id, WAIT_MS, NULL), IOTC_OK);
    responder_stop(&rs);
    responder_start(&rs, R_REJECT);
    assert_int_equal(iotc_identity_create_certificate_from_csr_wait(id, CSR_PEM, WAIT_MS, &csr), IOTC_ERR_REJECTED);
    assert_int_equal(csr.status_code, 400);
    iotc_identity_result_free(&csr);
    responder_stop(&rs);
    responder_start(&rs, R_SILENT);
    uint64_t t0 = now_ms();
    assert_int_equal(iotc_identity_create_keys_and_certificate_wait(id, 300, &keys), IOTC_ERR_TIMEOUT);
    assert_true(now_ms() >= t0 + 300);
    assert_int_equal(keys.status, IOTC_ERR_TIMEOUT);
    assert_null(keys.json);
    assert_string_equal(keys.error_code, "");
    iotc_identity_result_free(&keys);
    responder_stop(&rs);
    /* From a callback: BUSY at once (it would wait on its own thread). */
    responder_start(&rs, R_ACCEPT);
    pthread_mutex_lock(&g_mu);
    g_try_wait_in_cb = true;
    pthread_mutex_unlock(&g_mu);
    result_rec a = {0};
    assert_int_equal(iotc_identity_create_certificate_from_csr(id, CSR_PEM, WAIT_MS, on_result, &a), IOTC_OK);
    ASSERT_WAIT(a.calls == 1);
    assert_int_equal(a.res.status, IOTC_OK);
    assert_int_equal(a.busy_rc, IOTC_ERR_BUSY);
    responder_stop(&rs);
    iotc_identity_free(id);
    iotc_client_free(c);
    rec_free(&a);
}

/* The provisioning flow as a device writes it asynchronously: RegisterThing
 * made from the certificate's own callback, with its token. */
static void test_register_from_callback(void **state)
{
    (void)state;
    iotc_client *c = client(true, 20);
    iotc_identity *id = identity(c);
    responder rs;
    responder_start(&rs, R_ACCEPT);
    result_rec a = {0}, b = {0};
    pthread_mutex_lock(&g_mu);
    g_chain = &b;
    pthread_mutex_unlock(&g_mu);
    assert_int_equal(iotc_identity_create_keys_and_certificate(id, WAIT_MS, on_result, &a), IOTC_OK);
    ASSERT_WAIT(a.calls == 1 && b.calls == 1);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(a.chained_rc, IOTC_OK);
    assert_int_equal(b.res.status, IOTC_OK);
    assert_string_equal(b.res.thing_name, "Dev_7");
    assert_true(b.on_service);
    pthread_mutex_unlock(&g_mu);
    char topic[256], payload[1024];
    get_rec(IOTC_MQTT_PUBLISH, 1, topic, sizeof topic, payload, sizeof payload);
    assert_string_equal(topic, T_REG("Chain"));
    assert_string_equal(payload,
                        "{\"certificateOwnershipToken\":\"tok-keys\",\"parameters\":{\"SerialNumber\":\"7\"}}");
    responder_stop(&rs);
    iotc_identity_free(id);
    iotc_client_free(c);
    rec_free(&a);
    rec_free(&b);
}

static void test_free_with_pending_and_from_callback(void **state)
{
    (void)state;
    iotc_client *c = client(true, 20);
    iotc_identity *id = identity(c);
    /* Freed from this thread: everything pending completes with CLOSED, on
     * the service thread, before iotc_identity_free returns. */
    result_rec r[3] = {{0}};
    assert_int_equal(iotc_identity_create_keys_and_certificate(id, WAIT_MS, on_result, &r[0]), IOTC_OK);
    assert_int_equal(iotc_identity_create_certificate_from_csr(id, CSR_PEM, WAIT_MS, on_result, &r[1]), IOTC_OK);
    assert_int_equal(iotc_identity_register_thing(id, "T", "t", NULL, NULL, 0, WAIT_MS, on_result, &r[2]), IOTC_OK);
    assert_true(fb_wait_count(broker, IOTC_MQTT_PUBLISH, 3, WAIT_MS));
    iotc_identity_free(id);
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].res.status, IOTC_ERR_CLOSED);
        assert_true(r[i].on_service);
        rec_free(&r[i]);
    }
    pthread_mutex_unlock(&g_mu);
    assert_true(fb_wait_count(broker, IOTC_MQTT_UNSUBSCRIBE, 6, WAIT_MS));
    /* Freed by its own callback, with another request pending: that one
     * completes with CLOSED in that same free. */
    id = identity(c);
    result_rec a = {0}, b = {0};
    pthread_mutex_lock(&g_mu);
    g_free_in_cb = id;
    pthread_mutex_unlock(&g_mu);
    assert_int_equal(iotc_identity_create_keys_and_certificate(id, 200, on_result, &a), IOTC_OK);
    assert_int_equal(iotc_identity_register_thing(id, "T", "t", NULL, NULL, 0, WAIT_MS, on_result, &b), IOTC_OK);
    ASSERT_WAIT(a.calls == 1 && b.calls == 1);
    assert_int_equal(a.res.status, IOTC_ERR_TIMEOUT);
    assert_int_equal(b.res.status, IOTC_ERR_CLOSED);
    sleep_ms(100);
    iotc_client_free(c);
    assert_int_equal(b.calls, 1);
    rec_free(&a);
    rec_free(&b);
}

static void test_refused_at_call_offline(void **state)
{
    (void)state;
    /* Offline with the queue off: the SUBSCRIBE is refused at its call, so
     * the request is too, and nothing calls back. */
    iotc_client *c = client(false, IOTC_QUEUE_OFF);
    iotc_identity *id = identity(c);
    result_rec a = {0};
    assert_int_equal(iotc_identity_create_keys_and_certificate(id, 1000, on_result, &a), IOTC_ERR_QUEUE_OFF);
    assert_true(strlen(iotc_identity_why()) > 0);
    /* Not left pending: the same request is not BUSY now. */
    assert_int_equal(iotc_identity_create_keys_and_certificate(id, 1000, on_result, &a), IOTC_ERR_QUEUE_OFF);
    /* Connected, the same works. */
    assert_int_equal(iotc_client_connect_wait(c, WAIT_MS, NULL), IOTC_OK);
    responder rs;
    responder_start(&rs, R_ACCEPT);
    assert_int_equal(iotc_identity_create_keys_and_certificate(id, WAIT_MS, on_result, &a), IOTC_OK);
    ASSERT_WAIT(a.calls == 1);
    assert_int_equal(a.res.status, IOTC_OK);
    responder_stop(&rs);
    iotc_identity_free(id);
    iotc_client_free(c);
    rec_free(&a);
}

static void test_offline_request_waits_for_connect(void **state)
{
    (void)state;
    /* Made before the connection: the SUBSCRIBEs wait in the offline queue,
     * and the request goes out after them once connected. */
    iotc_client *c = client(false, 20);
    iotc_identity *id = identity(c);
    result_rec a = {0};
    assert_int_equal(iotc_identity_register_thing(id, "T", "nope", NULL, NULL, 0, WAIT_MS, on_result, &a), IOTC_OK);
    sleep_ms(100);
    responder rs;
    responder_start(&rs, R_ACCEPT);
    assert_int_equal(iotc_client_connect_wait(c, WAIT_MS, NULL), IOTC_OK);
    ASSERT_WAIT(a.calls == 1);
    assert_int_equal(a.res.status, IOTC_ERR_REJECTED);
    assert_int_equal(a.res.status_code, 400);
    responder_stop(&rs);
    iotc_identity_free(id);
    iotc_client_free(c);
    rec_free(&a);
}

static void test_disconnect_then_subscribe_again(void **state)
{
    (void)state;
    /* A disconnect ends the session and the client forgets our
     * subscriptions; the request pending then fails with CLOSED, which
     * tells the identity client to subscribe again at its next request. */
    iotc_client *c = client(true, 20);
    iotc_identity *id = identity(c);
    responder rs;
    responder_start(&rs, R_ACCEPT);
    assert_int_equal(iotc_identity_create_keys_and_certificate_wait(id, WAIT_MS, NULL), IOTC_OK);
    responder_stop(&rs);
    assert_int_equal(fb_count(broker, IOTC_MQTT_SUBSCRIBE), 2);
    fb_set_withhold_puback(broker, true);
    result_rec a = {0};
    assert_int_equal(iotc_identity_create_keys_and_certificate(id, WAIT_MS, on_result, &a), IOTC_OK);
    assert_true(fb_wait_count(broker, IOTC_MQTT_PUBLISH, 2, WAIT_MS));
    assert_int_equal(iotc_client_disconnect_wait(c, WAIT_MS), IOTC_OK);
    ASSERT_WAIT(a.calls == 1);
    assert_int_equal(a.res.status, IOTC_ERR_CLOSED);
    fb_set_withhold_puback(broker, false);
    assert_int_equal(iotc_client_connect_wait(c, WAIT_MS, NULL), IOTC_OK);
    responder_start(&rs, R_ACCEPT);
    assert_int_equal(iotc_identity_create_keys_and_certificate_wait(id, WAIT_MS, NULL), IOTC_OK);
    responder_stop(&rs);
    assert_int_equal(fb_count(broker, IOTC_MQTT_SUBSCRIBE), 4);
    iotc_identity_free(id);
    iotc_client_free(c);
    rec_free(&a);
}

static void test_result_copy(void **state)
{
    (void)state;
    const char *keys[] = {"a", "bb"}, *vals[] = {"1", ""};
    const char json[] = "{\"x\":1}trailing-not-copied";
    iotc_identity_result src;
    memset(&src, 0, sizeof src);
    src.status = IOTC_OK;
    src.error_code = src.error_message = "";
    src.thing_name = "thing";
    src.device_configuration_len = 2;
    src.device_configuration_keys = keys;
    src.device_configuration_values = vals;
    src.json = json;
    src.json_len = 7;
    iotc_identity_result dst;
    assert_int_equal(iotc_identity_result_copy(&src, &dst), IOTC_OK);
    assert_ptr_not_equal(dst.thing_name, src.thing_name);
    assert_string_equal(dst.thing_name, "thing");
    assert_int_equal(dst.device_configuration_len, 2);
    assert_string_equal(dst.device_configuration_keys[1], "bb");
    assert_string_equal(dst.device_configuration_values[1], "");
    assert_string_equal(dst.json, "{\"x\":1}");
    assert_int_equal(dst.json_len, 7);
    assert_null(dst.certificate_id);
    assert_string_equal(dst.error_code, "");
    /* A copy of a copy. */
    iotc_identity_result dst2;
    assert_int_equal(iotc_identity_result_copy(&dst, &dst2), IOTC_OK);
    iotc_identity_result_free(&dst);
    assert_string_equal(dst2.device_configuration_keys[0], "a");
    iotc_identity_result_free(&dst2);
    /* A status-only result, with NULL error strings: they become "". */
    memset(&src, 0, sizeof src);
    src.status = IOTC_ERR_TIMEOUT;
    assert_int_equal(iotc_identity_result_copy(&src, &dst), IOTC_OK);
    assert_int_equal(dst.status, IOTC_ERR_TIMEOUT);
    assert_string_equal(dst.error_message, "");
    iotc_identity_result_free(&dst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new_and_refused_at_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscribe_then_publish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_outstanding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_register_payload_and_configuration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_on_service_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_suback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blocking_helpers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_register_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_pending_and_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_at_call_offline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offline_request_waits_for_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_then_subscribe_again, setup, teardown),
        cmocka_unit_test(test_result_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

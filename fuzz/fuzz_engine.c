/*
 * fuzz_engine: bytes straight into iotsim's engine, no sockets.
 *
 * The input is a script: the first byte picks the profile and a few limits
 * (small, so that windows fill and queues overflow), then each step is an
 * opcode byte and its arguments:
 *   0 open a connection          1 k n <n bytes>: input to connection k
 *   2 k: connection k lost       3 d: advance the clock by d*50 ms, tick
 *   4 k: drop k (server side)    5 d: refuse connects for d*100 ms
 *   6 k: blackhole k on/off      7 n: duplicate the next n QoS 0
 * Opcode 0's bits 5-6 pick the connection's principal (certificate id), whose
 * IoT policies decide what it may do: "feedbeef" (allow-all), "limited" (a
 * policy with Allow and Deny statements, wildcards and policy variables, so
 * that every authorization path and its consequence is reached) or "orphan"
 * (nothing attached: denied everything); bit 7 makes the principal INACTIVE.
 * Up to four connections live at once.  The shadow service is on (publishes
 * to $aws/things/{thing}/shadow/... are requests); after each change its
 * store must survive a save/load round trip unchanged.  Invariants: nothing crashes or leaks;
 * every event-log record is a JSON object with "t" and "kind"; every byte the engine sends to a connection decodes as MQTT in that
 * connection's protocol version, and nothing is sent after it was closed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "iotc/mqtt.h"
#include "sim_engine.h"
#include "sim_policy.h"

#define MAXC 4

typedef struct {
    sim_conn_id id;
    bool open;
    iotc_mqtt_reader out; /* decodes what the engine sends */
    bool versioned;       /* its version is known (from the CONNACK) */
} fconn;

typedef struct {
    fconn c[MAXC];
    uint64_t rng;
    sim_engine *e;
} world;

static fconn *by_id(world *w, sim_conn_id id)
{
    for (int i = 0; i < MAXC; i++)
        if (w->c[i].open && w->c[i].id == id)
            return &w->c[i];
    return NULL;
}

static void io_send(void *ctx, sim_conn_id id, const uint8_t *data, size_t len)
{
    world *w = ctx;
    fconn *c = by_id(w, id);
    if (!c)
        abort(); /* sent to a connection it closed or never opened */
    if (!c->versioned && len >= 2) {
        /* The first thing a broker sends is a CONNACK, in the version of
         * the client's CONNECT: 3.1.1's has exactly two bytes of body,
         * MQTT 5's at least three (its property length). */
        if (data[0] != 0x20)
            abort();
        iotc_mqtt_reader_set_version(&c->out, data[1] == 2 ? IOTC_MQTT_V311 : IOTC_MQTT_V5);
        c->versioned = true;
    }
    while (len) {
        size_t used;
        iotc_mqtt_packet p;
        iotc_mqtt_status st = iotc_mqtt_reader_feed(&c->out, data, len, &used, &p, NULL);
        if (st != IOTC_MQTT_OK && st != IOTC_MQTT_NEED_MORE)
            abort(); /* the engine wrote something a client could not parse */
        data += used;
        len -= used;
    }
}

static void io_close(void *ctx, sim_conn_id id)
{
    world *w = ctx;
    fconn *c = by_id(w, id);
    if (!c)
        abort();
    c->open = false;
    iotc_mqtt_reader_free(&c->out);
}

/* Every event-log record must be one JSON object with its time and kind.
 * FUZZ_ENGINE_LOG=1 prints them (to see what a seed reaches). */
static void io_log(void *ctx, const char *json)
{
    (void)ctx;
    static int verbose = -1;
    if (verbose < 0)
        verbose = getenv("FUZZ_ENGINE_LOG") != NULL;
    cJSON *o = cJSON_Parse(json);
    if (!cJSON_IsObject(o) || !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, "t")) ||
        !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "kind")))
        abort();
    cJSON_Delete(o);
    if (verbose)
        fprintf(stderr, "%s\n", json);
}

static uint64_t io_random(void *ctx)
{
    world *w = ctx;
    w->rng = w->rng * 6364136223846793005ull + 1442695040888963407ull;
    return w->rng >> 11;
}

static uint64_t io_wall(void *ctx)
{
    (void)ctx;
    return 1700000000000ull;
}

/* The edge saves the shadow store after each change: what it saves must load
 * into a fresh store and save again to the same text. */
static void io_shadows_changed(void *ctx)
{
    world *w = ctx;
    const sim_config *cfg = sim_engine_config(w->e);
    sim_shadow_store *st = sim_engine_shadows(w->e);
    char *a = sim_shadow_save(st);
    sim_shadow_store *copy = sim_shadow_store_new(&cfg->shadow);
    char why[256];
    if (a && copy) {
        if (!sim_shadow_load(copy, a, why, sizeof why)) {
            fprintf(stderr, "saved shadows do not load: %s\n%s\n", why, a);
            abort();
        }
        char *b = sim_shadow_save(copy);
        if (b && strcmp(a, b) != 0) {
            fprintf(stderr, "shadows changed in a save/load round trip:\n%s\n%s\n", a, b);
            abort();
        }
        free(b);
    }
    sim_shadow_store_free(copy);
    free(a);
}

/* Topics and filters the corpus uses are short: "a", "a/b", "$aws/...". */
static const char LIMITED[] =
    "{\"Version\":\"2012-10-17\",\"Statement\":["
    "{\"Effect\":\"Allow\",\"Action\":\"iot:Connect\",\"Resource\":[\"arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}\","
    "\"arn:aws:iot:us-east-1:123456789012:client/c-*\"]},"
    "{\"Effect\":\"Allow\",\"Action\":[\"iot:Publish\",\"iot:Receive\"],\"Resource\":[\"arn:aws:iot:us-east-1:123456789012:topic/a*\","
    "\"arn:aws:iot:us-east-1:123456789012:topic/$aws/things/${iot:ClientId}/*\"]},"
    "{\"Effect\":\"Deny\",\"Action\":\"iot:*\",\"Resource\":\"arn:aws:iot:us-east-1:123456789012:topic/a/?\"},"
    "{\"Effect\":\"Allow\",\"Action\":\"iot:Subscribe\",\"Resource\":\"arn:aws:iot:us-east-1:123456789012:topicfilter/a/*\"},"
    "{\"Effect\":\"Allow\",\"Action\":\"iot:RetainPublish\",\"Resource\":\"arn:aws:iot:us-east-1:123456789012:topic/${iot:Certificate.Subject.CommonName}/*\"}]}";

/* Built once: the store is read-only while the engine runs. */
static const sim_policy_store *policies(void)
{
    static sim_policy_store *ps;
    if (ps)
        return ps;
    char err[256];
    ps = sim_policy_store_new("us-east-1", "123456789012");
    sim_policy *p = ps ? sim_policy_parse("limited", LIMITED, sizeof LIMITED - 1, err, sizeof err) : NULL;
    if (!p || sim_policy_store_add(ps, p, err, sizeof err) ||
        sim_policy_store_attach(ps, "feedbeef", SIM_POLICY_ALLOW_ALL, err, sizeof err) ||
        sim_policy_store_attach(ps, "limited", "limited", err, sizeof err) ||
        sim_policy_store_set_cert_var(ps, "limited", "Subject.CommonName", "r"))
        abort(); /* the harness itself is wrong */
    return ps;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    world w;
    memset(&w, 0, sizeof w);
    w.rng = 42;
    sim_config cfg;
    uint8_t k0 = data[0];
    sim_config_init(&cfg, (k0 & 1) ? SIM_PROFILE_CURRENT : SIM_PROFILE_CLASSIC);
    cfg.max_inflight = 1u + ((k0 >> 1) & 3);
    cfg.max_queued = 4;
    cfg.max_subscriptions = 3;
    cfg.max_payload = 512;
    cfg.max_packet = 1024;
    cfg.connect_interval_ms = (k0 & 8) ? 1000 : 0;
    cfg.qos0_dup_permille = (k0 & 16) ? 500 : 0;
    cfg.suback_delay_ms = (k0 & 32) ? 100 : 0;
    cfg.throughput = (k0 & 64) ? 64 : cfg.throughput;
    cfg.publish_rate = (k0 & 128) ? 2 : cfg.publish_rate;
    cfg.keepalive_min = 1;
    cfg.session_expiry_s = 2;
    cfg.qos1_retry_ms = 200;
    cfg.qos1_retry_max_ms = 1000;
    cfg.policies = policies();
    sim_io io = {io_send, io_close, io_log, io_random, io_wall, io_shadows_changed};
    sim_engine *e = sim_engine_new(&cfg, &io, &w);
    if (!e)
        return 0;
    w.e = e;
    uint64_t now = 1000;
    size_t i = 1;
    while (i < size) {
        uint8_t opbyte = data[i++], op = opbyte & 7;
        uint8_t a = i < size ? data[i] : 0;
        switch (op) {
        case 0:
            for (int k = 0; k < MAXC; k++) {
                if (!w.c[k].open) {
                    /* Bits 5-6: whose certificate; bit 7: an INACTIVE one. */
                    static const char *const who[4] = {"feedbeef", "limited", "orphan", "feedbeef"};
                    sim_conn_info info = {who[(opbyte >> 5) & 3], "thing", "127.0.0.1", "fuzz", (opbyte & 0x80) != 0};
                    w.c[k].open = true; /* before open: it may log or send */
                    w.c[k].versioned = false;
                    iotc_mqtt_reader_init(&w.c[k].out, IOTC_MQTT_V311, 0, NULL, 0);
                    w.c[k].id = sim_engine_open(e, &info, now);
                    if (!w.c[k].id) {
                        w.c[k].open = false;
                        iotc_mqtt_reader_free(&w.c[k].out);
                    }
                    break;
                }
            }
            break;
        case 1: {
            fconn *c = &w.c[a % MAXC];
            i++;
            size_t n = i < size ? data[i++] : 0;
            if (n > size - i)
                n = size - i;
            if (c->open && sim_engine_input(e, c->id, data + i, n, now) > n)
                abort();
            i += n;
            break;
        }
        case 2: {
            fconn *c = &w.c[a % MAXC];
            i++;
            if (c->open) {
                c->open = false;
                iotc_mqtt_reader_free(&c->out);
                sim_engine_lost(e, c->id, now);
            }
            break;
        }
        case 3: i++; now += (uint64_t)a * 50u; break;
        case 4: {
            fconn *c = &w.c[a % MAXC];
            i++;
            if (c->open)
                sim_engine_drop(e, c->id, 0x98, "fuzz", now);
            break;
        }
        case 5: i++; sim_engine_refuse_until(e, now + (uint64_t)a * 100u); break;
        case 6: {
            fconn *c = &w.c[a % MAXC];
            i++;
            if (c->open)
                sim_engine_blackhole(e, c->id, a & 0x80);
            break;
        }
        default: i++; sim_engine_duplicate_next_qos0(e, a & 3); break;
        }
        uint64_t hint = sim_engine_next_deadline(e);
        uint64_t next = sim_engine_tick(e, now);
        if (next < now)
            abort(); /* a deadline in the past would spin the edge */
        if (hint > now && next < hint)
            abort(); /* the edge, ticking at the hint, would have missed a timer */
    }
    /* Run every remaining timer out: expiry, redelivery, replay. */
    for (int k = 0; k < 50; k++) {
        now += 500;
        sim_engine_tick(e, now);
    }
    sim_engine_free(e);
    for (int k = 0; k < MAXC; k++) {
        if (w.c[k].open)
            iotc_mqtt_reader_free(&w.c[k].out);
    }
    return 0;
}

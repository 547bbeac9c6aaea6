/*
 * fuzz_client: libiotc's engine (client/src/core/engine.c) with broker bytes,
 * link events, API calls and clock steps all chosen by the input, no sockets
 * (the wolfMQTT model: a fake transport and random API sequences).
 *
 * The first byte picks limits (queue size and policy, inflight window, drain
 * rate, operation timeout); then each step is an opcode byte and arguments:
 *   0 n <n bytes>: broker bytes in     1: link up       2: link down
 *   3 d: advance d*20 ms and tick      4 q t: publish   5 q t: subscribe
 *   6 t: unsubscribe                   7 k: a canned broker packet (CONNACK,
 *                                         SUBACK, PUBACK, PINGRESP, PUBLISH) for pid k
 * Invariants: nothing crashes or leaks; every operation the engine accepted
 * completes exactly once (those refused at the call never); every byte the
 * engine sends decodes as MQTT 3.1.1; no deadline in the past; io.send only
 * while the link is up.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "iotc/mqtt.h"

#define MAXOPS 256

typedef struct {
    bool link_open;  /* the engine asked to open and no close/down since */
    bool link_up;    /* we reported it up */
    iotc_mqtt_reader out;
    unsigned accepted, completed;
    unsigned char done[MAXOPS]; /* completions per op */
    uint64_t rng;
} world;

static world W;

static void io_open(void *ctx)
{
    (void)ctx;
    W.link_open = true;
    W.link_up = false;
    iotc_mqtt_reader_reset(&W.out);
}

static void io_close(void *ctx)
{
    (void)ctx;
    W.link_open = false;
    W.link_up = false;
}

static void io_send(void *ctx, const uint8_t *d, size_t n)
{
    (void)ctx;
    if (!W.link_up)
        abort(); /* bytes for a link that is not up */
    while (n) {
        size_t used;
        iotc_mqtt_packet p;
        iotc_mqtt_status st = iotc_mqtt_reader_feed(&W.out, d, n, &used, &p, NULL);
        if (st != IOTC_MQTT_OK && st != IOTC_MQTT_NEED_MORE)
            abort(); /* the engine wrote something a broker could not parse */
        d += used;
        n -= used;
    }
}

static void io_event(void *ctx, const iotc_event *ev)
{
    (void)ctx;
    (void)ev;
}

static void io_message(void *ctx, const iotc_message *m)
{
    (void)ctx;
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < m->topic.len; i++)
        sink ^= m->topic.data[i];
    for (size_t i = 0; i < m->payload.len; i++)
        sink ^= m->payload.data[i];
    (void)sink;
}

static uint64_t io_random(void *ctx)
{
    (void)ctx;
    W.rng = W.rng * 6364136223846793005ull + 1442695040888963407ull;
    return W.rng >> 11;
}

static void op_done(void *user, int status, uint8_t granted)
{
    (void)status;
    (void)granted;
    size_t i = (size_t)(uintptr_t)user;
    if (i >= MAXOPS || ++W.done[i] != 1)
        abort(); /* completed twice, or an operation nobody made */
    W.completed++;
}

static const char *const TOPICS[4] = {"a/b", "dev/1/cmd", "x", "t/y/z"};
static const char *const FILTERS[4] = {"a/+", "dev/#", "x", "#"};

/* A few broker packets an engine has to handle, for packet id k. */
static size_t canned(uint8_t k, uint8_t *buf, size_t cap)
{
    iotc_mqtt_packet p;
    memset(&p, 0, sizeof p);
    uint16_t pid = (uint16_t)(1 + (k >> 3));
    static const uint8_t codes[1] = {0x01};
    switch (k & 7) {
    case 0: p.type = IOTC_MQTT_CONNACK; p.u.connack.session_present = k & 8; break;
    case 1: p.type = IOTC_MQTT_CONNACK; p.u.connack.reason = 5; break;
    case 2: p.type = IOTC_MQTT_PUBACK; p.u.ack.packet_id = pid; break;
    case 3:
        p.type = IOTC_MQTT_SUBACK;
        p.u.suback.packet_id = pid;
        p.u.suback.codes = codes;
        p.u.suback.count = 1;
        break;
    case 4: p.type = IOTC_MQTT_UNSUBACK; p.u.suback.packet_id = pid; break;
    case 5: p.type = IOTC_MQTT_PINGRESP; break;
    default:
        p.type = IOTC_MQTT_PUBLISH;
        p.u.publish.qos = (k & 1);
        p.u.publish.packet_id = p.u.publish.qos ? pid : 0;
        p.u.publish.topic = iotc_mqtt_str(TOPICS[k & 3]);
        p.u.publish.payload = iotc_mqtt_str("payload");
        break;
    }
    size_t n = 0;
    if (iotc_mqtt_encode(&p, IOTC_MQTT_V311, buf, cap, &n, NULL) != IOTC_MQTT_OK)
        return 0;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    memset(&W, 0, sizeof W);
    W.rng = 7;
    iotc_mqtt_reader_init(&W.out, IOTC_MQTT_V311, 0, NULL, 0);
    uint8_t k0 = data[0];
    iotc_engine_config cfg;
    iotc_engine_config_init(&cfg);
    cfg.client_id = "fuzz-device";
    cfg.keep_alive_s = 30;
    cfg.ping_timeout_ms = 2000;
    cfg.queue.limit = (k0 & 3) == 3 ? -1 : (int64_t)(k0 & 3) * 2; /* 0 (off), 2, 4, unbounded */
    cfg.queue.drop = (k0 & 4) ? IOTC_OPQ_DROP_OLDEST : IOTC_OPQ_DROP_NEWEST;
    cfg.max_inflight = (uint16_t)(1 + ((k0 >> 3) & 3));
    cfg.drain.hz = (k0 & 32) ? 0 : 2;
    cfg.op_timeout_ms = (k0 & 64) ? 500 : 0;
    cfg.max_packet_size = 4096;
    cfg.backoff.min_ms = 100;
    cfg.backoff.max_ms = 1600;
    cfg.backoff.stable_ms = 1000;
    iotc_engine_io io = {io_open, io_close, io_send, io_event, io_message, io_random};
    iotc_engine *e = NULL;
    const char *why = NULL;
    if (iotc_engine_new(&cfg, &io, NULL, &e, &why) != IOTC_OK) {
        iotc_mqtt_reader_free(&W.out);
        return 0;
    }
    uint64_t now = 1000;
    iotc_engine_start(e, now);
    size_t i = 1;
    while (i < size) {
        uint8_t op = data[i++] & 7;
        uint8_t a = i < size ? data[i] : 0;
        switch (op) {
        case 0: {
            i++;
            size_t n = a;
            if (n > size - i)
                n = size - i;
            if (W.link_up)
                iotc_engine_input(e, data + i, n, now);
            i += n;
            break;
        }
        case 1:
            if (W.link_open && !W.link_up) {
                W.link_up = true;
                iotc_engine_link_up(e, now);
            }
            break;
        case 2:
            if (W.link_open) {
                W.link_open = W.link_up = false;
                iotc_engine_link_down(e, IOTC_ERR_CONNECTION_LOST, now);
            }
            break;
        case 3: i++; now += (uint64_t)a * 20u; break;
        case 4:
        case 5:
        case 6: {
            i++;
            if (W.accepted >= MAXOPS)
                break;
            void *user = (void *)(uintptr_t)W.accepted;
            int rc;
            if (op == 4)
                rc = iotc_engine_publish(e, TOPICS[a & 3], (const uint8_t *)"m", 1, (uint8_t)((a >> 2) & 3),
                                         false, op_done, user, now);
            else if (op == 5)
                rc = iotc_engine_subscribe(e, FILTERS[a & 3], (uint8_t)((a >> 2) & 3), op_done, user, now);
            else
                rc = iotc_engine_unsubscribe(e, FILTERS[a & 3], op_done, user, now);
            if (rc == IOTC_OK)
                W.accepted++;
            break;
        }
        default: {
            i++;
            uint8_t buf[64];
            size_t n = canned(a, buf, sizeof buf);
            if (W.link_up && n)
                iotc_engine_input(e, buf, n, now);
            break;
        }
        }
        uint64_t next = iotc_engine_tick(e, now);
        if (next < now)
            abort(); /* a deadline in the past would spin the edge */
    }
    /* Let every timer run out, then stop: all must be complete. */
    for (int k = 0; k < 20; k++) {
        now += 1000;
        iotc_engine_tick(e, now);
    }
    iotc_engine_stop(e, now);
    iotc_engine_free(e);
    if (W.completed != W.accepted)
        abort(); /* an accepted operation never completed */
    iotc_mqtt_reader_free(&W.out);
    return 0;
}

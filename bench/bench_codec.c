/*
 * bench/bench_codec.c: codec throughput, each figure beside memcpy's over the
 * same bytes.
 *
 * Workloads: PUBLISH streams with 64 B, 1 KB and 64 KB payloads, and a mixed
 * session stream (CONNECT, CONNACK, SUBSCRIBE, SUBACK, PUBLISH of 16 B..8 KB,
 * PUBACK, PUBREC/PUBREL/PUBCOMP, PINGREQ/PINGRESP, UNSUBSCRIBE, UNSUBACK,
 * DISCONNECT), each in MQTT 3.1.1 and MQTT 5 (v5 PUBLISH carries a content
 * type and one user property), about 4 MB per pass.
 *
 * Per workload:
 *   reader  iotc_mqtt_reader_feed() on 16 KB reads (as from a socket), so a
 *           packet is sometimes split across reads and gathered in the
 *           reader's own buffer; memcpy baseline: the same 16 KB pieces
 *           copied into one 16 KB buffer.
 *   decode  iotc_mqtt_decode() over the whole buffer, packet after packet;
 *           memcpy baseline: the whole buffer in one call.
 *   encode  iotc_mqtt_encode() of the same packets into one output buffer;
 *           memcpy baseline: the whole buffer in one call.
 * Decoding yields views, so it reads headers, lengths and properties but not
 * payload bytes; a consumer would read those once itself.
 *
 * Each case runs for about 0.3 s per side (argument 1 changes that, in
 * seconds): codec and memcpy in turns over 5 rounds, the fastest round of each
 * kept; time is CLOCK_MONOTONIC; results go into a volatile sink
 * and memcpy is called through a volatile pointer so that nothing is optimised
 * away.  The target (decoding 1 KB PUBLISH at no less than half of memcpy's
 * bandwidth) is printed PASS or MISS; the exit status is 0 either way, since
 * timings depend on the machine.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "iotc/mqtt.h"

#define TARGET_BYTES (4u << 20)
#define READ_SIZE (16u << 10)
#define TARGET_RATIO 0.5

static volatile size_t sink;
static void *(*volatile memcpy_fn)(void *, const void *, size_t) = memcpy;
static double case_seconds = 0.3;

typedef struct {
    const char *name;
    iotc_mqtt_version version;
    iotc_mqtt_packet *packets; /* what was encoded, in order */
    size_t npackets;
    uint8_t *wire; /* their encoding, back to back */
    size_t len;
    uint8_t *payload_store;
} workload;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_codec: %s\n", what);
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

/* xorshift32: the same "random" sizes on every run. */
static uint32_t rng_next(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

/* ---- building workloads --------------------------------------------------- */

static const iotc_mqtt_user_prop trace_prop[1] = {
    {{(const uint8_t *)"trace-id", 8}, {(const uint8_t *)"4bf92f3577b34da6", 16}}};

static void add(workload *w, size_t *cap, const iotc_mqtt_packet *p)
{
    if (w->npackets == *cap) {
        *cap = *cap ? *cap * 2 : 256;
        iotc_mqtt_packet *np = realloc(w->packets, *cap * sizeof *np);
        if (!np)
            die("out of memory");
        w->packets = np;
    }
    w->packets[w->npackets++] = *p;
}

static iotc_mqtt_packet make_publish(iotc_mqtt_version v, const uint8_t *payload, size_t len, uint16_t id)
{
    iotc_mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = IOTC_MQTT_PUBLISH;
    p.u.publish.qos = 1;
    p.u.publish.packet_id = id;
    p.u.publish.topic = iotc_mqtt_str("devices/dev-0001/telemetry");
    p.u.publish.payload.data = payload;
    p.u.publish.payload.len = len;
    if (v == IOTC_MQTT_V5) {
        p.u.publish.props.present = IOTC_PROP_BIT(IOTC_PROP_CONTENT_TYPE);
        p.u.publish.props.content_type = iotc_mqtt_str("application/octet-stream");
        p.u.publish.props.user = trace_prop;
        p.u.publish.props.user_count = 1;
    }
    return p;
}

static iotc_mqtt_packet make_simple(iotc_mqtt_type t, uint16_t id)
{
    iotc_mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = t;
    if (t >= IOTC_MQTT_PUBACK && t <= IOTC_MQTT_PUBCOMP)
        p.u.ack.packet_id = id;
    return p;
}

static const iotc_mqtt_sub subs[3] = {
    {{(const uint8_t *)"devices/dev-0001/cmd/#", 22}, 1, false, false, 0},
    {{(const uint8_t *)"$aws/things/dev-0001/shadow/update/delta", 40}, 1, false, false, 0},
    {{(const uint8_t *)"$aws/things/dev-0001/jobs/notify-next", 37}, 0, false, false, 0}};
static const iotc_mqtt_bytes unsub_filters[1] = {{(const uint8_t *)"devices/dev-0001/cmd/#", 22}};
static const uint8_t suback_codes[3] = {1, 1, 0};

static void add_session_start(workload *w, size_t *cap)
{
    iotc_mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = IOTC_MQTT_CONNECT;
    p.u.connect.version = w->version;
    p.u.connect.clean_start = true;
    p.u.connect.keep_alive = 1200;
    p.u.connect.client_id = iotc_mqtt_str("dev-0001");
    p.u.connect.has_username = true;
    p.u.connect.username = iotc_mqtt_str("?SDK=C&Version=0.1.0");
    if (w->version == IOTC_MQTT_V5) {
        p.u.connect.props.present =
            IOTC_PROP_BIT(IOTC_PROP_SESSION_EXPIRY_INTERVAL) | IOTC_PROP_BIT(IOTC_PROP_RECEIVE_MAXIMUM);
        p.u.connect.props.session_expiry_interval = 3600;
        p.u.connect.props.receive_maximum = 100;
    }
    add(w, cap, &p);

    memset(&p, 0, sizeof p);
    p.type = IOTC_MQTT_CONNACK;
    if (w->version == IOTC_MQTT_V5) {
        p.u.connack.props.present = IOTC_PROP_BIT(IOTC_PROP_TOPIC_ALIAS_MAXIMUM) |
                                    IOTC_PROP_BIT(IOTC_PROP_MAXIMUM_PACKET_SIZE) |
                                    IOTC_PROP_BIT(IOTC_PROP_RETAIN_AVAILABLE);
        p.u.connack.props.topic_alias_maximum = 8;
        p.u.connack.props.maximum_packet_size = 131072;
        p.u.connack.props.retain_available = 0;
    }
    add(w, cap, &p);

    memset(&p, 0, sizeof p);
    p.type = IOTC_MQTT_SUBSCRIBE;
    p.u.subscribe.packet_id = 1;
    p.u.subscribe.subs = subs;
    p.u.subscribe.count = 3;
    add(w, cap, &p);

    memset(&p, 0, sizeof p);
    p.type = IOTC_MQTT_SUBACK;
    p.u.suback.packet_id = 1;
    p.u.suback.codes = suback_codes;
    p.u.suback.count = 3;
    add(w, cap, &p);
}

static void add_session_end(workload *w, size_t *cap)
{
    iotc_mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = IOTC_MQTT_UNSUBSCRIBE;
    p.u.unsubscribe.packet_id = 2;
    p.u.unsubscribe.filters = unsub_filters;
    p.u.unsubscribe.count = 1;
    add(w, cap, &p);

    memset(&p, 0, sizeof p);
    p.type = IOTC_MQTT_UNSUBACK;
    p.u.suback.packet_id = 2;
    if (w->version == IOTC_MQTT_V5) {
        p.u.suback.codes = suback_codes + 2;
        p.u.suback.count = 1;
    }
    add(w, cap, &p);
    p = make_simple(IOTC_MQTT_DISCONNECT, 0);
    add(w, cap, &p);
}

/* Encodes w->packets into w->wire. */
static void encode_all(workload *w)
{
    size_t total = 0;
    for (size_t i = 0; i < w->npackets; i++) {
        size_t n;
        iotc_mqtt_error err;
        if (iotc_mqtt_encoded_size(&w->packets[i], w->version, &n, &err) != IOTC_MQTT_OK) {
            fprintf(stderr, "packet %zu (%s): %s\n", i, iotc_mqtt_type_name(w->packets[i].type),
                    err.what ? err.what : "?");
            die("a benchmark packet does not encode");
        }
        total += n;
    }
    w->wire = xmalloc(total);
    w->len = total;
    size_t off = 0;
    for (size_t i = 0; i < w->npackets; i++) {
        size_t n;
        if (iotc_mqtt_encode(&w->packets[i], w->version, w->wire + off, total - off, &n, NULL) != IOTC_MQTT_OK)
            die("encode failed");
        off += n;
    }
}

static workload publish_workload(const char *name, iotc_mqtt_version v, size_t payload_len)
{
    workload w;
    memset(&w, 0, sizeof w);
    w.name = name;
    w.version = v;
    w.payload_store = xmalloc(payload_len);
    for (size_t i = 0; i < payload_len; i++)
        w.payload_store[i] = (uint8_t)(i * 31 + 7);
    size_t cap = 0, bytes = 0;
    uint16_t id = 1;
    while (bytes < TARGET_BYTES) {
        iotc_mqtt_packet p = make_publish(v, w.payload_store, payload_len, id);
        id = (uint16_t)(id == 65535 ? 1 : id + 1);
        add(&w, &cap, &p);
        bytes += payload_len + 40;
    }
    encode_all(&w);
    return w;
}

static workload mixed_workload(const char *name, iotc_mqtt_version v)
{
    workload w;
    memset(&w, 0, sizeof w);
    w.name = name;
    w.version = v;
    w.payload_store = xmalloc(8192);
    for (size_t i = 0; i < 8192; i++)
        w.payload_store[i] = (uint8_t)(i * 13 + 1);
    size_t cap = 0, bytes = 0;
    uint32_t rng = 0x2545F491u;
    uint16_t id = 1;
    while (bytes < TARGET_BYTES) {
        add_session_start(&w, &cap);
        for (int i = 0; i < 500; i++) {
            /* Mostly small payloads, some large: 16 B .. 8 KB, log-uniform. */
            uint32_t r = rng_next(&rng);
            size_t len = (size_t)16 << (r % 10);
            len += (r >> 8) % len;
            if (len > 8192)
                len = 8192;
            iotc_mqtt_packet p = make_publish(v, w.payload_store, len, id);
            bool qos2 = (r >> 24) % 16 == 0;
            if (qos2)
                p.u.publish.qos = 2;
            add(&w, &cap, &p);
            if (qos2) {
                p = make_simple(IOTC_MQTT_PUBREC, id);
                add(&w, &cap, &p);
                p = make_simple(IOTC_MQTT_PUBREL, id);
                add(&w, &cap, &p);
                p = make_simple(IOTC_MQTT_PUBCOMP, id);
                add(&w, &cap, &p);
            } else {
                p = make_simple(IOTC_MQTT_PUBACK, id);
                add(&w, &cap, &p);
            }
            id = (uint16_t)(id == 65535 ? 1 : id + 1);
            if (i % 50 == 49) {
                p = make_simple(IOTC_MQTT_PINGREQ, 0);
                add(&w, &cap, &p);
                p = make_simple(IOTC_MQTT_PINGRESP, 0);
                add(&w, &cap, &p);
            }
            bytes += len + 50;
        }
        add_session_end(&w, &cap);
    }
    encode_all(&w);
    return w;
}

/* ---- the measured loops --------------------------------------------------- */

typedef size_t (*pass_fn)(const workload *w, void *scratch);

typedef struct {
    iotc_mqtt_reader reader;
    uint8_t *dst;
} scratch_t;

static size_t pass_reader(const workload *w, void *sp)
{
    scratch_t *s = sp;
    iotc_mqtt_reader *r = &s->reader;
    iotc_mqtt_reader_reset(r);
    size_t count = 0, acc = 0;
    for (size_t off = 0; off < w->len; off += READ_SIZE) {
        size_t n = w->len - off < READ_SIZE ? w->len - off : READ_SIZE;
        const uint8_t *in = w->wire + off;
        while (n > 0) {
            iotc_mqtt_packet p;
            size_t used;
            iotc_mqtt_status st = iotc_mqtt_reader_feed(r, in, n, &used, &p, NULL);
            in += used;
            n -= used;
            if (st == IOTC_MQTT_OK) {
                count++;
                acc += p.type == IOTC_MQTT_PUBLISH ? p.u.publish.payload.len : 1;
            } else if (st != IOTC_MQTT_NEED_MORE) {
                die("reader failed on the benchmark stream");
            }
        }
    }
    if (count != w->npackets)
        die("reader yielded the wrong number of packets");
    sink += acc;
    return count;
}

static size_t pass_decode(const workload *w, void *sp)
{
    (void)sp;
    size_t count = 0, acc = 0, off = 0;
    while (off < w->len) {
        iotc_mqtt_packet p;
        size_t used;
        if (iotc_mqtt_decode(w->wire + off, w->len - off, w->version, 0, &p, &used, NULL) != IOTC_MQTT_OK)
            die("decode failed on the benchmark stream");
        off += used;
        count++;
        acc += p.type == IOTC_MQTT_PUBLISH ? p.u.publish.payload.len : 1;
    }
    sink += acc;
    return count;
}

static size_t pass_encode(const workload *w, void *sp)
{
    scratch_t *s = sp;
    size_t off = 0;
    for (size_t i = 0; i < w->npackets; i++) {
        size_t n;
        if (iotc_mqtt_encode(&w->packets[i], w->version, s->dst + off, w->len - off, &n, NULL) != IOTC_MQTT_OK)
            die("encode failed");
        off += n;
    }
    sink += s->dst[off - 1];
    return w->npackets;
}

static size_t pass_memcpy_reads(const workload *w, void *sp)
{
    scratch_t *s = sp;
    for (size_t off = 0; off < w->len; off += READ_SIZE) {
        size_t n = w->len - off < READ_SIZE ? w->len - off : READ_SIZE;
        memcpy_fn(s->dst, w->wire + off, n);
        sink += s->dst[n - 1];
    }
    return w->npackets;
}

static size_t pass_memcpy_whole(const workload *w, void *sp)
{
    scratch_t *s = sp;
    memcpy_fn(s->dst, w->wire, w->len);
    sink += s->dst[w->len - 1];
    return w->npackets;
}

#define ROUNDS 5

/* Passes that take about `seconds`, from one timed pass. */
static size_t iterations(pass_fn f, const workload *w, void *scratch, double seconds)
{
    double t0 = now();
    f(w, scratch);
    double one = now() - t0;
    size_t iters = one > 0 ? (size_t)(seconds / one) : 1000;
    return iters < 1 ? 1 : iters;
}

/*
 * Seconds per pass of f and of its baseline.  The two are timed in turns, in
 * ROUNDS rounds, and the fastest round of each is kept: on a shared or
 * virtual machine, noise only ever slows a round down, and taking turns keeps
 * a slow spell from landing on one side of the ratio only.
 */
static void measure(pass_fn f, pass_fn baseline, const workload *w, void *scratch, double *t, double *tb)
{
    size_t n = iterations(f, w, scratch, case_seconds / ROUNDS);
    size_t nb = iterations(baseline, w, scratch, case_seconds / ROUNDS);
    *t = *tb = 1e30;
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = now();
        for (size_t i = 0; i < n; i++)
            f(w, scratch);
        double t1 = now();
        for (size_t i = 0; i < nb; i++)
            baseline(w, scratch);
        double t2 = now();
        if ((t1 - t0) / (double)n < *t)
            *t = (t1 - t0) / (double)n;
        if ((t2 - t1) / (double)nb < *tb)
            *tb = (t2 - t1) / (double)nb;
    }
}

static int misses;

static void report(const workload *w, const char *how, pass_fn f, pass_fn baseline, void *scratch, bool target)
{
    double t, tb;
    measure(f, baseline, w, scratch, &t, &tb);
    double mbs = (double)w->len / t / 1e6, mbs_b = (double)w->len / tb / 1e6;
    double ratio = mbs / mbs_b;
    printf("%-26s %-7s %10.0f %10.3f %12.0f %7.2f", w->name, how, mbs, (double)w->npackets / t / 1e6, mbs_b, ratio);
    if (target) {
        bool pass = ratio >= TARGET_RATIO;
        misses += !pass;
        printf("  %s (target >= %.2f)", pass ? "PASS" : "MISS", TARGET_RATIO);
    }
    printf("\n");
    fflush(stdout);
}

static void run(workload *w, bool target)
{
    scratch_t s;
    iotc_mqtt_reader_init(&s.reader, w->version, 0, NULL, 0);
    s.dst = xmalloc(w->len);
    report(w, "reader", pass_reader, pass_memcpy_reads, &s, target);
    report(w, "decode", pass_decode, pass_memcpy_whole, &s, target);
    report(w, "encode", pass_encode, pass_memcpy_whole, &s, false);
    iotc_mqtt_reader_free(&s.reader);
    free(s.dst);
    free(w->wire);
    free(w->packets);
    free(w->payload_store);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        case_seconds = atof(argv[1]);
        if (case_seconds <= 0)
            die("usage: bench_codec [seconds per case]");
    }
    printf("codec throughput, %.1f s per case, ~%u MB per pass, reader fed %u KB reads\n", case_seconds,
           TARGET_BYTES >> 20, READ_SIZE >> 10);
    printf("%-26s %-7s %10s %10s %12s %7s\n", "workload", "how", "MB/s", "Mpkt/s", "memcpy MB/s", "ratio");

    static const struct {
        const char *name;
        size_t payload;
        bool target;
    } pubs[] = {{"PUBLISH 64 B", 64, false}, {"PUBLISH 1 KB", 1024, true}, {"PUBLISH 64 KB", 65536, false}};
    for (size_t i = 0; i < sizeof pubs / sizeof pubs[0]; i++) {
        for (int v5 = 0; v5 < 2; v5++) {
            char name[64];
            snprintf(name, sizeof name, "%s %s", pubs[i].name, v5 ? "v5" : "v3.1.1");
            workload w = publish_workload(name, v5 ? IOTC_MQTT_V5 : IOTC_MQTT_V311, pubs[i].payload);
            w.name = name;
            run(&w, pubs[i].target);
        }
    }
    for (int v5 = 0; v5 < 2; v5++) {
        workload w = mixed_workload(v5 ? "mixed session v5" : "mixed session v3.1.1",
                                    v5 ? IOTC_MQTT_V5 : IOTC_MQTT_V311);
        run(&w, false);
    }
    printf("target (decode 1 KB PUBLISH at >= %.2f x memcpy): %s\n", TARGET_RATIO,
           misses ? "MISS" : "PASS");
    printf("sink %zu\n", (size_t)sink);
    return 0;
}

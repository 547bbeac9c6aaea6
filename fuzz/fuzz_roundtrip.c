/*
 * fuzz/fuzz_roundtrip.c: decode, encode, decode again.
 *
 * Every packet the decoder accepts must encode without error, in exactly the
 * size iotc_mqtt_encoded_size() announces; the encoding must decode to the
 * same fields (lists walked element by element; property order may differ, so
 * decoded structures are compared, not bytes); and encoding that second decode
 * must give the first encoding again, byte for byte (a fixed point).  The
 * encoder is run twice on each packet: from the raw lists the decoder left,
 * and from arrays copied out of them (when they fit the harness's fixed local
 * arrays); both must give the same bytes.
 *
 * Around that: a too-small output buffer gives IOTC_MQTT_ERR_BUFFER and the
 * size needed; the encoding decodes with a maximum packet size of exactly its
 * size and is refused as TOO_LARGE with one byte less; a truncated encoding is
 * NEED_MORE; decoded views point into the bytes decoded.
 *
 * The other direction too: the encoder "validates the packet as the decoder
 * would", so whatever it accepts must decode to the same fields.  The first
 * packets of an input are mutated in fixed ways (every reason code, QoS and
 * flag combinations, every bit of `present` with edge values, the other
 * protocol level, empty lists...); each mutant must either be refused by
 * iotc_mqtt_encoded_size() and iotc_mqtt_encode() alike with
 * IOTC_MQTT_ERR_INVALID_ARG, or encode to bytes that decode to it.  Trying all
 * of them on every input would make the harness some twenty times slower, so
 * an input tries one mutant in MUTANT_STRIDE, chosen by a hash of the packet's
 * bytes: deterministic for the input, and all of them across the corpus.
 *
 * Input layout (see fuzz/README.md):
 *   byte 0  flags: bit 0 protocol level (0: 3.1.1, 1: 5); bit 1 follow
 *           CONNECT (after a CONNECT, later packets are read at its level)
 *   rest    packets, decoded one after the other until the first that fails
 *
 * Output buffers are heap blocks of the exact size, so that an encoder or a
 * decoder stepping past them is caught by ASan.
 */
#include "fuzz_util.h"

#define MAX_PACKETS 64
#define MAX_LIST 64
/* Mutants are tried on this many packets of an input, and on properties only
 * of packets up to this size, to keep the harness fast. */
#define MUTATE_PACKETS 4
#define MUTATE_PROPS_MAX 512
#define MUTANT_STRIDE 16

typedef struct {
    unsigned salt; /* from the packet's bytes */
    unsigned n;    /* mutants seen so far */
} mutants;

/* Local storage for the array form of one packet's lists. */
typedef struct {
    iotc_mqtt_user_prop user[2][MAX_LIST];
    uint32_t sub_ids[2][MAX_LIST];
    iotc_mqtt_sub subs[MAX_LIST];
    iotc_mqtt_bytes filters[MAX_LIST];
} list_arrays;

static uint8_t *xmalloc(size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    FZ_EXPECT("malloc", p != NULL);
    return p;
}

/* Copies a decoded property block's lists into arrays; false if they do not fit. */
static bool props_to_arrays(iotc_mqtt_props *p, iotc_mqtt_user_prop *user, uint32_t *sub_ids)
{
    if (p->user_count > MAX_LIST || p->sub_id_count > MAX_LIST)
        return false;
    size_t pos = 0;
    for (size_t i = 0; i < p->user_count; i++)
        FZ_EXPECT("arrays", iotc_mqtt_user_prop_next(p, &pos, &user[i]));
    pos = 0;
    for (size_t i = 0; i < p->sub_id_count; i++)
        FZ_EXPECT("arrays", iotc_mqtt_sub_id_next(p, &pos, &sub_ids[i]));
    p->user = p->user_count ? user : NULL;
    p->sub_ids = p->sub_id_count ? sub_ids : NULL;
    /* The encoder must not need the raw block when it has the arrays. */
    p->raw.data = NULL;
    p->raw.len = 0;
    return true;
}

/* Turns a decoded packet's lists into arrays in `a`; false if one is too long. */
static bool packet_to_arrays(iotc_mqtt_packet *p, iotc_mqtt_version session, list_arrays *a)
{
    bool v5 = fz_packet_version(p, session) == IOTC_MQTT_V5;
    switch (p->type) {
    case IOTC_MQTT_CONNECT:
        if (!v5)
            return true;
        if (p->u.connect.will && !props_to_arrays(&p->u.connect.will_props, a->user[1], a->sub_ids[1]))
            return false;
        return props_to_arrays(&p->u.connect.props, a->user[0], a->sub_ids[0]);
    case IOTC_MQTT_SUBSCRIBE: {
        iotc_mqtt_subscribe *s = &p->u.subscribe;
        if (s->count > MAX_LIST || !s->count)
            return false;
        size_t pos = 0;
        for (size_t i = 0; i < s->count; i++)
            FZ_EXPECT("arrays", iotc_mqtt_sub_next(s, &pos, &a->subs[i]));
        s->subs = a->subs;
        s->raw.data = NULL;
        s->raw.len = 0;
        return !v5 || props_to_arrays(&s->props, a->user[0], a->sub_ids[0]);
    }
    case IOTC_MQTT_UNSUBSCRIBE: {
        iotc_mqtt_unsubscribe *u = &p->u.unsubscribe;
        if (u->count > MAX_LIST || !u->count)
            return false;
        size_t pos = 0;
        for (size_t i = 0; i < u->count; i++)
            FZ_EXPECT("arrays", iotc_mqtt_unsub_next(u, &pos, &a->filters[i]));
        u->filters = a->filters;
        u->raw.data = NULL;
        u->raw.len = 0;
        return !v5 || props_to_arrays(&u->props, a->user[0], a->sub_ids[0]);
    }
    case IOTC_MQTT_PINGREQ:
    case IOTC_MQTT_PINGRESP:
        return true;
    default: {
        /* p is ours to change (a copy of the decoded packet). */
        iotc_mqtt_props *props = (iotc_mqtt_props *)fz_packet_props(p);
        if (!v5 || !props)
            return true;
        return props_to_arrays(props, a->user[0], a->sub_ids[0]);
    }
    }
}

/* Encodes p into a fresh heap block of the announced size; returns it and its size. */
static uint8_t *encode_exact(const char *ctx, const iotc_mqtt_packet *p, iotc_mqtt_version session,
                             size_t *size)
{
    iotc_mqtt_error err;
    size_t need = (size_t)-1, written = (size_t)-1;
    iotc_mqtt_status st = iotc_mqtt_encoded_size(p, session, &need, &err);
    if (st != IOTC_MQTT_OK)
        fprintf(stderr, "%s: encoded_size: %s: %s (offset %zu)\n", ctx, iotc_mqtt_status_str(st),
                err.what ? err.what : "?", err.offset);
    FZ_EXPECT(ctx, st == IOTC_MQTT_OK);
    FZ_EXPECT(ctx, need >= 2 && need <= IOTC_MQTT_MAX_PACKET);
    uint8_t *out = xmalloc(need);
    st = iotc_mqtt_encode(p, session, out, need, &written, &err);
    if (st != IOTC_MQTT_OK)
        fprintf(stderr, "%s: encode: %s: %s\n", ctx, iotc_mqtt_status_str(st), err.what ? err.what : "?");
    FZ_EXPECT(ctx, st == IOTC_MQTT_OK);
    FZ_EXPECT(ctx, written == need);
    *size = need;
    return out;
}

/* ---- the encoder accepts only what the decoder accepts ------------------------ */

static void check_encoder_agrees(const char *ctx, const iotc_mqtt_packet *q, iotc_mqtt_version session);

/* Checks the mutant if it is this input's turn for it. */
static void try_mutant(mutants *m, const char *ctx, const iotc_mqtt_packet *q, iotc_mqtt_version session)
{
    if ((m->n++ + m->salt) % MUTANT_STRIDE == 0)
        check_encoder_agrees(ctx, q, session);
}

static void check_encoder_agrees(const char *ctx, const iotc_mqtt_packet *q, iotc_mqtt_version session)
{
    iotc_mqtt_error err;
    size_t need = (size_t)-1, written = (size_t)-1;
    memset(&err, 0, sizeof err);
    iotc_mqtt_status st = iotc_mqtt_encoded_size(q, session, &need, &err);
    if (st != IOTC_MQTT_OK) {
        FZ_EXPECT(ctx, st == IOTC_MQTT_ERR_INVALID_ARG);
        FZ_EXPECT(ctx, err.status == st && err.what != NULL);
        uint8_t *small = xmalloc(16);
        FZ_EXPECT(ctx, iotc_mqtt_encode(q, session, small, 16, &written, NULL) == st);
        free(small);
        return;
    }
    uint8_t *buf = xmalloc(need);
    st = iotc_mqtt_encode(q, session, buf, need, &written, &err);
    FZ_EXPECT(ctx, st == IOTC_MQTT_OK && written == need);
    iotc_mqtt_packet d;
    size_t used = (size_t)-1;
    memset(&d, 0, sizeof d);
    st = iotc_mqtt_decode(buf, need, session, 0, &d, &used, &err);
    if (st != IOTC_MQTT_OK)
        fprintf(stderr, "%s: the encoder accepted a %s the decoder refuses: %s: %s (offset %zu)\n", ctx,
                iotc_mqtt_type_name((unsigned)q->type), iotc_mqtt_status_str(st), err.what ? err.what : "?",
                err.offset);
    FZ_EXPECT(ctx, st == IOTC_MQTT_OK && used == need);
    fz_packet_eq(ctx, q, &d, session, false);
    free(buf);
}

static void set_scalars(iotc_mqtt_props *p, uint32_t v)
{
    uint8_t b = (uint8_t)v;
    uint16_t w = (uint16_t)v;
    p->payload_format_indicator = p->request_problem_information = p->request_response_information = b;
    p->maximum_qos = p->retain_available = p->wildcard_subscription_available = b;
    p->subscription_identifier_available = p->shared_subscription_available = b;
    p->server_keep_alive = p->receive_maximum = p->topic_alias_maximum = p->topic_alias = w;
    p->message_expiry_interval = p->session_expiry_interval = p->will_delay_interval = v;
    p->maximum_packet_size = v;
}

/* Every single bit of `present`, with the scalar fields at edge values. */
static void mutate_props(mutants *m, const iotc_mqtt_packet *p, iotc_mqtt_version session, iotc_mqtt_props *target)
{
    static const uint32_t values[] = {0, 1, 2, 0xFF, 0xFFFF, 0xFFFFFFFFu};
    iotc_mqtt_props saved = *target;
    for (unsigned bit = 0; bit < 64; bit++) {
        for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
            *target = saved;
            set_scalars(target, values[i]);
            target->present = saved.present | IOTC_PROP_BIT(bit);
            try_mutant(m, "mutant: property added", p, session);
        }
        *target = saved;
        target->present = saved.present & ~IOTC_PROP_BIT(bit);
        try_mutant(m, "mutant: property removed", p, session);
    }
    *target = saved;
}

static void mutate(mutants *m, const iotc_mqtt_packet *p1, iotc_mqtt_version session, size_t size)
{
    iotc_mqtt_version other = session == IOTC_MQTT_V5 ? IOTC_MQTT_V311 : IOTC_MQTT_V5;
    iotc_mqtt_packet q = *p1;
    bool v5 = fz_packet_version(p1, session) == IOTC_MQTT_V5;

    /* The other protocol level. */
    if (q.type == IOTC_MQTT_CONNECT) {
        q.u.connect.version = p1->u.connect.version == IOTC_MQTT_V5 ? IOTC_MQTT_V311 : IOTC_MQTT_V5;
        try_mutant(m, "mutant: other level", &q, session);
    } else {
        try_mutant(m, "mutant: other level", &q, other);
    }

    switch (p1->type) {
    case IOTC_MQTT_CONNECT: {
        for (unsigned bits = 0; bits < 64; bits++) {
            q = *p1;
            iotc_mqtt_connect *c = &q.u.connect;
            c->clean_start ^= (bits & 1) != 0;
            c->will ^= (bits & 2) != 0;
            c->will_retain ^= (bits & 4) != 0;
            c->has_username ^= (bits & 8) != 0;
            c->has_password ^= (bits & 16) != 0;
            if (bits & 32)
                c->client_id.len = 0;
            for (uint8_t wq = 0; wq < 4; wq++) {
                c->will_qos = wq;
                try_mutant(m, "mutant: CONNECT flags", &q, session);
            }
        }
        if (v5 && size <= MUTATE_PROPS_MAX) {
            q = *p1;
            mutate_props(m, &q, session, &q.u.connect.props);
            if (q.u.connect.will)
                mutate_props(m, &q, session, &q.u.connect.will_props);
        }
        break;
    }
    case IOTC_MQTT_CONNACK:
        for (unsigned rc = 0; rc < 256; rc++) {
            q = *p1;
            q.u.connack.reason = (uint8_t)rc;
            try_mutant(m, "mutant: CONNACK code", &q, session);
            q.u.connack.session_present = !q.u.connack.session_present;
            try_mutant(m, "mutant: CONNACK code", &q, session);
        }
        if (v5 && size <= MUTATE_PROPS_MAX) {
            q = *p1;
            mutate_props(m, &q, session, &q.u.connack.props);
        }
        break;
    case IOTC_MQTT_PUBLISH:
        for (unsigned bits = 0; bits < 64; bits++) {
            q = *p1;
            iotc_mqtt_publish *pb = &q.u.publish;
            pb->qos = (uint8_t)(bits & 3);
            pb->dup = (bits & 4) != 0;
            pb->retain = (bits & 8) != 0;
            if (bits & 16)
                pb->packet_id = 0;
            if (bits & 32)
                pb->topic.len = 0;
            try_mutant(m, "mutant: PUBLISH flags", &q, session);
        }
        if (v5 && size <= MUTATE_PROPS_MAX) {
            q = *p1;
            mutate_props(m, &q, session, &q.u.publish.props);
        }
        break;
    case IOTC_MQTT_PUBACK:
    case IOTC_MQTT_PUBREC:
    case IOTC_MQTT_PUBREL:
    case IOTC_MQTT_PUBCOMP:
        for (unsigned rc = 0; rc < 256; rc++) {
            q = *p1;
            q.u.ack.reason = (uint8_t)rc;
            try_mutant(m, "mutant: ack reason", &q, session);
        }
        q = *p1;
        q.u.ack.packet_id = 0;
        try_mutant(m, "mutant: ack packet id 0", &q, session);
        if (v5 && size <= MUTATE_PROPS_MAX) {
            q = *p1;
            mutate_props(m, &q, session, &q.u.ack.props);
        }
        break;
    case IOTC_MQTT_SUBSCRIBE: {
        const iotc_mqtt_subscribe *s = &p1->u.subscribe;
        if (s->count == 0 || s->count > MAX_LIST)
            break;
        iotc_mqtt_sub *subs = malloc(s->count * sizeof *subs);
        FZ_EXPECT("malloc", subs != NULL);
        size_t pos = 0;
        for (size_t i = 0; i < s->count; i++)
            FZ_EXPECT("mutant", iotc_mqtt_sub_next(s, &pos, &subs[i]));
        iotc_mqtt_sub first = subs[0];
        for (unsigned bits = 0; bits < 128; bits++) {
            q = *p1;
            q.u.subscribe.subs = subs;
            subs[0] = first;
            subs[0].qos = (uint8_t)(bits & 3);
            subs[0].retain_handling = (uint8_t)((bits >> 2) & 3);
            subs[0].no_local = (bits & 16) != 0;
            subs[0].retain_as_published = (bits & 32) != 0;
            if (bits & 64)
                subs[0].filter = iotc_mqtt_str("$share/g/a/+");
            try_mutant(m, "mutant: SUBSCRIBE options", &q, session);
        }
        q = *p1;
        q.u.subscribe.subs = subs;
        q.u.subscribe.count = 0;
        try_mutant(m, "mutant: SUBSCRIBE without filters", &q, session);
        free(subs);
        if (v5 && size <= MUTATE_PROPS_MAX) {
            q = *p1;
            mutate_props(m, &q, session, &q.u.subscribe.props);
        }
        break;
    }
    case IOTC_MQTT_SUBACK:
    case IOTC_MQTT_UNSUBACK: {
        size_t n = p1->u.suback.count;
        uint8_t *codes = xmalloc(n + 1);
        if (n)
            memcpy(codes, p1->u.suback.codes, n);
        for (unsigned rc = 0; rc < 256 && n; rc++) {
            q = *p1;
            codes[0] = (uint8_t)rc;
            q.u.suback.codes = codes;
            try_mutant(m, "mutant: SUBACK/UNSUBACK code", &q, session);
        }
        q = *p1;
        q.u.suback.count = 0;
        try_mutant(m, "mutant: SUBACK/UNSUBACK without codes", &q, session);
        q = *p1;
        codes[n] = 0;
        q.u.suback.codes = codes;
        q.u.suback.count = n + 1;
        try_mutant(m, "mutant: SUBACK/UNSUBACK with one more code", &q, session);
        free(codes);
        if (v5 && size <= MUTATE_PROPS_MAX) {
            q = *p1;
            mutate_props(m, &q, session, &q.u.suback.props);
        }
        break;
    }
    case IOTC_MQTT_UNSUBSCRIBE:
        q = *p1;
        q.u.unsubscribe.filters = NULL;
        q.u.unsubscribe.raw.len = 0;
        q.u.unsubscribe.count = 0;
        try_mutant(m, "mutant: UNSUBSCRIBE without filters", &q, session);
        if (v5 && size <= MUTATE_PROPS_MAX) {
            q = *p1;
            mutate_props(m, &q, session, &q.u.unsubscribe.props);
        }
        break;
    case IOTC_MQTT_DISCONNECT:
    case IOTC_MQTT_AUTH:
        for (unsigned rc = 0; rc < 256; rc++) {
            q = *p1;
            q.u.disconnect.reason = (uint8_t)rc;
            try_mutant(m, "mutant: DISCONNECT/AUTH reason", &q, session);
        }
        if (v5 && size <= MUTATE_PROPS_MAX) {
            q = *p1;
            mutate_props(m, &q, session, &q.u.disconnect.props);
        }
        break;
    default:
        break;
    }
}

/* ---- decode, encode, decode ------------------------------------------------- */

static void roundtrip(const iotc_mqtt_packet *p1, iotc_mqtt_version session, const uint8_t *orig,
                      size_t orig_len, bool try_mutants)
{
    fz_check_decoded("decoded", p1, session);
    fz_visit vis;
    fz_visit_init(&vis, "views of the first decode");
    fz_visit_bound(&vis, 0, orig, orig_len);
    fz_visit_bound(&vis, 1, orig, orig_len);
    fz_visit_packet(&vis, p1, session);

    /* Encode from the raw lists the decoder left. */
    size_t size1;
    uint8_t *buf1 = encode_exact("encode decoded packet", p1, session, &size1);

    /* One byte short: refused, with the size needed. */
    {
        uint8_t *shortbuf = xmalloc(size1 - 1);
        iotc_mqtt_error err;
        size_t w = (size_t)-1;
        iotc_mqtt_status st = iotc_mqtt_encode(p1, session, shortbuf, size1 - 1, &w, &err);
        FZ_EXPECT("encode into a short buffer", st == IOTC_MQTT_ERR_BUFFER);
        FZ_EXPECT("encode into a short buffer", w == size1);
        free(shortbuf);
    }

    /* The fixed header of the encoding describes it. */
    uint8_t type, flags;
    uint32_t rem;
    size_t hl;
    FZ_EXPECT("fixed header of the encoding",
              iotc_mqtt_fixed_header(buf1, size1, session, &type, &flags, &rem, &hl, NULL) == IOTC_MQTT_OK);
    FZ_EXPECT("fixed header of the encoding", type == (uint8_t)p1->type && hl + rem == size1);

    /* Decode the encoding: same fields. */
    iotc_mqtt_packet p2;
    iotc_mqtt_error err;
    size_t used = (size_t)-1;
    memset(&p2, 0, sizeof p2);
    iotc_mqtt_status st = iotc_mqtt_decode(buf1, size1, session, 0, &p2, &used, &err);
    if (st != IOTC_MQTT_OK)
        fprintf(stderr, "re-decode: %s: %s at offset %zu\n", iotc_mqtt_status_str(st),
                err.what ? err.what : "?", err.offset);
    FZ_EXPECT("decode of the encoding", st == IOTC_MQTT_OK && used == size1);
    fz_packet_eq("decode of the encoding", p1, &p2, session, false);
    fz_visit_init(&vis, "views of the second decode");
    fz_visit_bound(&vis, 0, buf1, size1);
    fz_visit_bound(&vis, 1, buf1, size1);
    fz_visit_packet(&vis, &p2, session);

    /* The maximum packet size counts the whole packet. */
    {
        iotc_mqtt_packet p;
        size_t u;
        FZ_EXPECT("max packet size = size",
                  iotc_mqtt_decode(buf1, size1, session, (uint32_t)size1, &p, &u, NULL) == IOTC_MQTT_OK);
        FZ_EXPECT("max packet size = size - 1", iotc_mqtt_decode(buf1, size1, session, (uint32_t)(size1 - 1),
                                                                 &p, &u, &err) == IOTC_MQTT_ERR_TOO_LARGE);
        FZ_EXPECT("max packet size = size - 1", err.status == IOTC_MQTT_ERR_TOO_LARGE);
    }

    /* Truncated: incomplete, never an error, never a read past the end. */
    {
        size_t cuts[3] = {1, hl, size1 - 1};
        for (size_t i = 0; i < 3; i++) {
            size_t k = cuts[i];
            if (k == 0 || k >= size1)
                continue;
            uint8_t *part = xmalloc(k);
            memcpy(part, buf1, k);
            iotc_mqtt_packet p;
            size_t u = (size_t)-1;
            st = iotc_mqtt_decode(part, k, session, 0, &p, &u, &err);
            FZ_EXPECT("truncated encoding", st == IOTC_MQTT_NEED_MORE);
            FZ_EXPECT("truncated encoding", u == (k >= hl ? size1 : 0));
            free(part);
        }
    }

    /* Fixed point: encoding the re-decoded packet gives the same bytes. */
    size_t size2;
    uint8_t *buf2 = encode_exact("encode re-decoded packet", &p2, session, &size2);
    FZ_EXPECT("fixed point", size2 == size1 && memcmp(buf1, buf2, size1) == 0);
    free(buf2);

    /* Encode from arrays: same bytes as from the raw lists. */
    {
        list_arrays *arrays = malloc(sizeof *arrays);
        FZ_EXPECT("malloc", arrays != NULL);
        iotc_mqtt_packet p3 = *p1;
        if (packet_to_arrays(&p3, session, arrays)) {
            fz_packet_eq("packet built from arrays", p1, &p3, session, false);
            size_t size3;
            uint8_t *buf3 = encode_exact("encode from arrays", &p3, session, &size3);
            FZ_EXPECT("encode from arrays", size3 == size1 && memcmp(buf1, buf3, size1) == 0);
            free(buf3);
        }
        free(arrays);
    }
    free(buf1);

    if (try_mutants) {
        mutants m = {0, 0};
        for (size_t i = 0; i < orig_len; i++)
            m.salt = m.salt * 31u + orig[i];
        mutate(&m, p1, session, orig_len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    iotc_mqtt_version version = (data[0] & 1) ? IOTC_MQTT_V5 : IOTC_MQTT_V311;
    bool follow_connect = (data[0] & 2) != 0;
    const uint8_t *in = data + 1;
    size_t len = size - 1, pos = 0;

    for (int n = 0; n < MAX_PACKETS && pos < len; n++) {
        iotc_mqtt_packet p;
        iotc_mqtt_error err;
        size_t used = (size_t)-1;
        memset(&p, 0, sizeof p);
        memset(&err, 0, sizeof err);
        iotc_mqtt_status st = iotc_mqtt_decode(in + pos, len - pos, version, 0, &p, &used, &err);
        if (st == IOTC_MQTT_NEED_MORE) {
            FZ_EXPECT("incomplete", used == 0 || used > len - pos);
            break;
        }
        if (st != IOTC_MQTT_OK) {
            fz_check_error("decode error", st, &err, len - pos);
            break;
        }
        FZ_EXPECT("decode", used >= 2 && used <= len - pos);
        roundtrip(&p, version, in + pos, used, n < MUTATE_PACKETS);
        pos += used;
        if (follow_connect && p.type == IOTC_MQTT_CONNECT)
            version = p.u.connect.version;
    }
    return 0;
}

/*
 * engine.c: the broker's connection state machine and routing.  The tags in
 * brackets ([AWS-...]) name the documented behaviours of
 * ../shared/reference/aws-broker.md that a piece of code implements.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iotc/mqtt.h"
#include "iotc/topic.h"
#include "sim_engine.h"
#include "sim_lifecycle.h"
#include "sim_provision.h"
#include "sim_map.h"
#include "sim_msg.h"
#include "sim_policy.h"
#include "sim_session.h"

enum { C_AWAIT_CONNECT, C_LIVE };

typedef struct sim_conn {
    sim_conn_id id;
    int state;
    iotc_mqtt_reader rd;
    iotc_mqtt_version version;
    sim_session *s;
    uint16_t keepalive;          /* after clamping */
    uint64_t opened_at, last_rx;
    sim_msg *will;
    char *principal, *thing, *ip, *transport;
    bool denied;                 /* refuse its CONNECT as not authorized */
    uint16_t window;             /* min(our max inflight, the client's Receive Maximum) */
    uint32_t client_max_packet;  /* MQTT 5 Maximum Packet Size of the client; 0: none */
    char **alias;                /* inbound topic aliases 1..topic_alias_max */
    double pub_tokens, byte_tokens;
    size_t pkt_bytes; /* bytes of the packet being read so far, for the log */
    uint64_t tokens_at;
    bool blackholed;
    uint64_t version_number;
    uint64_t replay_next;
    uint64_t hold_until;         /* SUBACK delay */
} sim_conn;

typedef struct {
    uint64_t version_number;
    uint64_t last_connect;
} client_rec;

struct sim_engine {
    sim_config cfg;
    sim_io io;
    void *ctx;
    sim_map conns;    /* id -> sim_conn */
    sim_map sessions; /* client id -> sim_session */
    sim_map clients;  /* client id -> client_rec */
    sim_map retained; /* topic -> sim_msg */
    sim_conn_id next_id;
    uint64_t next_serial;
    uint64_t refuse_until;
    uint32_t dup_next;
    uint8_t *out;
    size_t outcap;
    uint64_t now;
    /* The earliest deadline anything set since the last tick (never later
     * than the true next one): the edge need not tick on every input. */
    uint64_t hint;
    uint64_t gc_at;   /* next sweep of forgotten client ids */
    sim_conn_id *ids; /* tick's scratch: reused, not allocated per call */
    size_t ids_cap;
    sim_shadow_store *shadows; /* NULL: no shadow service */
};

static void want(sim_engine *e, uint64_t t)
{
    if (t < e->hint)
        e->hint = t;
}

void sim_config_init(sim_config *c, sim_profile profile)
{
    memset(c, 0, sizeof *c);
    c->profile = profile;
    c->max_payload = 128 * 1024;
    /* AWS: the MQTT 5 Maximum Packet Size it advertises "cannot exceed 128 KB"
     * (aws-broker.md §2), so the packet, not only the payload, is capped. */
    c->max_packet = 128 * 1024;
    c->max_topic_bytes = 256;
    c->max_topic_slashes = 7;
    c->max_client_id = 128;
    c->max_filters_per_subscribe = 8;
    c->max_subscriptions = 50;
    c->over_subscriptions = SIM_OVER_SUBS_DISCONNECT;
    c->publish_rate = 100;
    c->throughput = 512 * 1024;
    c->connect_interval_ms = 1000;
    c->max_inflight = 100;
    c->keepalive_min = 30;
    c->keepalive_max = 1200;
    c->session_expiry_s = 3600;
    c->replay_rate = 10;
    c->max_queued = 1000;
    c->qos1_retry_ms = 10000;
    c->qos1_retry_max_ms = 3600 * 1000;
    c->connect_timeout_ms = 10000;
    c->topic_alias_max = 8;
    c->retain = profile == SIM_PROFILE_CURRENT ? SIM_RETAIN_STORE : SIM_RETAIN_DISCONNECT;
    c->takeover_connack_both = profile == SIM_PROFILE_CLASSIC;
    c->lifecycle_events = true;
    c->shadow_service = true;
    sim_shadow_config_init(&c->shadow);
    c->reorder_hold_ms = 100;
}

/* ---- event log ---------------------------------------------------------- */

static cJSON *rec(sim_engine *e, sim_conn *c, const char *kind)
{
    if (!e->io.log)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "t", (double)e->now);
    if (e->io.wall_ms)
        cJSON_AddNumberToObject(o, "wall", (double)e->io.wall_ms(e->ctx));
    cJSON_AddStringToObject(o, "kind", kind);
    if (c) {
        cJSON_AddNumberToObject(o, "conn", (double)c->id);
        if (c->s)
            cJSON_AddStringToObject(o, "client", c->s->client_id);
    }
    return o;
}

static void emit(sim_engine *e, cJSON *o)
{
    if (!o)
        return;
    char *s = cJSON_PrintUnformatted(o);
    if (s)
        e->io.log(e->ctx, s);
    free(s);
    cJSON_Delete(o);
}

static void add_bytes(cJSON *o, const char *k, iotc_mqtt_bytes b)
{
    char *s = malloc(b.len + 1);
    if (!s)
        return;
    if (b.len)
        memcpy(s, b.data, b.len);
    s[b.len] = 0;
    cJSON_AddStringToObject(o, k, s);
    free(s);
}

/* A broker decision: `what` is a stable word scenarios match on. */
static void decide(sim_engine *e, sim_conn *c, const char *what, const char *detail)
{
    cJSON *o = rec(e, c, "decision");
    if (!o)
        return;
    cJSON_AddStringToObject(o, "what", what);
    if (detail)
        cJSON_AddStringToObject(o, "detail", detail);
    emit(e, o);
}

/* Asks the IoT policies whether `c` may do `a` on `name[0..len)`; the
 * decision and the statement that made it go to the event log.  Allowed when
 * the engine has no policy store or the connection no principal. */
static bool authorize(sim_engine *e, sim_conn *c, const char *client_id, sim_iot_action a, const char *name, size_t len)
{
    if (!e->cfg.policies || !c->principal)
        return true;
    sim_policy_decision d;
    char arn[600];
    sim_policy_authorize(e->cfg.policies, c->principal, client_id, c->thing, a, name, len, &d, arn, sizeof arn);
    cJSON *o = rec(e, c, "decision");
    if (o) {
        cJSON_AddStringToObject(o, "what", d.allowed ? "authorized" : "not_authorized");
        if (!c->s && client_id)
            cJSON_AddStringToObject(o, "client", client_id);
        cJSON_AddStringToObject(o, "action", sim_iot_action_name(a));
        cJSON_AddStringToObject(o, "resource", arn);
        cJSON_AddStringToObject(o, "effect", d.explicit_deny ? "Deny" : d.allowed ? "Allow" : "default deny");
        if (d.policy) {
            cJSON_AddStringToObject(o, "policy", d.policy);
            cJSON_AddNumberToObject(o, "statement", d.statement);
            if (d.sid)
                cJSON_AddStringToObject(o, "sid", d.sid);
        }
        emit(e, o);
    }
    return d.allowed;
}

static void log_packet(sim_engine *e, sim_conn *c, const char *dir, const iotc_mqtt_packet *p, size_t size)
{
    cJSON *o = rec(e, c, dir);
    if (!o)
        return;
    cJSON_AddStringToObject(o, "type", iotc_mqtt_type_name(p->type));
    cJSON_AddNumberToObject(o, "size", (double)size);
    switch (p->type) {
    case IOTC_MQTT_CONNECT:
        add_bytes(o, "client_id", p->u.connect.client_id);
        cJSON_AddNumberToObject(o, "version", p->u.connect.version);
        cJSON_AddBoolToObject(o, "clean", p->u.connect.clean_start);
        cJSON_AddNumberToObject(o, "keepalive", p->u.connect.keep_alive);
        cJSON_AddBoolToObject(o, "will", p->u.connect.will);
        break;
    case IOTC_MQTT_CONNACK:
        cJSON_AddBoolToObject(o, "session_present", p->u.connack.session_present);
        cJSON_AddNumberToObject(o, "reason", p->u.connack.reason);
        break;
    case IOTC_MQTT_PUBLISH:
        add_bytes(o, "topic", p->u.publish.topic);
        cJSON_AddNumberToObject(o, "qos", p->u.publish.qos);
        if (p->u.publish.qos)
            cJSON_AddNumberToObject(o, "pid", p->u.publish.packet_id);
        cJSON_AddBoolToObject(o, "dup", p->u.publish.dup);
        cJSON_AddBoolToObject(o, "retain", p->u.publish.retain);
        cJSON_AddNumberToObject(o, "payload_size", (double)p->u.publish.payload.len);
        break;
    case IOTC_MQTT_PUBACK:
    case IOTC_MQTT_PUBREC:
    case IOTC_MQTT_PUBREL:
    case IOTC_MQTT_PUBCOMP:
        cJSON_AddNumberToObject(o, "pid", p->u.ack.packet_id);
        cJSON_AddNumberToObject(o, "reason", p->u.ack.reason);
        break;
    case IOTC_MQTT_SUBSCRIBE: {
        cJSON_AddNumberToObject(o, "pid", p->u.subscribe.packet_id);
        cJSON *a = cJSON_AddArrayToObject(o, "filters");
        size_t pos = 0;
        iotc_mqtt_sub s;
        while (a && iotc_mqtt_sub_next(&p->u.subscribe, &pos, &s)) {
            cJSON *f = cJSON_CreateObject();
            add_bytes(f, "filter", s.filter);
            cJSON_AddNumberToObject(f, "qos", s.qos);
            cJSON_AddItemToArray(a, f);
        }
        break;
    }
    case IOTC_MQTT_UNSUBSCRIBE: {
        cJSON_AddNumberToObject(o, "pid", p->u.unsubscribe.packet_id);
        cJSON *a = cJSON_AddArrayToObject(o, "filters");
        size_t pos = 0;
        iotc_mqtt_bytes f;
        while (a && iotc_mqtt_unsub_next(&p->u.unsubscribe, &pos, &f)) {
            cJSON *s = cJSON_CreateObject();
            add_bytes(s, "filter", f);
            cJSON_AddItemToArray(a, s);
        }
        break;
    }
    case IOTC_MQTT_SUBACK:
    case IOTC_MQTT_UNSUBACK: {
        cJSON_AddNumberToObject(o, "pid", p->u.suback.packet_id);
        cJSON *a = cJSON_AddArrayToObject(o, "codes");
        for (size_t i = 0; a && i < p->u.suback.count; i++)
            cJSON_AddItemToArray(a, cJSON_CreateNumber(p->u.suback.codes[i]));
        break;
    }
    case IOTC_MQTT_DISCONNECT:
    case IOTC_MQTT_AUTH: cJSON_AddNumberToObject(o, "reason", p->u.disconnect.reason); break;
    default: break;
    }
    emit(e, o);
}

/* ---- plumbing ----------------------------------------------------------- */

static sim_conn *find_conn(const sim_engine *e, sim_conn_id id)
{
    return sim_map_get(&e->conns, &id, sizeof id);
}

static void uuid(sim_engine *e, char out[37])
{
    uint64_t a = e->io.random(e->ctx), b = e->io.random(e->ctx);
    /* Version 4 layout, so tools that parse UUIDs accept it. */
    snprintf(out, 37, "%08x-%04x-4%03x-%04x-%012llx", (unsigned)(a >> 32), (unsigned)((a >> 16) & 0xFFFF),
             (unsigned)(a & 0xFFF), (unsigned)(0x8000 | ((b >> 48) & 0x3FFF)),
             (unsigned long long)(b & 0xFFFFFFFFFFFFull));
}

static bool send_pkt(sim_engine *e, sim_conn *c, const iotc_mqtt_packet *p)
{
    if (c->blackholed) {
        decide(e, c, "blackholed", iotc_mqtt_type_name(p->type));
        return false;
    }
    size_t n;
    iotc_mqtt_error err;
    iotc_mqtt_status st = iotc_mqtt_encode(p, c->version, e->out, e->outcap, &n, &err);
    if (st == IOTC_MQTT_ERR_BUFFER) {
        uint8_t *nb = realloc(e->out, n);
        if (!nb) {
            decide(e, c, "out_of_memory", "encode buffer");
            return false;
        }
        e->out = nb;
        e->outcap = n;
        st = iotc_mqtt_encode(p, c->version, e->out, e->outcap, &n, &err);
    }
    if (st != IOTC_MQTT_OK) {
        decide(e, c, "encode_failed", err.what);
        return false;
    }
    if (p->type == IOTC_MQTT_PUBLISH && c->client_max_packet && n > c->client_max_packet) {
        /* MQTT 5 §3.1.2.11.4: the server must not send it; it is dropped. */
        decide(e, c, "dropped_over_client_max_packet", NULL);
        return false;
    }
    log_packet(e, c, "out", p, n);
    e->io.send(e->ctx, c->id, e->out, n);
    return true;
}

static void send_disconnect(sim_engine *e, sim_conn *c, uint8_t reason)
{
    iotc_mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = IOTC_MQTT_DISCONNECT;
    p.u.disconnect.reason = reason;
    send_pkt(e, c, &p);
}

static sim_lc_common lc_for(sim_engine *e, const sim_conn *c, const sim_session *s)
{
    sim_lc_common lc;
    memset(&lc, 0, sizeof lc);
    lc.client_id = s->client_id;
    lc.thing_name = c->thing;
    lc.timestamp_ms = e->io.wall_ms ? e->io.wall_ms(e->ctx) : e->now;
    lc.session_identifier = s->sid;
    lc.principal = c->principal;
    lc.ip = c->ip;
    lc.version_number = c->version_number;
    return lc;
}

static void route(sim_engine *e, sim_msg *m);

/* Publishes a lifecycle event [AWS-LIFECYCLE]. */
static void lifecycle(sim_engine *e, const char *family, const char *event, const char *client_id, char *payload)
{
    if (!payload)
        return;
    if (!e->cfg.lifecycle_events || !sim_lc_eligible(client_id)) {
        free(payload);
        return;
    }
    char topic[512];
    int n = snprintf(topic, sizeof topic, "$aws/events/%s/%s/%s", family, event, client_id);
    if (n > 0 && (size_t)n < sizeof topic) {
        iotc_mqtt_bytes t = {(const uint8_t *)topic, (size_t)n};
        iotc_mqtt_bytes pl = {(const uint8_t *)payload, strlen(payload)};
        sim_msg *m = sim_msg_new(t, pl, NULL, 1, false, 0, e->now);
        if (m) {
            route(e, m);
            sim_msg_unref(m);
        }
    }
    free(payload);
}

/* ---- delivery ------------------------------------------------------------ */

static void publish_packet(sim_engine *e, sim_conn *c, const sim_item *it, uint16_t pid, iotc_mqtt_packet *p);

/* MQTT 5 §3.1.2.11.4: a message larger than the client's Maximum Packet Size
 * is not sent to it (nor held in its window): it is dropped for that client. */
static bool too_big_for(sim_engine *e, sim_conn *c, const sim_item *it)
{
    if (!c->client_max_packet)
        return false;
    iotc_mqtt_packet p;
    size_t n;
    publish_packet(e, c, it, it->qos ? 1 : 0, &p);
    if (iotc_mqtt_encoded_size(&p, c->version, &n, NULL) != IOTC_MQTT_OK || n > c->client_max_packet) {
        decide(e, c, "dropped_over_client_max_packet", NULL);
        return true;
    }
    return false;
}

static void publish_packet(sim_engine *e, sim_conn *c, const sim_item *it, uint16_t pid, iotc_mqtt_packet *p)
{
    memset(p, 0, sizeof *p);
    p->type = IOTC_MQTT_PUBLISH;
    p->u.publish.qos = it->qos;
    p->u.publish.retain = it->retain;
    p->u.publish.topic = it->m->topic;
    p->u.publish.payload = it->m->payload;
    p->u.publish.packet_id = pid;
    if (c->version == IOTC_MQTT_V5)
        sim_msg_out_props(it->m, e->now, &p->u.publish.props);
}

static bool send_publish(sim_engine *e, sim_conn *c, const sim_item *it, uint16_t pid)
{
    iotc_mqtt_packet p;
    publish_packet(e, c, it, pid, &p);
    return send_pkt(e, c, &p);
}

/* [AWS-POLICY-RECEIVE] iot:Receive is checked on every delivery: a denied
 * message is not delivered (no error: aws-broker.md §6.6), and a Deny cuts
 * off a subscription that already exists. */
static bool may_receive(sim_engine *e, sim_conn *c, const sim_item *it)
{
    return authorize(e, c, c->s->client_id, SIM_IOT_RECEIVE, (const char *)it->m->topic.data, it->m->topic.len);
}

static void send_qos0(sim_engine *e, sim_conn *c, const sim_item *it)
{
    if (too_big_for(e, c, it) || !may_receive(e, c, it))
        return;
    send_publish(e, c, it, 0);
    /* [AWS-MQTT-QOS0-DUP] QoS 0 is "zero or more times". */
    bool dup = false;
    if (e->dup_next) {
        e->dup_next--;
        dup = true;
    } else if (e->cfg.qos0_dup_permille && e->io.random(e->ctx) % 1000 < e->cfg.qos0_dup_permille) {
        dup = true;
    }
    if (dup) {
        decide(e, c, "qos0_duplicate", NULL);
        send_publish(e, c, it, 0);
    }
}

static bool window_free(const sim_conn *c)
{
    return c->s->nfl < c->window;
}

/* Sends one QoS 1 item into the window; takes over its reference. */
static void send_qos1(sim_engine *e, sim_conn *c, sim_item it)
{
    if (too_big_for(e, c, &it) || !may_receive(e, c, &it)) {
        sim_msg_unref(it.m);
        return;
    }
    uint16_t pid = sim_session_next_pid(c->s);
    if (e->cfg.qos1_retry_ms)
        want(e, e->now + e->cfg.qos1_retry_ms);
    if (!sim_session_add_flight(c->s, pid, it, e->now)) {
        decide(e, c, "out_of_memory", "inflight");
        sim_msg_unref(it.m);
        return;
    }
    send_publish(e, c, &it, pid);
}

/* Sends what waits, as far as the window and the SUBACK delay allow. */
static void pump(sim_engine *e, sim_conn *c)
{
    sim_session *s = c->s;
    if (c->hold_until > e->now)
        return;
    while (s->pending.len) {
        sim_item it = s->pending.v[s->pending.head];
        if (it.qos == 1 && !window_free(c))
            break;
        sim_fifo_pop(&s->pending, &it);
        if (sim_msg_expired(it.m, e->now)) {
            decide(e, c, "message_expired", NULL);
            sim_msg_unref(it.m);
        } else if (it.qos == 0) {
            send_qos0(e, c, &it);
            sim_msg_unref(it.m);
        } else {
            send_qos1(e, c, it);
        }
    }
}

/* Sends now (the window and hold were checked); takes over the reference. */
static void send_item(sim_engine *e, sim_conn *c, sim_item it)
{
    if (it.qos == 0) {
        send_qos0(e, c, &it);
        sim_msg_unref(it.m);
    } else {
        send_qos1(e, c, it);
    }
}

/* The held-back delivery goes out (after the one that overtook it). */
static void flush_stash(sim_engine *e, sim_session *s)
{
    sim_item st = s->stash;
    if (!st.m)
        return;
    s->stash.m = NULL;
    if (st.qos == 1 && !window_free(s->conn)) {
        if (!sim_fifo_push_front(&s->pending, st))
            sim_msg_unref(st.m);
        return;
    }
    send_item(e, s->conn, st);
}

/* Takes a new reference to m. */
static void deliver(sim_engine *e, sim_session *s, sim_msg *m, uint8_t qos, bool retain)
{
    sim_item it = {sim_msg_ref(m), qos, retain};
    sim_conn *c = s->conn;
    if (!c) {
        /* [AWS-SESSION-STORE] only QoS 1 for QoS 1 subscriptions is kept. */
        if (qos == 1 && s->expiry_s > 0) {
            if (s->stored.len >= e->cfg.max_queued) {
                decide(e, NULL, "queue_full_dropped", s->client_id);
            } else if (sim_fifo_push(&s->stored, it)) {
                return;
            }
        }
        sim_msg_unref(it.m);
        return;
    }
    if (!s->pending.len && c->hold_until <= e->now && (qos == 0 || window_free(c))) {
        /* [AWS-ORDER] "the broker does not guarantee the order": held back,
         * this delivery is overtaken by the next one. */
        if (!s->stash.m && e->cfg.reorder_permille && e->io.random(e->ctx) % 1000 < e->cfg.reorder_permille) {
            s->stash = it;
            s->stash_at = e->now;
            want(e, e->now + e->cfg.reorder_hold_ms);
            decide(e, c, "reordered", "held back to be overtaken");
            return;
        }
        send_item(e, c, it);
        flush_stash(e, s);
        return;
    }
    if (!sim_fifo_push(&s->pending, it)) {
        decide(e, c, "out_of_memory", "pending");
        sim_msg_unref(it.m);
    }
}

/* [AWS-WILDCARD-PARENT] a/# does not match a (unless hash_matches_parent). */
static unsigned match_flags(const sim_engine *e)
{
    return e->cfg.hash_matches_parent ? IOTC_MATCH_MQTT : IOTC_MATCH_AWS;
}

/* Fans a message out to every session with a matching subscription: once per
 * session, at the highest QoS its matching subscriptions grant. */
static void route(sim_engine *e, sim_msg *m)
{
    size_t i;
    for (sim_map_entry *me = sim_map_first(&e->sessions, &i); me; me = sim_map_next(&e->sessions, &i, me)) {
        sim_session *s = me->value;
        int best = -1;
        bool rap = false;
        for (size_t k = 0; k < s->nsubs; k++) {
            const sim_sub *sub = &s->subs[k];
            if (!iotc_topic_match(sub->filter, sub->len, (const char *)m->topic.data, m->topic.len, match_flags(e)))
                continue;
            if (sub->no_local && m->publisher == s->serial)
                continue;
            if (sub->qos > best)
                best = sub->qos;
            rap |= sub->retain_as_published;
        }
        if (best < 0)
            continue;
        /* [AWS-MQTT-QOS-MIN] delivery QoS = min(publish, subscription);
         * [AWS-RETAIN-LIVE-FLAG] live deliveries carry RETAIN = 0. */
        deliver(e, s, m, (uint8_t)(m->qos < best ? m->qos : best), rap && m->retain);
    }
}

/* ---- sessions and connections ------------------------------------------- */

static void delete_session(sim_engine *e, sim_session *s)
{
    sim_map_del(&e->sessions, s->client_id, strlen(s->client_id));
    sim_session_free(s);
}

static void free_conn(sim_engine *e, sim_conn *c)
{
    sim_map_del(&e->conns, &c->id, sizeof c->id);
    iotc_mqtt_reader_free(&c->rd);
    sim_msg_unref(c->will);
    if (c->alias) {
        for (unsigned i = 0; i <= e->cfg.topic_alias_max; i++)
            free(c->alias[i]);
        free(c->alias);
    }
    free(c->principal);
    free(c->thing);
    free(c->ip);
    free(c->transport);
    free(c);
}

static void store_retained(sim_engine *e, sim_msg *m);

/* The end of a connection, however it came: Will, lifecycle event, session. */
static void finish(sim_engine *e, sim_conn *c, const char *lc_reason, bool client_initiated, bool will)
{
    if (c->state == C_LIVE) {
        sim_session *s = c->s;
        char *client_id = strdup(s->client_id);
        s->conn = NULL;
        /* [AWS-WILL] on every disconnect but the client's own DISCONNECT. */
        if (will && c->will) {
            decide(e, c, "will_published", NULL);
            sim_msg_restart_expiry(c->will, e->now);
            if (c->will->retain && e->cfg.retain == SIM_RETAIN_STORE)
                store_retained(e, c->will);
            route(e, c->will);
        }
        if (client_id) {
            sim_lc_common lc = lc_for(e, c, s);
            lc.ip = NULL;
            lifecycle(e, "presence", "disconnected", client_id, sim_lc_disconnected(&lc, client_initiated, lc_reason));
        }
        free(client_id);
        if (s->expiry_s > 0) {
            sim_session_requeue(s);
            s->expires_at = e->now + (uint64_t)s->expiry_s * 1000u;
            want(e, s->expires_at);
        } else {
            delete_session(e, s);
        }
        c->s = NULL;
    }
    free_conn(e, c);
}

/* Server-side close.  v5_reason: the MQTT 5 DISCONNECT to send first (0: none). */
static void close_conn(sim_engine *e, sim_conn *c, uint8_t v5_reason, const char *lc_reason, const char *detail)
{
    if (c->state == C_LIVE && c->version == IOTC_MQTT_V5 && v5_reason)
        send_disconnect(e, c, v5_reason);
    cJSON *o = rec(e, c, "decision");
    if (o) {
        cJSON_AddStringToObject(o, "what", "close");
        cJSON_AddStringToObject(o, "reason", lc_reason);
        if (detail)
            cJSON_AddStringToObject(o, "detail", detail);
        emit(e, o);
    }
    e->io.close(e->ctx, c->id);
    finish(e, c, lc_reason, false, true);
}

static void store_retained(sim_engine *e, sim_msg *m)
{
    /* [AWS-RETAIN-STORE] one per topic; an empty payload deletes it. */
    sim_msg *old = sim_map_del(&e->retained, m->topic.data, m->topic.len);
    sim_msg_unref(old);
    if (m->payload.len && sim_map_put(&e->retained, m->topic.data, m->topic.len, m))
        sim_msg_ref(m);
}

sim_engine *sim_engine_new(const sim_config *cfg, const sim_io *io, void *ctx)
{
    if (!cfg || !io || !io->send || !io->close || !io->random)
        return NULL;
    sim_engine *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->cfg = *cfg;
    e->io = *io;
    e->ctx = ctx;
    sim_map_init(&e->conns);
    sim_map_init(&e->sessions);
    sim_map_init(&e->clients);
    sim_map_init(&e->retained);
    e->next_id = 1;
    e->next_serial = 1;
    e->hint = UINT64_MAX;
    if (cfg->shadow_service && !(e->shadows = sim_shadow_store_new(&cfg->shadow))) {
        free(e);
        return NULL;
    }
    return e;
}

void sim_engine_free(sim_engine *e)
{
    if (!e)
        return;
    size_t i;
    sim_map_entry *me;
    /* Connections first: they point at sessions. */
    while ((me = sim_map_first(&e->conns, &i)) != NULL) {
        sim_conn *c = me->value;
        if (c->s)
            c->s->conn = NULL;
        c->state = C_AWAIT_CONNECT;
        free_conn(e, c);
    }
    while ((me = sim_map_first(&e->sessions, &i)) != NULL)
        delete_session(e, me->value);
    for (me = sim_map_first(&e->clients, &i); me; me = sim_map_next(&e->clients, &i, me))
        free(me->value);
    for (me = sim_map_first(&e->retained, &i); me; me = sim_map_next(&e->retained, &i, me))
        sim_msg_unref(me->value);
    sim_map_free(&e->conns);
    sim_map_free(&e->sessions);
    sim_map_free(&e->clients);
    sim_map_free(&e->retained);
    free(e->out);
    free(e->ids);
    sim_shadow_store_free(e->shadows);
    free(e);
}

const sim_config *sim_engine_config(const sim_engine *e)
{
    return &e->cfg;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

sim_conn_id sim_engine_open(sim_engine *e, const sim_conn_info *info, uint64_t now_ms)
{
    e->now = now_ms;
    sim_conn *c = calloc(1, sizeof *c);
    if (!c)
        return 0;
    c->id = e->next_id++;
    c->state = C_AWAIT_CONNECT;
    c->opened_at = c->last_rx = now_ms;
    if (e->cfg.connect_timeout_ms)
        want(e, now_ms + e->cfg.connect_timeout_ms);
    c->version = IOTC_MQTT_V311;
    /* Until the version is known, and for 3.1.1, the limit is the payload
     * limit plus the most a PUBLISH header can add; MQTT 5 clients get the
     * advertised Maximum Packet Size once their CONNECT is read. */
    uint64_t v3max = (uint64_t)e->cfg.max_payload + 65535u + 16u;
    iotc_mqtt_reader_init(&c->rd, IOTC_MQTT_V311, v3max > IOTC_MQTT_MAX_PACKET ? IOTC_MQTT_MAX_PACKET : (uint32_t)v3max,
                          NULL, 0);
    if (info) {
        c->principal = dup_or_null(info->principal);
        c->thing = dup_or_null(info->thing_name);
        c->ip = dup_or_null(info->remote_ip);
        c->transport = dup_or_null(info->transport);
        c->denied = info->denied;
    }
    if (!sim_map_put(&e->conns, &c->id, sizeof c->id, c)) {
        iotc_mqtt_reader_free(&c->rd);
        free(c->principal);
        free(c->thing);
        free(c->ip);
        free(c->transport);
        free(c);
        return 0;
    }
    cJSON *o = rec(e, c, "decision");
    if (o) {
        cJSON_AddStringToObject(o, "what", "open");
        if (c->transport)
            cJSON_AddStringToObject(o, "transport", c->transport);
        if (c->principal)
            cJSON_AddStringToObject(o, "principal", c->principal);
        emit(e, o);
    }
    return c->id;
}

/* ---- CONNECT ------------------------------------------------------------- */

static void send_connack(sim_engine *e, sim_conn *c, bool present, uint8_t reason, const iotc_mqtt_props *props)
{
    iotc_mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = IOTC_MQTT_CONNACK;
    p.u.connack.session_present = present;
    p.u.connack.reason = reason;
    if (props && c->version == IOTC_MQTT_V5)
        p.u.connack.props = *props;
    send_pkt(e, c, &p);
}

/* Refuses a CONNECT: v3 return code or v5 reason (-1: close without CONNACK). */
static bool refuse(sim_engine *e, sim_conn *c, int v3_code, int v5_code, const char *why)
{
    int code = c->version == IOTC_MQTT_V5 ? v5_code : v3_code;
    if (code >= 0)
        send_connack(e, c, false, (uint8_t)code, NULL);
    decide(e, c, "connect_refused", why);
    e->io.close(e->ctx, c->id);
    finish(e, c, "CLIENT_ERROR", false, false);
    return false;
}

static bool handle_connect(sim_engine *e, sim_conn *c, const iotc_mqtt_connect *p)
{
    c->version = p->version;
    iotc_mqtt_reader_set_version(&c->rd, p->version);
    bool v5 = p->version == IOTC_MQTT_V5;
    if (v5 && e->cfg.max_packet)
        c->rd.max_packet_size = e->cfg.max_packet; /* what CONNACK advertises */
    char client_id[300];
    bool assigned = false;

    if (e->refuse_until > e->now)
        return refuse(e, c, IOTC_V3_CONNACK_SERVER_UNAVAILABLE, IOTC_RC_SERVER_UNAVAILABLE, "fault: refusing connects");
    /* [AWS-MQTT-QOS2-WILL] v3: close without CONNACK; v5: 0x9B. */
    if (p->will && p->will_qos == 2)
        return refuse(e, c, -1, IOTC_RC_QOS_NOT_SUPPORTED, "Will QoS 2");
    /* [AWS-RETAIN] classic: a Will with Will Retain is refused too. */
    if (p->will && p->will_retain && e->cfg.retain == SIM_RETAIN_DISCONNECT)
        return refuse(e, c, -1, IOTC_RC_RETAIN_NOT_SUPPORTED, "Will Retain (retain not supported in this profile)");
    /* [AWS-CLIENTID-LIMIT] */
    if (p->client_id.len > e->cfg.max_client_id)
        return refuse(e, c, IOTC_V3_CONNACK_ID_REJECTED, IOTC_RC_CLIENT_IDENTIFIER_NOT_VALID, "client id too long");
    /* [AWS-CLIENTID-GEN] $GEN/ ids are the broker's: refused from a client,
     * assigned for an empty MQTT 5 client id below. */
    if (p->client_id.len >= 5 && memcmp(p->client_id.data, "$GEN/", 5) == 0)
        return refuse(e, c, IOTC_V3_CONNACK_ID_REJECTED, IOTC_RC_CLIENT_IDENTIFIER_NOT_VALID,
                      "client id with the reserved $GEN/ prefix");
    if (memchr(p->client_id.data ? (const void *)p->client_id.data : "", 0, p->client_id.len))
        return refuse(e, c, IOTC_V3_CONNACK_ID_REJECTED, IOTC_RC_CLIENT_IDENTIFIER_NOT_VALID, "NUL in client id");
    if (p->client_id.len == 0) {
        if (!v5 && !p->clean_start)
            return refuse(e, c, IOTC_V3_CONNACK_ID_REJECTED, IOTC_RC_CLIENT_IDENTIFIER_NOT_VALID,
                          "empty client id with a persistent session");
        char u[37];
        uuid(e, u);
        snprintf(client_id, sizeof client_id, "$GEN/%s", u);
        assigned = true;
    } else {
        memcpy(client_id, p->client_id.data, p->client_id.len);
        client_id[p->client_id.len] = 0;
    }
    size_t idlen = strlen(client_id);

    /* [AWS-POLICY-CONNECT] iot:Connect on client/<id>, and iot:Publish on the
     * Will topic (iot:RetainPublish too for a retained Will): denied, the
     * CONNECT is refused as not authorized, as for an inactive certificate. */
    const char *why = c->denied ? "principal not authorized to connect" : NULL;
    if (!why && !authorize(e, c, client_id, SIM_IOT_CONNECT, client_id, idlen))
        why = "iot:Connect not authorized";
    if (!why && p->will &&
        (!authorize(e, c, client_id, SIM_IOT_PUBLISH, (const char *)p->will_topic.data, p->will_topic.len) ||
         (p->will_retain &&
          !authorize(e, c, client_id, SIM_IOT_RETAIN_PUBLISH, (const char *)p->will_topic.data, p->will_topic.len))))
        why = "iot:Publish on the Will topic not authorized";
    /* [AWS-LIFECYCLE-FAILED] a principal that may not connect: refused, and
     * $aws/events/presence/connect_failed/<id> says why. */
    if (why) {
        sim_lc_common lc;
        memset(&lc, 0, sizeof lc);
        lc.client_id = client_id;
        lc.thing_name = c->thing;
        lc.timestamp_ms = e->io.wall_ms ? e->io.wall_ms(e->ctx) : e->now;
        lc.principal = c->principal;
        lc.ip = c->ip;
        char sid[37];
        uuid(e, sid);
        lc.session_identifier = sid;
        char *ev = sim_lc_connect_failed(&lc, "AUTHORIZATION_FAILED");
        /* MQTT 3.1.1: closed with no CONNACK (aws-broker.md §6.6); MQTT 5: 0x87. */
        refuse(e, c, -1, IOTC_RC_NOT_AUTHORIZED, why);
        lifecycle(e, "presence", "connect_failed", client_id, ev);
        return false;
    }

    /* [AWS-CONNECT-RATE] one CONNECT per client id per interval. */
    client_rec *cr = sim_map_get(&e->clients, client_id, idlen);
    if (cr && e->cfg.connect_interval_ms && e->now < cr->last_connect + e->cfg.connect_interval_ms) {
        cr->last_connect = e->now;
        return refuse(e, c, -1, IOTC_RC_QUOTA_EXCEEDED, "connect rate per client id exceeded (THROTTLED)");
    }
    if (!cr) {
        cr = calloc(1, sizeof *cr);
        if (!cr || !sim_map_put(&e->clients, client_id, idlen, cr)) {
            free(cr);
            return refuse(e, c, IOTC_V3_CONNACK_SERVER_UNAVAILABLE, IOTC_RC_SERVER_UNAVAILABLE, "out of memory");
        }
    }
    cr->last_connect = e->now;
    want(e, e->gc_at); /* the sweep that will forget it one day */

    /* [AWS-TAKEOVER] the older connection is closed; the classic profile
     * first sends it a CONNACK too. */
    sim_session *s = sim_map_get(&e->sessions, client_id, idlen);
    if (s && s->conn) {
        sim_conn *old = s->conn;
        if (e->cfg.takeover_connack_both)
            send_connack(e, old, false, 0, NULL);
        close_conn(e, old, IOTC_RC_SESSION_TAKEN_OVER, "DUPLICATE_CLIENTID", "client id taken over");
        s = sim_map_get(&e->sessions, client_id, idlen);
    }

    /* Session: [AWS-SESSION-VERSION] sessions do not cross versions. */
    uint32_t expiry = 0;
    bool expiry_clamped = false;
    if (v5) {
        if (p->props.present & IOTC_PROP_BIT(IOTC_PROP_SESSION_EXPIRY_INTERVAL))
            expiry = p->props.session_expiry_interval;
        if (expiry > e->cfg.session_expiry_s) {
            expiry = e->cfg.session_expiry_s;
            expiry_clamped = true;
        }
    } else if (!p->clean_start) {
        expiry = e->cfg.session_expiry_s;
    }
    /* [AWS-SESSION-PRESENT] 1 only when a stored session is resumed. */
    bool present = false;
    if (s && (p->clean_start || s->version != p->version)) {
        decide(e, c, "session_discarded", p->clean_start ? "clean start" : "other protocol version");
        delete_session(e, s);
        s = NULL;
    }
    if (s) {
        present = true;
    } else {
        char sid[37];
        uuid(e, sid);
        s = sim_session_new(client_id, p->version, e->next_serial++, sid);
        if (!s || !sim_map_put(&e->sessions, client_id, idlen, s)) {
            sim_session_free(s);
            return refuse(e, c, IOTC_V3_CONNACK_SERVER_UNAVAILABLE, IOTC_RC_SERVER_UNAVAILABLE, "out of memory");
        }
    }
    s->expiry_s = expiry;
    s->expires_at = 0;

    /* [AWS-KEEPALIVE] 0 means the maximum; clamped to min..max. */
    uint16_t ka = p->keep_alive;
    if (ka == 0 || ka > e->cfg.keepalive_max)
        ka = e->cfg.keepalive_max;
    else if (ka < e->cfg.keepalive_min)
        ka = e->cfg.keepalive_min;
    c->keepalive = ka;

    c->window = (uint16_t)(e->cfg.max_inflight > 65535 ? 65535 : e->cfg.max_inflight);
    if (v5 && (p->props.present & IOTC_PROP_BIT(IOTC_PROP_RECEIVE_MAXIMUM)) && p->props.receive_maximum < c->window)
        c->window = p->props.receive_maximum;
    if (v5 && (p->props.present & IOTC_PROP_BIT(IOTC_PROP_MAXIMUM_PACKET_SIZE)))
        c->client_max_packet = p->props.maximum_packet_size;

    if (p->will) {
        iotc_mqtt_props wp = p->will_props;
        c->will = sim_msg_new(p->will_topic, p->will_payload, v5 ? &wp : NULL, p->will_qos, p->will_retain, s->serial,
                              e->now);
    }

    s->conn = c;
    c->s = s;
    c->state = C_LIVE;
    c->version_number = ++cr->version_number;
    c->replay_next = e->now;
    want(e, e->now + (uint64_t)ka * 1500u);
    if (s->stored.len)
        want(e, e->now);

    iotc_mqtt_props ap;
    memset(&ap, 0, sizeof ap);
    if (v5) {
        /* [AWS-MQTT5-CONNACK] what IoT Core advertises (aws-broker.md §3.2). */
        ap.present = IOTC_PROP_BIT(IOTC_PROP_MAXIMUM_QOS) | IOTC_PROP_BIT(IOTC_PROP_RETAIN_AVAILABLE) |
                     IOTC_PROP_BIT(IOTC_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE) |
                     IOTC_PROP_BIT(IOTC_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE) |
                     IOTC_PROP_BIT(IOTC_PROP_SHARED_SUBSCRIPTION_AVAILABLE) |
                     IOTC_PROP_BIT(IOTC_PROP_TOPIC_ALIAS_MAXIMUM) | IOTC_PROP_BIT(IOTC_PROP_MAXIMUM_PACKET_SIZE) |
                     IOTC_PROP_BIT(IOTC_PROP_RECEIVE_MAXIMUM);
        ap.maximum_qos = 1;
        ap.retain_available = e->cfg.retain == SIM_RETAIN_STORE;
        ap.wildcard_subscription_available = 1;
        ap.subscription_identifier_available = 0;
        ap.shared_subscription_available = 0; /* not simulated yet: refused with 0x9E */
        ap.topic_alias_maximum = e->cfg.topic_alias_max;
        ap.maximum_packet_size = e->cfg.max_packet;
        ap.receive_maximum = (uint16_t)(e->cfg.max_inflight ? (e->cfg.max_inflight > 65535 ? 65535 : e->cfg.max_inflight) : 1);
        if (expiry_clamped) {
            ap.present |= IOTC_PROP_BIT(IOTC_PROP_SESSION_EXPIRY_INTERVAL);
            ap.session_expiry_interval = expiry;
        }
        if (ka != p->keep_alive) {
            ap.present |= IOTC_PROP_BIT(IOTC_PROP_SERVER_KEEP_ALIVE);
            ap.server_keep_alive = ka;
        }
        if (assigned) {
            ap.present |= IOTC_PROP_BIT(IOTC_PROP_ASSIGNED_CLIENT_IDENTIFIER);
            ap.assigned_client_identifier = iotc_mqtt_str(s->client_id);
        }
        if (e->cfg.topic_alias_max) {
            c->alias = calloc((size_t)e->cfg.topic_alias_max + 1, sizeof *c->alias);
            if (!c->alias)
                ap.topic_alias_maximum = 0;
        }
    }
    send_connack(e, c, present, 0, &ap);
    sim_lc_common lc = lc_for(e, c, s);
    lifecycle(e, "presence", "connected", s->client_id, sim_lc_connected(&lc));
    return true;
}

/* ---- PUBLISH ------------------------------------------------------------- */

typedef enum { TOPIC_NORMAL, TOPIC_INGEST, TOPIC_FORBIDDEN } topic_kind;

/* [AWS-RESERVED-TOPICS] which reserved topics a client may publish to. */
static topic_kind publish_kind(const char *t, size_t len)
{
    if (len == 0 || t[0] != '$')
        return TOPIC_NORMAL;
    if (len > 11 && strncmp(t, "$aws/rules/", 11) == 0)
        return TOPIC_INGEST;
    static const char *const ok[] = {"$aws/things/", "$aws/certificates/", "$aws/provisioning-templates/",
                                     "$aws/device_location/", "$aws/commands/"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (len > strlen(ok[i]) && strncmp(t, ok[i], strlen(ok[i])) == 0)
            return TOPIC_NORMAL;
    return TOPIC_FORBIDDEN;
}

static void puback(sim_engine *e, sim_conn *c, uint16_t pid, uint8_t reason)
{
    iotc_mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = IOTC_MQTT_PUBACK;
    p.u.ack.packet_id = pid;
    p.u.ack.reason = c->version == IOTC_MQTT_V5 ? reason : 0;
    send_pkt(e, c, &p);
}

static void refill(sim_engine *e, sim_conn *c)
{
    if (c->tokens_at == 0) {
        c->pub_tokens = e->cfg.publish_rate;
        c->byte_tokens = e->cfg.throughput;
        c->tokens_at = e->now ? e->now : 1;
        return;
    }
    double dt = (double)(e->now - c->tokens_at) / 1000.0;
    c->tokens_at = e->now ? e->now : 1;
    c->pub_tokens += dt * e->cfg.publish_rate;
    if (c->pub_tokens > e->cfg.publish_rate)
        c->pub_tokens = e->cfg.publish_rate;
    c->byte_tokens += dt * e->cfg.throughput;
    if (c->byte_tokens > e->cfg.throughput)
        c->byte_tokens = e->cfg.throughput;
}

/* ---- Device Shadow service ------------------------------------------------ */

/* [AWS-SHADOW-BROADCAST] A response of the shadow service: a broker publish
 * at QoS 1 (delivered at each subscription's QoS), routed like any message,
 * so that every subscriber gets it, not only the requester
 * (aws-services.md §1.1). */
static void shadow_emit(void *ctx, const char *topic, const char *payload, size_t len)
{
    sim_engine *e = ctx;
    iotc_mqtt_bytes t = {(const uint8_t *)topic, strlen(topic)};
    iotc_mqtt_bytes pl = {(const uint8_t *)payload, len};
    sim_msg *m = sim_msg_new(t, pl, NULL, 1, false, 0, e->now);
    if (!m) {
        decide(e, NULL, "out_of_memory", "shadow response");
        return;
    }
    route(e, m);
    sim_msg_unref(m);
}

/* A PUBLISH that was let through (authorized, within the limits) and is a
 * request to the shadow service: answered after the request itself was
 * routed and acknowledged.  The decision (op, thing, shadow, code, message)
 * goes to the event log. */
static void shadow_request(sim_engine *e, sim_conn *c, const char *topic, size_t len, iotc_mqtt_bytes payload)
{
    sim_shadow_req req;
    if (!e->shadows || !sim_shadow_parse_topic(topic, len, &req))
        return;
    uint64_t now_s = (e->io.wall_ms ? e->io.wall_ms(e->ctx) : e->now) / 1000;
    char why[160] = "";
    int code = sim_shadow_handle(e->shadows, &req, payload.data, payload.len, now_s, shadow_emit, e, why, sizeof why);
    cJSON *o = rec(e, c, "decision");
    if (o) {
        static const char *const OP[] = {"get", "update", "delete"};
        cJSON_AddStringToObject(o, "what", "shadow");
        cJSON_AddStringToObject(o, "op", OP[req.op]);
        cJSON_AddStringToObject(o, "thing", req.thing);
        if (req.name[0])
            cJSON_AddStringToObject(o, "shadow", req.name);
        else
            cJSON_AddNullToObject(o, "shadow");
        cJSON_AddNumberToObject(o, "code", code);
        cJSON_AddStringToObject(o, "message", why);
        emit(e, o);
    }
    if (code == 200 && req.op != SIM_SHADOW_GET && e->io.shadows_changed)
        e->io.shadows_changed(e->ctx);
}

/* ---- fleet provisioning ---------------------------------------------------- */

static void provision_emit(void *ctx, const char *topic, const uint8_t *payload, size_t len)
{
    shadow_emit(ctx, topic, (const char *)payload, len);
}

/* [AWS-PROVISION-FLOW] A request to the fleet provisioning API
 * (aws-services.md §2), answered like a shadow request: after the request's
 * own routing and PUBACK, with broker publishes every subscriber of the
 * response topic gets.  The requester's certificate is the claim. */
static void provision_request(sim_engine *e, sim_conn *c, const char *topic, size_t len, iotc_mqtt_bytes payload)
{
    sim_prov_req req;
    if (!e->cfg.provisioning || !sim_provision_parse_topic(topic, len, &req))
        return;
    char why[300] = "";
    int code = sim_provision_handle(e->cfg.provisioning, &req, c->principal, c->s ? c->s->client_id : NULL,
                                    payload.data, payload.len, e->now / 1000, provision_emit, e, why, sizeof why);
    uint64_t nx = sim_provision_next_expiry(e->cfg.provisioning);
    if (nx != UINT64_MAX)
        want(e, nx * 1000);
    cJSON *o = rec(e, c, "decision");
    if (o) {
        cJSON_AddStringToObject(o, "what", "provisioning");
        cJSON_AddStringToObject(o, "op", sim_prov_op_name(req.op));
        if (req.template_name[0])
            cJSON_AddStringToObject(o, "template", req.template_name);
        cJSON_AddStringToObject(o, "format", req.cbor ? "cbor" : "json");
        cJSON_AddNumberToObject(o, "code", code);
        cJSON_AddStringToObject(o, "message", why);
        emit(e, o);
    }
}

static bool handle_publish(sim_engine *e, sim_conn *c, iotc_mqtt_publish *p)
{
    bool v5 = c->version == IOTC_MQTT_V5;
    /* [AWS-MQTT-QOS2-PUB] v3: dropped silently; v5: DISCONNECT 0x9B. */
    if (p->qos == 2) {
        if (v5) {
            close_conn(e, c, IOTC_RC_QOS_NOT_SUPPORTED, "CLIENT_ERROR", "PUBLISH QoS 2");
            return false;
        }
        decide(e, c, "qos2_publish_dropped", NULL);
        return true;
    }
    /* [AWS-PAYLOAD-LIMIT] */
    if (p->payload.len > e->cfg.max_payload) {
        close_conn(e, c, IOTC_RC_PACKET_TOO_LARGE, "CLIENT_ERROR", "payload over the limit");
        return false;
    }
    /* [AWS-MQTT5-TOPIC-ALIAS] MQTT 5 topic aliases (inbound only; the broker never sends one). */
    if (v5 && (p->props.present & IOTC_PROP_BIT(IOTC_PROP_TOPIC_ALIAS))) {
        uint16_t a = p->props.topic_alias;
        if (!c->alias || a > e->cfg.topic_alias_max) {
            close_conn(e, c, IOTC_RC_TOPIC_ALIAS_INVALID, "CLIENT_ERROR", "Topic Alias over the maximum");
            return false;
        }
        if (p->topic.len == 0) {
            if (!c->alias[a]) {
                close_conn(e, c, IOTC_RC_PROTOCOL_ERROR, "CLIENT_ERROR", "unknown Topic Alias");
                return false;
            }
            p->topic = iotc_mqtt_str(c->alias[a]);
        } else {
            char *t = malloc(p->topic.len + 1);
            if (t) {
                memcpy(t, p->topic.data, p->topic.len);
                t[p->topic.len] = 0;
                free(c->alias[a]);
                c->alias[a] = t;
            }
        }
    }
    const char *topic = (const char *)p->topic.data;
    /* [AWS-TOPIC-LIMITS] 256 bytes, 7 slashes, $aws/rules/<r>/ exempt. */
    iotc_aws_topic_limits lim = {e->cfg.max_topic_bytes, e->cfg.max_topic_slashes};
    if (iotc_aws_topic_limits_check(topic, p->topic.len, false, &lim) != IOTC_TOPIC_OK) {
        if (v5 && p->qos == 1) {
            puback(e, c, p->packet_id, IOTC_RC_TOPIC_NAME_INVALID);
            decide(e, c, "publish_refused", "topic over the AWS IoT limits");
            return true;
        }
        close_conn(e, c, IOTC_RC_TOPIC_NAME_INVALID, "CLIENT_ERROR", "topic over the AWS IoT limits");
        return false;
    }
    topic_kind kind = publish_kind(topic, p->topic.len);
    if (kind == TOPIC_FORBIDDEN || (p->retain && p->topic.len && topic[0] == '$')) {
        if (v5) {
            if (p->qos == 1)
                puback(e, c, p->packet_id, IOTC_RC_NOT_AUTHORIZED);
            decide(e, c, "publish_refused", "reserved topic");
            return true;
        }
        close_conn(e, c, 0, "AUTH_ERROR", "publish to a reserved topic");
        return false;
    }
    /* [AWS-POLICY-PUBLISH] iot:Publish on topic/<topic> (and iot:RetainPublish
     * with RETAIN): v3 closes the connection; v5 answers a QoS 1 PUBLISH with
     * PUBACK 0x87 and drops a QoS 0 one, the connection stays (§3.7, §6.6). */
    if (!authorize(e, c, c->s->client_id, SIM_IOT_PUBLISH, topic, p->topic.len) ||
        (p->retain && !authorize(e, c, c->s->client_id, SIM_IOT_RETAIN_PUBLISH, topic, p->topic.len))) {
        if (v5) {
            if (p->qos == 1)
                puback(e, c, p->packet_id, IOTC_RC_NOT_AUTHORIZED);
            decide(e, c, "publish_refused", "not authorized");
            return true;
        }
        close_conn(e, c, 0, "AUTH_ERROR", "PUBLISH not authorized");
        return false;
    }
    /* [AWS-RETAIN] classic: a retain request disconnects. */
    if (p->retain && e->cfg.retain == SIM_RETAIN_DISCONNECT) {
        close_conn(e, c, IOTC_RC_RETAIN_NOT_SUPPORTED, "CLIENT_ERROR", "retain not supported in this profile");
        return false;
    }
    /* [AWS-PUBLISH-RATE] over 100/s per connection: discarded. */
    refill(e, c);
    if (e->cfg.publish_rate) {
        if (c->pub_tokens < 1.0) {
            decide(e, c, "publish_rate_discarded", NULL);
            if (v5 && p->qos == 1)
                puback(e, c, p->packet_id, IOTC_RC_QUOTA_EXCEEDED);
            return true;
        }
        c->pub_tokens -= 1.0;
    }
    if (kind == TOPIC_INGEST) {
        decide(e, c, "rules_ingest", topic);
    } else {
        iotc_mqtt_props props = p->props;
        if (v5 && (props.present & IOTC_PROP_BIT(IOTC_PROP_MESSAGE_EXPIRY_INTERVAL))) {
            /* [AWS-MQTT5-EXPIRY] 1..604800 s, clamped. */
            if (props.message_expiry_interval < 1)
                props.message_expiry_interval = 1;
            if (props.message_expiry_interval > 604800)
                props.message_expiry_interval = 604800;
        }
        sim_msg *m = sim_msg_new(p->topic, p->payload, v5 ? &props : NULL, p->qos, p->retain, c->s->serial, e->now);
        if (!m) {
            decide(e, c, "out_of_memory", "message");
            return true; /* no PUBACK: the client will resend */
        }
        if (p->retain)
            store_retained(e, m);
        route(e, m);
        sim_msg_unref(m);
    }
    if (p->qos == 1)
        puback(e, c, p->packet_id, 0);
    if (kind == TOPIC_NORMAL) {
        shadow_request(e, c, topic, p->topic.len, p->payload);
        provision_request(e, c, topic, p->topic.len, p->payload);
    }
    return true;
}

/* ---- SUBSCRIBE / UNSUBSCRIBE --------------------------------------------- */

/* [AWS-RESERVED-TOPICS] which reserved filters a client may subscribe to. */
static bool subscribe_allowed(const char *f, size_t len)
{
    if (len == 0 || f[0] != '$')
        return true;
    if (len >= 11 && strncmp(f, "$aws/rules/", 11) == 0)
        return false;
    return len > 5 && strncmp(f, "$aws/", 5) == 0;
}

static bool is_wild(const char *f, size_t len)
{
    return memchr(f, '+', len) || memchr(f, '#', len);
}

/* What one filter of a SUBSCRIBE came to. */
typedef struct {
    uint8_t code;
    bool added;     /* a new subscription, not a replacement */
    size_t at;      /* its index in the session, when granted */
} sub_result;

/* Applies one filter; false if the connection had to be closed. */
static bool subscribe_one(sim_engine *e, sim_conn *c, const iotc_mqtt_sub *sub, sub_result *r)
{
    bool v5 = c->version == IOTC_MQTT_V5;
    sim_session *s = c->s;
    const char *f = (const char *)sub->filter.data;
    size_t len = sub->filter.len;
    iotc_aws_topic_limits lim = {e->cfg.max_topic_bytes, e->cfg.max_topic_slashes};
    r->code = v5 ? IOTC_RC_UNSPECIFIED_ERROR : IOTC_V3_SUBACK_FAILURE;
    r->at = SIZE_MAX;
    if (iotc_topic_split_share(f, len, NULL, NULL, NULL, NULL)) {
        r->code = v5 ? IOTC_RC_SHARED_SUBSCRIPTIONS_NOT_SUPPORTED : IOTC_V3_SUBACK_FAILURE;
        decide(e, c, "shared_subscription_refused", "not simulated yet");
        return true;
    }
    /* [AWS-TOPIC-LIMITS] the same limits for filters. */
    if (iotc_aws_topic_limits_check(f, len, true, &lim) != IOTC_TOPIC_OK) {
        if (!v5) {
            close_conn(e, c, 0, "CLIENT_ERROR", "filter over the AWS IoT limits");
            return false;
        }
        r->code = IOTC_RC_TOPIC_FILTER_INVALID;
        return true;
    }
    if (!subscribe_allowed(f, len)) {
        if (!v5) {
            close_conn(e, c, 0, "AUTH_ERROR", "subscribe to a reserved topic");
            return false;
        }
        r->code = IOTC_RC_NOT_AUTHORIZED;
        return true;
    }
    /* [AWS-POLICY-SUBSCRIBE] MQTT 5: SUBACK 0x87 for that filter, the others
     * and the connection go on (v3 was checked for every filter first). */
    if (v5 && !authorize(e, c, s->client_id, SIM_IOT_SUBSCRIBE, f, len)) {
        r->code = IOTC_RC_NOT_AUTHORIZED;
        return true;
    }
    bool exists = false;
    for (size_t k = 0; k < s->nsubs && !exists; k++)
        exists = s->subs[k].len == len && memcmp(s->subs[k].filter, f, len) == 0;
    if (!exists && s->nsubs >= e->cfg.max_subscriptions) {
        /* [AWS-SUB-PER-CONN] */
        if (e->cfg.over_subscriptions == SIM_OVER_SUBS_DISCONNECT) {
            close_conn(e, c, IOTC_RC_QUOTA_EXCEEDED, "CLIENT_ERROR", "subscriptions per connection exceeded");
            return false;
        }
        r->code = v5 ? IOTC_RC_QUOTA_EXCEEDED : IOTC_V3_SUBACK_FAILURE;
        return true;
    }
    /* MQTT 5 lets a server grant less than asked: QoS 2 becomes 1. */
    sim_sub opts = {NULL, 0, sub->qos > 1 ? 1 : sub->qos, sub->no_local, sub->retain_as_published,
                    sub->retain_handling};
    if (sim_session_subscribe(s, f, len, &opts, &r->added, &r->at))
        r->code = opts.qos;
    return true;
}

static bool handle_subscribe(sim_engine *e, sim_conn *c, const iotc_mqtt_subscribe *p)
{
    bool v5 = c->version == IOTC_MQTT_V5;
    sim_session *s = c->s;
    /* [AWS-SUB-PER-PACKET] more than 8 filters: dropped, no SUBACK. */
    if (p->count > e->cfg.max_filters_per_subscribe) {
        close_conn(e, c, IOTC_RC_QUOTA_EXCEEDED, "CLIENT_ERROR", "too many filters in one SUBSCRIBE");
        return false;
    }
    /* [AWS-MQTT5-SUBID] */
    if (v5 && p->props.sub_id_count) {
        close_conn(e, c, IOTC_RC_SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED, "CLIENT_ERROR", "Subscription Identifier");
        return false;
    }
    size_t pos = 0;
    iotc_mqtt_sub sub;
    if (!v5) {
        /* [AWS-MQTT-QOS2-SUB] v3 SUBSCRIBE with a QoS 2 filter: no SUBACK. */
        while (iotc_mqtt_sub_next(p, &pos, &sub)) {
            if (sub.qos == 2) {
                if (e->cfg.v3_qos2_subscribe_close) {
                    close_conn(e, c, 0, "CLIENT_ERROR", "SUBSCRIBE with QoS 2");
                    return false;
                }
                decide(e, c, "qos2_subscribe_ignored", "no SUBACK");
                return true;
            }
        }
        /* [AWS-POLICY-SUBSCRIBE] iot:Subscribe on topicfilter/<filter as
         * sent>: MQTT 3.1.1 closes the connection with no SUBACK.  Every
         * filter is checked before any is applied, so a refused SUBSCRIBE
         * leaves nothing behind in a persistent session. */
        pos = 0;
        while (iotc_mqtt_sub_next(p, &pos, &sub)) {
            if (!authorize(e, c, s->client_id, SIM_IOT_SUBSCRIBE, (const char *)sub.filter.data, sub.filter.len)) {
                close_conn(e, c, 0, "AUTH_ERROR", "SUBSCRIBE not authorized");
                return false;
            }
        }
    }
    size_t n = p->count;
    sub_result *res = calloc(n, sizeof *res);
    uint8_t *codes = calloc(n, 1);
    const char **granted = calloc(n, sizeof *granted);
    if (!res || !codes || !granted) {
        free(res);
        free(codes);
        free(granted);
        close_conn(e, c, IOTC_RC_UNSPECIFIED_ERROR, "SERVER_ERROR", "out of memory");
        return false;
    }
    size_t i = 0, ngranted = 0;
    bool alive = true;
    pos = 0;
    while (i < n && iotc_mqtt_sub_next(p, &pos, &sub)) {
        if (!(alive = subscribe_one(e, c, &sub, &res[i])))
            break;
        codes[i] = res[i].code;
        i++;
    }
    if (alive) {
        iotc_mqtt_packet a;
        memset(&a, 0, sizeof a);
        a.type = IOTC_MQTT_SUBACK;
        a.u.suback.packet_id = p->packet_id;
        a.u.suback.codes = codes;
        a.u.suback.count = i;
        send_pkt(e, c, &a);
        /* [AWS-SUBACK-DELAY] */
        if (e->cfg.suback_delay_ms)
            c->hold_until = e->now + e->cfg.suback_delay_ms;
        if (e->cfg.suback_delay_ms)
            want(e, c->hold_until);
        for (size_t k = 0; k < i; k++)
            if (res[k].at != SIZE_MAX)
                granted[ngranted++] = s->subs[res[k].at].filter;
        /* [AWS-LIFECYCLE-SUBS] */
        if (ngranted) {
            sim_lc_common lc = lc_for(e, c, s);
            lifecycle(e, "subscriptions", "subscribed", s->client_id,
                      sim_lc_subscriptions(&lc, "subscribed", granted, ngranted));
        }
        /* [AWS-RETAIN-EXACT] a stored message goes only to exact-match
         * filters, with RETAIN = 1; MQTT 5 Retain Handling is honoured. */
        for (size_t k = 0; k < i && e->cfg.retain == SIM_RETAIN_STORE; k++) {
            if (res[k].at == SIZE_MAX)
                continue;
            const sim_sub *ns = &s->subs[res[k].at];
            if (ns->retain_handling == 2 || (ns->retain_handling == 1 && !res[k].added) || is_wild(ns->filter, ns->len))
                continue;
            sim_msg *m = sim_map_get(&e->retained, ns->filter, ns->len);
            if (m && !sim_msg_expired(m, e->now))
                deliver(e, s, m, (uint8_t)(m->qos < ns->qos ? m->qos : ns->qos), true);
        }
    }
    free(res);
    free(codes);
    free(granted);
    return alive;
}

static bool handle_unsubscribe(sim_engine *e, sim_conn *c, const iotc_mqtt_unsubscribe *p)
{
    sim_session *s = c->s;
    /* [AWS-SUB-PER-PACKET] UNSUBSCRIBE is treated like SUBSCRIBE. */
    if (p->count > e->cfg.max_filters_per_subscribe) {
        close_conn(e, c, IOTC_RC_QUOTA_EXCEEDED, "CLIENT_ERROR", "too many filters in one UNSUBSCRIBE");
        return false;
    }
    uint8_t codes[256];
    char *names[256];
    size_t i = 0, n = 0;
    size_t pos = 0;
    iotc_mqtt_bytes f;
    while (iotc_mqtt_unsub_next(p, &pos, &f) && i < 256) {
        bool had = sim_session_unsubscribe(s, (const char *)f.data, f.len);
        codes[i++] = had ? 0 : IOTC_RC_NO_SUBSCRIPTION_EXISTED;
        char *copy = malloc(f.len + 1);
        if (copy) {
            memcpy(copy, f.data, f.len);
            copy[f.len] = 0;
            names[n++] = copy;
        }
    }
    iotc_mqtt_packet a;
    memset(&a, 0, sizeof a);
    a.type = IOTC_MQTT_UNSUBACK;
    a.u.suback.packet_id = p->packet_id;
    if (c->version == IOTC_MQTT_V5) {
        a.u.suback.codes = codes;
        a.u.suback.count = i;
    }
    send_pkt(e, c, &a);
    sim_lc_common lc = lc_for(e, c, s);
    /* [AWS-LIFECYCLE-SUBS] */
    lifecycle(e, "subscriptions", "unsubscribed", s->client_id,
              sim_lc_subscriptions(&lc, "unsubscribed", (const char *const *)names, n));
    for (size_t k = 0; k < n; k++)
        free(names[k]);
    return true;
}

/* ---- dispatch ------------------------------------------------------------ */

static bool handle(sim_engine *e, sim_conn *c, iotc_mqtt_packet *p)
{
    if (c->state == C_AWAIT_CONNECT) {
        /* [AWS-CONNECT-FIRST] */
        if (p->type != IOTC_MQTT_CONNECT) {
            decide(e, c, "close", "packet before CONNECT");
            e->io.close(e->ctx, c->id);
            finish(e, c, "CLIENT_ERROR", false, false);
            return false;
        }
        return handle_connect(e, c, &p->u.connect);
    }
    switch (p->type) {
    case IOTC_MQTT_CONNECT:
        /* [AWS-SECOND-CONNECT] */
        close_conn(e, c, IOTC_RC_PROTOCOL_ERROR, "CLIENT_ERROR", "second CONNECT");
        return false;
    case IOTC_MQTT_PUBLISH: return handle_publish(e, c, &p->u.publish);
    case IOTC_MQTT_PUBACK: {
        sim_item it;
        if (sim_session_ack(c->s, p->u.ack.packet_id, &it))
            sim_msg_unref(it.m);
        else
            decide(e, c, "puback_unknown_pid", NULL);
        pump(e, c);
        if (c->s->stored.len) /* the replay may go on now */
            want(e, c->replay_next);
        return true;
    }
    case IOTC_MQTT_SUBSCRIBE: return handle_subscribe(e, c, &p->u.subscribe);
    case IOTC_MQTT_UNSUBSCRIBE: return handle_unsubscribe(e, c, &p->u.unsubscribe);
    case IOTC_MQTT_PINGREQ: {
        iotc_mqtt_packet r;
        memset(&r, 0, sizeof r);
        r.type = IOTC_MQTT_PINGRESP;
        send_pkt(e, c, &r);
        return true;
    }
    case IOTC_MQTT_DISCONNECT: {
        sim_session *s = c->s;
        bool will = false;
        if (c->version == IOTC_MQTT_V5) {
            const iotc_mqtt_props *dp = &p->u.disconnect.props;
            if (dp->present & IOTC_PROP_BIT(IOTC_PROP_SESSION_EXPIRY_INTERVAL)) {
                uint32_t v = dp->session_expiry_interval;
                if (s->expiry_s == 0 && v > 0) {
                    close_conn(e, c, IOTC_RC_PROTOCOL_ERROR, "CLIENT_ERROR",
                               "DISCONNECT raised a zero Session Expiry Interval");
                    return false;
                }
                s->expiry_s = v > e->cfg.session_expiry_s ? e->cfg.session_expiry_s : v;
            }
            will = p->u.disconnect.reason == IOTC_RC_DISCONNECT_WITH_WILL;
        }
        decide(e, c, "close", "client DISCONNECT");
        e->io.close(e->ctx, c->id);
        finish(e, c, "CLIENT_INITIATED_DISCONNECT", true, will);
        return false;
    }
    default:
        /* [AWS-UNSUPPORTED-PACKETS] PUBREC, PUBREL, PUBCOMP (no QoS 2 at AWS), CONNACK, SUBACK... from a client, AUTH. */
        close_conn(e, c, IOTC_RC_PROTOCOL_ERROR, "CLIENT_ERROR", "packet type not supported from a client");
        return false;
    }
}

size_t sim_engine_input(sim_engine *e, sim_conn_id id, const uint8_t *data, size_t len, uint64_t now_ms)
{
    e->now = now_ms;
    sim_conn *c = find_conn(e, id);
    if (!c)
        return len;
    if (c->blackholed) {
        decide(e, c, "blackholed", "input dropped");
        return len;
    }
    size_t taken = 0;
    while (taken < len) {
        if (c->state == C_LIVE && e->cfg.throughput) {
            refill(e, c);
            if (c->byte_tokens < 0) {
                /* [AWS-THROUGHPUT] over 512 KiB/s: delayed, not dropped. */
                decide(e, c, "throughput_delayed", NULL);
                want(e, now_ms + (uint64_t)(-c->byte_tokens * 1000.0 / e->cfg.throughput) + 1);
                return taken;
            }
        }
        size_t used;
        iotc_mqtt_packet p;
        iotc_mqtt_error err;
        iotc_mqtt_status st = iotc_mqtt_reader_feed(&c->rd, data + taken, len - taken, &used, &p, &err);
        taken += used;
        /* Every byte read counts, the pieces of a packet that arrives in
         * several reads included (only its last piece was charged). */
        c->pkt_bytes += used;
        if (c->state == C_LIVE && e->cfg.throughput) {
            c->byte_tokens -= (double)used;
            if (c->byte_tokens < 0) /* in debt: input pauses until it is paid */
                want(e, now_ms + (uint64_t)(-c->byte_tokens * 1000.0 / e->cfg.throughput) + 1);
        }
        if (st == IOTC_MQTT_NEED_MORE)
            break;
        size_t pkt_size = c->pkt_bytes;
        c->pkt_bytes = 0;
        /* [AWS-MALFORMED] a packet the strict reader refuses closes the connection. */
        if (st != IOTC_MQTT_OK) {
            char why[256];
            snprintf(why, sizeof why, "%s at offset %zu: %s", iotc_mqtt_status_str(st), err.offset, err.what);
            if (c->state == C_AWAIT_CONNECT) {
                if (st == IOTC_MQTT_ERR_UNSUPPORTED_VERSION) {
                    /* MQTT 3.1.1 §3.1.2.2: answer with return code 1, then close. */
                    static const uint8_t ack[] = {0x20, 0x02, 0x00, 0x01};
                    e->io.send(e->ctx, c->id, ack, sizeof ack);
                }
                decide(e, c, "close", why);
                e->io.close(e->ctx, c->id);
                finish(e, c, "CLIENT_ERROR", false, false);
            } else {
                close_conn(e, c, err.reason, "CLIENT_ERROR", why);
            }
            return len;
        }
        c->last_rx = now_ms;
        log_packet(e, c, "in", &p, pkt_size);
        if (!handle(e, c, &p))
            return len; /* the connection is gone */
    }
    return taken;
}

void sim_engine_lost(sim_engine *e, sim_conn_id id, uint64_t now_ms)
{
    e->now = now_ms;
    sim_conn *c = find_conn(e, id);
    if (!c)
        return;
    decide(e, c, "lost", NULL);
    finish(e, c, "CONNECTION_LOST", false, true);
}

/* ---- timers --------------------------------------------------------------- */

static uint64_t min64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* Runs one live connection's timers; false if it was closed. */
static bool conn_timers(sim_engine *e, sim_conn *c, uint64_t *next)
{
    uint64_t now = e->now;
    if (c->state == C_AWAIT_CONNECT) {
        uint64_t dl = c->opened_at + e->cfg.connect_timeout_ms;
        if (e->cfg.connect_timeout_ms && now >= dl) {
            decide(e, c, "close", "no CONNECT in time");
            e->io.close(e->ctx, c->id);
            finish(e, c, "CLIENT_ERROR", false, false);
            return false;
        }
        if (e->cfg.connect_timeout_ms)
            *next = min64(*next, dl);
        return true;
    }
    /* [AWS-KEEPALIVE] 1.5 x keep-alive without traffic. */
    uint64_t ka_dl = c->last_rx + (uint64_t)c->keepalive * 1500u;
    if (now >= ka_dl) {
        close_conn(e, c, IOTC_RC_KEEP_ALIVE_TIMEOUT, "MQTT_KEEP_ALIVE_TIMEOUT", NULL);
        return false;
    }
    *next = min64(*next, ka_dl);
    sim_session *s = c->s;
    /* [AWS-QOS1-REDELIVERY] a new packet id and no DUP flag. */
    bool gave_up = false;
    for (size_t i = 0; i < s->nfl && !c->blackholed; i++) {
        sim_flight *f = &s->fl[i];
        if (now - f->first_sent >= e->cfg.qos1_retry_max_ms || sim_msg_expired(f->it.m, now)) {
            decide(e, c, "qos1_given_up", NULL);
            sim_item it;
            sim_session_ack(s, f->pid, &it);
            sim_msg_unref(it.m);
            gave_up = true;
            i--;
            continue;
        }
        if (e->cfg.qos1_retry_ms && now - f->last_sent >= e->cfg.qos1_retry_ms) {
            f->pid = 0; /* frees its id for the pick below */
            f->pid = sim_session_next_pid(s);
            f->last_sent = now;
            decide(e, c, "qos1_redelivery", NULL);
            send_publish(e, c, &f->it, f->pid);
        }
        if (e->cfg.qos1_retry_ms)
            *next = min64(*next, f->last_sent + e->cfg.qos1_retry_ms);
    }
    if (c->hold_until && now >= c->hold_until) {
        c->hold_until = 0;
        pump(e, c);
    } else if (gave_up) {
        pump(e, c); /* what was given up freed the window */
    }
    if (s->stash.m) {
        uint64_t due = s->stash_at + e->cfg.reorder_hold_ms;
        if (now >= due)
            flush_stash(e, s);
        else
            *next = min64(*next, due);
    }
    if (c->hold_until) {
        *next = min64(*next, c->hold_until);
    }
    /* [AWS-SESSION-REPLAY] stored messages at no more than replay_rate/s. */
    while (s->stored.len && now >= c->replay_next && window_free(c) && !c->hold_until) {
        sim_item it;
        sim_fifo_pop(&s->stored, &it);
        if (sim_msg_expired(it.m, now)) {
            decide(e, c, "message_expired", NULL);
            sim_msg_unref(it.m);
            continue;
        }
        send_qos1(e, c, it);
        /* Rounded up: "at most N per second" must hold in any 1 s window. */
        uint64_t gap = e->cfg.replay_rate ? (1000u + e->cfg.replay_rate - 1) / e->cfg.replay_rate : 0;
        c->replay_next = (c->replay_next > now ? c->replay_next : now) + gap;
    }
    /* Only a replay that could go now has a deadline of its own; a full
     * window waits for a PUBACK, a SUBACK delay for hold_until. */
    if (s->stored.len && window_free(c) && !c->hold_until)
        *next = min64(*next, c->replay_next);
    if (e->cfg.throughput && c->byte_tokens < 0) {
        uint64_t wait = (uint64_t)(-c->byte_tokens * 1000.0 / e->cfg.throughput) + 1;
        *next = min64(*next, now + wait);
    }
    return true;
}

uint64_t sim_engine_tick(sim_engine *e, uint64_t now_ms)
{
    e->now = now_ms;
    uint64_t next = UINT64_MAX;
    /* What the timers below send sets deadlines of its own (through want())
     * that the scan may already have passed: they are folded in at the end. */
    e->hint = UINT64_MAX;
    /* Collect first: timers may close connections and delete sessions. */
    size_t n = e->conns.count, k = 0, i;
    if (n > e->ids_cap) {
        sim_conn_id *ni = realloc(e->ids, n * sizeof *ni);
        if (!ni)
            return now_ms + 10; /* try again soon */
        e->ids = ni;
        e->ids_cap = n;
    }
    for (sim_map_entry *me = sim_map_first(&e->conns, &i); me && k < n; me = sim_map_next(&e->conns, &i, me))
        e->ids[k++] = ((sim_conn *)me->value)->id;
    for (size_t j = 0; j < k; j++) {
        sim_conn *c = find_conn(e, e->ids[j]);
        if (c)
            conn_timers(e, c, &next);
    }
    /* What is remembered per client id (the lifecycle versionNumber, the
     * connect-rate window) is forgotten an hour after its last CONNECT once
     * the client has no session: AWS resets versionNumber after about an
     * hour away (aws-broker.md §4.1), and a stream of one-off client ids
     * must not grow the broker without bound. */
    if (now_ms >= e->gc_at) {
        e->gc_at = now_ms + 60000;
        for (sim_map_entry *me = sim_map_first(&e->clients, &i); me;) {
            client_rec *cr = me->value;
            sim_map_entry *nx = sim_map_next(&e->clients, &i, me);
            if (now_ms - cr->last_connect >= 3600000u && !sim_map_get(&e->sessions, me->key, me->klen)) {
                free(cr);
                sim_map_del(&e->clients, me->key, me->klen);
            }
            me = nx;
        }
    }
    if (e->clients.count)
        next = min64(next, e->gc_at);
    /* Fleet provisioning's ownership tokens run out on the virtual clock:
     * their pending certificates go (aws-services.md §2.3). */
    if (e->cfg.provisioning) {
        uint64_t nx = sim_provision_expire(e->cfg.provisioning, now_ms / 1000);
        if (nx != UINT64_MAX)
            next = min64(next, nx * 1000);
    }
    /* [AWS-SESSION-EXPIRY] */
    n = e->sessions.count;
    sim_session **dead = n ? malloc(n * sizeof *dead) : NULL;
    k = 0;
    for (sim_map_entry *me = sim_map_first(&e->sessions, &i); me; me = sim_map_next(&e->sessions, &i, me)) {
        sim_session *s = me->value;
        if (s->conn || !s->expires_at)
            continue;
        if (now_ms >= s->expires_at) {
            if (dead)
                dead[k++] = s;
        } else {
            next = min64(next, s->expires_at);
        }
    }
    for (size_t j = 0; j < k; j++) {
        decide(e, NULL, "session_expired", dead[j]->client_id);
        delete_session(e, dead[j]);
    }
    free(dead);
    if (e->hint < next)
        next = e->hint;
    e->hint = next;
    return next;
}

/* ---- control ------------------------------------------------------------- */

bool sim_engine_drop(sim_engine *e, sim_conn_id id, uint8_t reason, const char *why, uint64_t now_ms)
{
    e->now = now_ms;
    sim_conn *c = find_conn(e, id);
    if (!c)
        return false;
    close_conn(e, c, reason, "SERVER_INITIATED_DISCONNECT", why ? why : "fault: drop");
    return true;
}

void sim_engine_note(sim_engine *e, const char *what, const char *detail)
{
    decide(e, NULL, what, detail);
}

void sim_engine_refuse_until(sim_engine *e, uint64_t until_ms)
{
    e->refuse_until = until_ms;
    decide(e, NULL, "fault_refuse_connects", NULL);
}

bool sim_engine_blackhole(sim_engine *e, sim_conn_id id, bool on)
{
    sim_conn *c = find_conn(e, id);
    if (!c)
        return false;
    c->blackholed = on;
    if (!on)
        want(e, 0); /* redeliveries held during the blackhole may be due now */
    decide(e, c, on ? "fault_blackhole_on" : "fault_blackhole_off", NULL);
    return true;
}

void sim_engine_delay_deliveries(sim_engine *e, sim_conn_id id, uint32_t ms, uint64_t now_ms)
{
    e->now = now_ms;
    size_t i;
    for (sim_map_entry *me = sim_map_first(&e->conns, &i); me; me = sim_map_next(&e->conns, &i, me)) {
        sim_conn *c = me->value;
        if (c->state == C_LIVE && (!id || c->id == id)) {
            c->hold_until = now_ms + ms;
            want(e, c->hold_until);
            decide(e, c, "fault_delay_deliveries", NULL);
        }
    }
}

void sim_engine_duplicate_next_qos0(sim_engine *e, uint32_t n)
{
    e->dup_next = n;
    decide(e, NULL, "fault_duplicate_qos0", NULL);
}

void sim_engine_stats(const sim_engine *e, sim_stats *out)
{
    memset(out, 0, sizeof *out);
    out->connections = e->conns.count;
    out->sessions = e->sessions.count;
    size_t i;
    for (sim_map_entry *me = sim_map_first(&e->sessions, &i); me; me = sim_map_next(&e->sessions, &i, me)) {
        const sim_session *s = me->value;
        out->subscriptions += s->nsubs;
        out->queued += s->stored.len + s->pending.len + (s->stash.m ? 1 : 0);
        out->inflight += s->nfl;
    }
}

sim_shadow_store *sim_engine_shadows(sim_engine *e)
{
    return e->shadows;
}

sim_conn_id sim_engine_find_client(const sim_engine *e, const char *client_id)
{
    const sim_session *s = sim_map_get(&e->sessions, client_id, strlen(client_id));
    return s && s->conn ? s->conn->id : 0;
}

char *sim_engine_describe(const sim_engine *e)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON *cl = cJSON_AddArrayToObject(o, "clients");
    cJSON *se = cJSON_AddArrayToObject(o, "sessions");
    size_t i;
    for (sim_map_entry *me = sim_map_first(&e->conns, &i); me && cl; me = sim_map_next(&e->conns, &i, me)) {
        const sim_conn *c = me->value;
        cJSON *x = cJSON_CreateObject();
        if (!x)
            break;
        cJSON_AddNumberToObject(x, "conn", (double)c->id);
        cJSON_AddStringToObject(x, "state", c->state == C_LIVE ? "connected" : "awaiting_connect");
        if (c->s)
            cJSON_AddStringToObject(x, "client_id", c->s->client_id);
        cJSON_AddNumberToObject(x, "version", c->version);
        cJSON_AddNumberToObject(x, "keepalive", c->keepalive);
        if (c->principal)
            cJSON_AddStringToObject(x, "principal", c->principal);
        if (c->transport)
            cJSON_AddStringToObject(x, "transport", c->transport);
        cJSON_AddBoolToObject(x, "blackholed", c->blackholed);
        cJSON_AddItemToArray(cl, x);
    }
    for (sim_map_entry *me = sim_map_first(&e->sessions, &i); me && se; me = sim_map_next(&e->sessions, &i, me)) {
        const sim_session *s = me->value;
        cJSON *x = cJSON_CreateObject();
        if (!x)
            break;
        cJSON_AddStringToObject(x, "client_id", s->client_id);
        cJSON_AddNumberToObject(x, "version", s->version);
        cJSON_AddBoolToObject(x, "online", s->conn != NULL);
        cJSON_AddNumberToObject(x, "expiry_s", s->expiry_s);
        if (!s->conn && s->expires_at)
            cJSON_AddNumberToObject(x, "expires_at", (double)s->expires_at);
        cJSON_AddNumberToObject(x, "stored", (double)s->stored.len);
        cJSON_AddNumberToObject(x, "pending", (double)s->pending.len);
        cJSON_AddNumberToObject(x, "inflight", (double)s->nfl);
        cJSON *subs = cJSON_AddArrayToObject(x, "subscriptions");
        for (size_t k = 0; subs && k < s->nsubs; k++) {
            cJSON *sb = cJSON_CreateObject();
            if (!sb)
                break;
            cJSON_AddStringToObject(sb, "filter", s->subs[k].filter);
            cJSON_AddNumberToObject(sb, "qos", s->subs[k].qos);
            cJSON_AddItemToArray(subs, sb);
        }
        cJSON_AddItemToArray(se, x);
    }
    cJSON_AddNumberToObject(o, "retained", (double)e->retained.count);
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return txt;
}

uint64_t sim_engine_next_deadline(const sim_engine *e)
{
    return e->hint;
}

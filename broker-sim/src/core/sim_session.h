/*
 * sim_session.h: what the broker keeps per client id across connections: the
 * subscriptions, the QoS 1 messages stored while offline (replayed later at
 * a limited rate), the live messages waiting for a free slot in the inflight
 * window, and the window itself (outbound QoS 1 awaiting PUBACK).
 */
#ifndef SIM_SESSION_H
#define SIM_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iotc/mqtt.h"
#include "sim_msg.h"

typedef struct {
    char *filter; /* NUL-terminated copy */
    size_t len;
    uint8_t qos;  /* granted */
    bool no_local;
    bool retain_as_published;
    uint8_t retain_handling;
} sim_sub;

typedef struct {
    sim_msg *m;
    uint8_t qos;
    bool retain;
} sim_item;

/* A ring of items. */
typedef struct {
    sim_item *v;
    size_t head, len, cap;
} sim_fifo;

typedef struct {
    uint16_t pid;
    sim_item it;
    uint64_t first_sent, last_sent;
} sim_flight;

struct sim_conn;

typedef struct sim_session {
    char *client_id;
    iotc_mqtt_version version;
    uint64_t serial;         /* unique per session, for No Local */
    struct sim_conn *conn;   /* NULL while offline */
    sim_sub *subs;
    size_t nsubs, subcap;
    sim_fifo stored;         /* kept while offline; replayed at the replay rate */
    sim_fifo pending;        /* live; waits for the window (or the SUBACK delay) */
    sim_flight *fl;
    size_t nfl, flcap;
    sim_item stash;          /* a delivery held back to be overtaken (reordering) */
    uint64_t stash_at;
    uint16_t next_pid;
    uint32_t expiry_s;       /* 0: the session ends with the connection */
    uint64_t expires_at;     /* virtual ms, while offline */
    char sid[37];            /* sessionIdentifier (UUID) */
} sim_session;

sim_session *sim_session_new(const char *client_id, iotc_mqtt_version v, uint64_t serial, const char sid[37]);
void sim_session_free(sim_session *s);

bool sim_fifo_push(sim_fifo *f, sim_item it);
bool sim_fifo_push_front(sim_fifo *f, sim_item it);
bool sim_fifo_pop(sim_fifo *f, sim_item *out);
void sim_fifo_clear(sim_fifo *f);

/* Adds or replaces the subscription for `filter`; *added tells which, *at
 * its index in s->subs.  Takes a copy of the filter.  False on allocation
 * failure. */
bool sim_session_subscribe(sim_session *s, const char *filter, size_t len, const sim_sub *opts, bool *added,
                           size_t *at);
/* Removes it; false if there was none. */
bool sim_session_unsubscribe(sim_session *s, const char *filter, size_t len);

/* A packet identifier not in the window (1..65535, cycling). */
uint16_t sim_session_next_pid(sim_session *s);
bool sim_session_add_flight(sim_session *s, uint16_t pid, sim_item it, uint64_t now_ms);
/* Removes the flight for pid; false if unknown.  The item's ref goes to *out. */
bool sim_session_ack(sim_session *s, uint16_t pid, sim_item *out);
/* Moves every unacknowledged message, then the pending ones, in front of the
 * stored queue, in their order: what a reconnecting client gets first. */
void sim_session_requeue(sim_session *s);

#endif

/*
 * sim_lifecycle.h: the payloads of AWS IoT's lifecycle events
 * (aws-broker.md §4.1-4.3), built with cJSON.  Topics:
 * $aws/events/presence/{connected,disconnected,connect_failed}/<clientId> and
 * $aws/events/subscriptions/{subscribed,unsubscribed}/<clientId>.
 */
#ifndef SIM_LIFECYCLE_H
#define SIM_LIFECYCLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *client_id;
    const char *thing_name;          /* NULL: left out */
    uint64_t timestamp_ms;           /* wall clock */
    const char *session_identifier;  /* UUID */
    const char *principal;           /* NULL: "" */
    const char *ip;                  /* connected and connect_failed only */
    uint64_t version_number;
} sim_lc_common;

/* Each returns a malloc'd JSON text (free()), or NULL on allocation failure. */
char *sim_lc_connected(const sim_lc_common *c);
char *sim_lc_disconnected(const sim_lc_common *c, bool client_initiated, const char *reason);
char *sim_lc_connect_failed(const sim_lc_common *c, const char *reason);
/* event: "subscribed" or "unsubscribed"; topics[n] are NUL-terminated filters. */
char *sim_lc_subscriptions(const sim_lc_common *c, const char *event, const char *const *topics, size_t n);

/* Whether a client id gets lifecycle events at all (none with '#' or '+'). */
bool sim_lc_eligible(const char *client_id);

#endif

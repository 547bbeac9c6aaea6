/* sim_config.c: see sim_config.h. */
#include "sim_config.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { K_U32, K_U16, K_BOOL, K_RETAIN, K_OVERSUBS };

typedef struct {
    const char *section; /* "limits", "deviations" or "shadow" */
    const char *name;
    int kind;
    size_t off;
    double min, max;
} key;

#define U32(sec, f, lo, hi) {sec, #f, K_U32, offsetof(sim_config, f), lo, hi}
#define U16(sec, f, lo, hi) {sec, #f, K_U16, offsetof(sim_config, f), lo, hi}
#define BOOL(sec, f) {sec, #f, K_BOOL, offsetof(sim_config, f), 0, 1}

static const key KEYS[] = {
    U32("limits", max_payload, 0, 268435455),
    U32("limits", max_packet, 2, 268435460),
    U32("limits", max_topic_bytes, 1, 65535),
    U32("limits", max_topic_slashes, 0, 65535),
    U32("limits", max_client_id, 1, 65535),
    U32("limits", max_filters_per_subscribe, 1, 65535),
    U32("limits", max_subscriptions, 0, 1000000),
    {"limits", "over_subscriptions", K_OVERSUBS, offsetof(sim_config, over_subscriptions), 0, 0},
    U32("limits", publish_rate, 0, 1000000),
    U32("limits", throughput, 0, 4294967295.0),
    U32("limits", connect_interval_ms, 0, 86400000),
    U32("limits", max_inflight, 1, 65535),
    U16("limits", keepalive_min, 0, 65535),
    U16("limits", keepalive_max, 1, 65535),
    U32("limits", session_expiry_s, 0, 4294967295.0),
    U32("limits", replay_rate, 0, 1000000),
    U32("limits", max_queued, 0, 100000000),
    U32("limits", qos1_retry_ms, 0, 86400000),
    U32("limits", qos1_retry_max_ms, 0, 4294967295.0),
    U32("limits", connect_timeout_ms, 0, 86400000),
    U16("limits", topic_alias_max, 0, 65535),
    {"deviations", "retain", K_RETAIN, offsetof(sim_config, retain), 0, 0},
    BOOL("deviations", takeover_connack_both),
    BOOL("deviations", v3_qos2_subscribe_close),
    U32("deviations", qos0_dup_permille, 0, 1000),
    U32("deviations", suback_delay_ms, 0, 86400000),
    U32("deviations", reorder_permille, 0, 1000),
    U32("deviations", reorder_hold_ms, 0, 86400000),
    BOOL("deviations", lifecycle_events),
    BOOL("deviations", hash_matches_parent),
    /* The Device Shadow service; its UNCONFIRMED choices are sim_shadow.h's. */
    {"shadow", "service", K_BOOL, offsetof(sim_config, shadow_service), 0, 1},
    {"shadow", "max_state_bytes", K_U32, offsetof(sim_config, shadow.max_state_bytes), 1, 1048576},
    {"shadow", "max_depth", K_U32, offsetof(sim_config, shadow.max_depth), 1, 64},
    {"shadow", "max_client_token", K_U32, offsetof(sim_config, shadow.max_client_token), 1, 1024},
    {"shadow", "delta_when_unchanged", K_BOOL, offsetof(sim_config, shadow.delta_when_unchanged), 0, 1},
    {"shadow", "version_on_noop", K_BOOL, offsetof(sim_config, shadow.version_on_noop), 0, 1},
    {"shadow", "keep_empty_parents", K_BOOL, offsetof(sim_config, shadow.keep_empty_parents), 0, 1},
    {"shadow", "recreate_window_s", K_U32, offsetof(sim_config, shadow.recreate_window_s), 0, 4294967295.0},
    {"shadow", "max_shadows", K_U32, offsetof(sim_config, shadow.max_shadows), 0, 100000000},
};

static int fail(char *err, size_t errlen, const char *sec, const char *k, const char *why)
{
    if (sec)
        snprintf(err, errlen, "%s.%s: %s", sec, k, why);
    else
        snprintf(err, errlen, "%s: %s", k, why);
    return -1;
}

static int apply(sim_config *cfg, const char *sec, const cJSON *v, char *err, size_t errlen)
{
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++) {
        const key *k = &KEYS[i];
        if (strcmp(k->section, sec) || strcmp(k->name, v->string))
            continue;
        char *field = (char *)cfg + k->off;
        switch (k->kind) {
        case K_BOOL:
            if (!cJSON_IsBool(v))
                return fail(err, errlen, sec, v->string, "must be true or false");
            *(bool *)(void *)field = cJSON_IsTrue(v);
            return 0;
        case K_RETAIN:
            if (cJSON_IsString(v) && !strcmp(v->valuestring, "disconnect"))
                *(sim_retain_mode *)(void *)field = SIM_RETAIN_DISCONNECT;
            else if (cJSON_IsString(v) && !strcmp(v->valuestring, "store"))
                *(sim_retain_mode *)(void *)field = SIM_RETAIN_STORE;
            else
                return fail(err, errlen, sec, v->string, "must be \"disconnect\" or \"store\"");
            return 0;
        case K_OVERSUBS:
            if (cJSON_IsString(v) && !strcmp(v->valuestring, "disconnect"))
                *(sim_over_subs *)(void *)field = SIM_OVER_SUBS_DISCONNECT;
            else if (cJSON_IsString(v) && !strcmp(v->valuestring, "refuse"))
                *(sim_over_subs *)(void *)field = SIM_OVER_SUBS_REFUSE;
            else
                return fail(err, errlen, sec, v->string, "must be \"disconnect\" or \"refuse\"");
            return 0;
        default: {
            if (!cJSON_IsNumber(v) || v->valuedouble != (double)(long long)v->valuedouble)
                return fail(err, errlen, sec, v->string, "must be a whole number");
            if (v->valuedouble < k->min || v->valuedouble > k->max) {
                char why[96];
                snprintf(why, sizeof why, "must be between %.0f and %.0f", k->min, k->max);
                return fail(err, errlen, sec, v->string, why);
            }
            if (k->kind == K_U16)
                *(uint16_t *)(void *)field = (uint16_t)v->valuedouble;
            else
                *(uint32_t *)(void *)field = (uint32_t)v->valuedouble;
            return 0;
        }
        }
    }
    return fail(err, errlen, sec, v->string, "unknown key");
}

int sim_config_parse(sim_config *cfg, sim_profile *profile, const char *json, size_t len, char *err, size_t errlen)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        const char *at = cJSON_GetErrorPtr();
        snprintf(err, errlen, "not a JSON object%s%.20s", at ? " near: " : "", at ? at : "");
        cJSON_Delete(root);
        return -1;
    }
    int rc = 0;
    /* The profile first: it resets the defaults the rest then adjusts. */
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "profile");
    if (p) {
        if (cJSON_IsString(p) && !strcmp(p->valuestring, "classic"))
            *profile = SIM_PROFILE_CLASSIC;
        else if (cJSON_IsString(p) && !strcmp(p->valuestring, "current"))
            *profile = SIM_PROFILE_CURRENT;
        else {
            cJSON_Delete(root);
            return fail(err, errlen, NULL, "profile", "must be \"classic\" or \"current\"");
        }
        sim_config_init(cfg, *profile);
    }
    const cJSON *sec;
    cJSON_ArrayForEach(sec, root)
    {
        if (!strcmp(sec->string, "profile"))
            continue;
        if (strcmp(sec->string, "limits") && strcmp(sec->string, "deviations") && strcmp(sec->string, "shadow")) {
            rc = fail(err, errlen, NULL, sec->string, "unknown key (want profile, limits, deviations, shadow)");
            break;
        }
        if (!cJSON_IsObject(sec)) {
            rc = fail(err, errlen, NULL, sec->string, "must be an object");
            break;
        }
        const cJSON *v;
        cJSON_ArrayForEach(v, sec)
        {
            if ((rc = apply(cfg, sec->string, v, err, errlen)) != 0)
                break;
        }
        if (rc)
            break;
    }
    if (!rc && cfg->keepalive_min > cfg->keepalive_max)
        rc = fail(err, errlen, "limits", "keepalive_min", "must not exceed keepalive_max");
    cJSON_Delete(root);
    return rc;
}

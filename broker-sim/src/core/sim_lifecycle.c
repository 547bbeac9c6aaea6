/* sim_lifecycle.c: see sim_lifecycle.h. */
#include "sim_lifecycle.h"

#include <cjson/cJSON.h>
#include <string.h>

static cJSON *common(const sim_lc_common *c, const char *event)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "clientId", c->client_id);
    if (c->thing_name)
        cJSON_AddStringToObject(o, "thingName", c->thing_name);
    cJSON_AddNumberToObject(o, "timestamp", (double)c->timestamp_ms);
    cJSON_AddStringToObject(o, "eventType", event);
    cJSON_AddStringToObject(o, "sessionIdentifier", c->session_identifier ? c->session_identifier : "");
    cJSON_AddStringToObject(o, "principalIdentifier", c->principal ? c->principal : "");
    return o;
}

static char *finish(cJSON *o)
{
    if (!o)
        return NULL;
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

char *sim_lc_connected(const sim_lc_common *c)
{
    cJSON *o = common(c, "connected");
    if (o) {
        cJSON_AddStringToObject(o, "ipAddress", c->ip ? c->ip : "");
        cJSON_AddNumberToObject(o, "versionNumber", (double)c->version_number);
    }
    return finish(o);
}

char *sim_lc_disconnected(const sim_lc_common *c, bool client_initiated, const char *reason)
{
    cJSON *o = common(c, "disconnected");
    if (o) {
        cJSON_AddBoolToObject(o, "clientInitiatedDisconnect", client_initiated);
        cJSON_AddStringToObject(o, "disconnectReason", reason);
        cJSON_AddNumberToObject(o, "versionNumber", (double)c->version_number);
    }
    return finish(o);
}

char *sim_lc_connect_failed(const sim_lc_common *c, const char *reason)
{
    cJSON *o = common(c, "connect_failed");
    if (o) {
        cJSON_AddStringToObject(o, "connectFailureReason", reason);
        cJSON_AddStringToObject(o, "ipAddress", c->ip ? c->ip : "");
    }
    return finish(o);
}

char *sim_lc_subscriptions(const sim_lc_common *c, const char *event, const char *const *topics, size_t n)
{
    cJSON *o = common(c, event);
    if (o) {
        cJSON *a = cJSON_AddArrayToObject(o, "topics");
        for (size_t i = 0; a && i < n; i++)
            cJSON_AddItemToArray(a, cJSON_CreateString(topics[i]));
    }
    return finish(o);
}

bool sim_lc_eligible(const char *client_id)
{
    return !strpbrk(client_id, "#+");
}

/*
 * shadow: the AWS IoT Device SDK v2's shadow sample (Python samples/shadow.py,
 * C++ shadow_sync) on libiotc's shadow client (iotc/shadow.h).  It keeps one
 * property of a thing's shadow ("color" by default) in sync between the
 * device and the cloud, like a lamp whose colour an app may change:
 *
 * - at start it subscribes to the shadow's delta events, then gets the
 *   shadow: a pending delta, or no reported value at all, is reported as
 *   the new local value ("off" when nothing is desired either);
 * - each delta for the property (someone changed "desired") becomes the
 *   local value and is reported back;
 * - each line read from stdin is a new local value, reported the same way
 *   ("none" reports null, which deletes the property); "quit", "exit" or
 *   the end of input ends the sample.
 *
 *   shadow --endpoint HOST --cert CERT --key KEY --thing_name NAME [--ca_file CA]
 *          [--port N] [--client_id ID] [--shadow_property P] [--shadow_name S] [--is_ci X]
 *
 * Values are reported in both "reported" and "desired", as the original
 * does: a value typed here must not leave a delta that would set it back.
 * Exit code: 0 on quit or end of input, 1 on a failure, 2 on a usage error.
 *
 * Threads.  The local value lives on the client's service thread, where
 * the get, delta and update callbacks run; the main thread hands each line
 * of stdin over with iotc_client_call_after(c, 0, ...).  So no lock is
 * needed (a lock held around a library call while a callback waits for it
 * would deadlock: callbacks run under the client's own lock), and the
 * updates go out in the order the value changed.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "iotc/client.h"
#include "iotc/shadow.h"

#define WAIT_MS 10000u
#define SHADOW_VALUE_DEFAULT "off"
#define TEXT_MAX 256

static const char *g_property = "color";
static iotc_shadow *g_shadow;
static atomic_int g_pending;  /* requests awaiting their answer, lines not handled yet */
static atomic_bool g_failed;  /* a callback ended the sample: exit 1 */
static atomic_bool g_closing; /* the main thread is freeing g_shadow */

/* The local value of the property (service thread only): NULL until the
 * get, a delta or a line sets it. */
static cJSON *g_value;

/* Ends the sample from any thread: the main loop sees g_failed. */
static void exit_sample(const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    printf("Exiting sample: %s\n", why); /* one call: the other thread may print too */
    atomic_store(&g_failed, true);
}

/* A value as the sample prints it: a string's text, anything else as JSON. */
static const char *text_of(cJSON *v, char buf[TEXT_MAX])
{
    if (cJSON_IsString(v))
        return v->valuestring;
    return cJSON_PrintPreallocated(v, buf, TEXT_MAX, false) ? buf : "(too long)";
}

static void on_update(iotc_shadow *s, const iotc_shadow_result *r, void *user)
{
    (void)s, (void)user;
    if (r->status == IOTC_OK) {
        cJSON *doc = cJSON_ParseWithLength(r->json, r->json_len);
        cJSON *reported = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "state"), "reported");
        cJSON *v = cJSON_GetObjectItemCaseSensitive(reported, g_property);
        char buf[TEXT_MAX];
        if (v)
            printf("Finished updating reported shadow value to '%s'.\n", text_of(v, buf));
        else
            printf("Could not find shadow property with name: '%s'.\n", g_property);
        printf("Enter desired value:\n");
        cJSON_Delete(doc);
    } else if (r->status == IOTC_ERR_REJECTED) {
        exit_sample("Update request was rejected. code:%d message:'%s'", r->code, r->message);
    } else {
        exit_sample("Update request failed: %s", iotc_strerror(r->status));
    }
    atomic_fetch_sub(&g_pending, 1);
}

/* Makes `v` (taken; NULL when out of memory) the local value and reports
 * it (service thread). */
static void change_value(cJSON *v)
{
    char buf[TEXT_MAX], *doc = NULL;
    if (!v) {
        exit_sample("out of memory");
        return;
    }
    if (g_value && cJSON_Compare(g_value, v, true)) {
        printf("Local value is already '%s'.\nEnter desired value:\n", text_of(v, buf));
        cJSON_Delete(v);
        return;
    }
    printf("Changed local shadow value to '%s'.\n", text_of(v, buf));
    cJSON_Delete(g_value);
    g_value = v;
    printf("Updating reported shadow value to '%s'...\n", text_of(v, buf));

    /* {"state":{"reported":{P:v},"desired":{P:v}}}; the library adds the clientToken. */
    cJSON *root = cJSON_CreateObject(), *state = cJSON_AddObjectToObject(root, "state");
    cJSON *reported = cJSON_AddObjectToObject(state, "reported"), *desired = cJSON_AddObjectToObject(state, "desired");
    if (cJSON_AddItemToObject(reported, g_property, cJSON_Duplicate(v, true)) &&
        cJSON_AddItemToObject(desired, g_property, cJSON_Duplicate(v, true)))
        doc = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!doc) {
        exit_sample("out of memory");
        return;
    }
    atomic_fetch_add(&g_pending, 1);
    int rc = iotc_shadow_update(g_shadow, doc, WAIT_MS, on_update, NULL);
    free(doc);
    if (rc != IOTC_OK) {
        atomic_fetch_sub(&g_pending, 1);
        printf("Failed to publish update request.\n");
        exit_sample("%s: %s", iotc_strerror(rc), iotc_shadow_why());
        return;
    }
    /* Handed to the client: it goes out now, or at the next connection. */
    printf("Update request published.\n");
}

/* A line of stdin, handed over by the main thread (service thread; or
 * IOTC_ERR_CLOSED inside iotc_client_free). */
static void on_input(iotc_client *c, int status, void *user)
{
    (void)c;
    char *line = user;
    if (status == IOTC_OK && !atomic_load(&g_closing))
        change_value(!strcmp(line, "none") ? cJSON_CreateNull() : cJSON_CreateString(line));
    free(line);
    atomic_fetch_sub(&g_pending, 1);
}

/* The answer to the initial get (service thread). */
static void handle_get(const iotc_shadow_result *r)
{
    char buf[TEXT_MAX];
    if (r->status == IOTC_ERR_REJECTED && r->code == 404) {
        if (g_value) {
            printf("Thing has no shadow document; a value is already set locally.\n");
        } else {
            printf("Thing has no shadow document. Creating with defaults...\n");
            change_value(cJSON_CreateString(SHADOW_VALUE_DEFAULT));
        }
        return;
    }
    if (r->status == IOTC_ERR_REJECTED) {
        exit_sample("Get request was rejected. code:%d message:'%s'", r->code, r->message);
        return;
    }
    if (r->status != IOTC_OK) {
        exit_sample("Get request failed: %s", iotc_strerror(r->status));
        return;
    }
    printf("Finished getting initial shadow state.\n");
    cJSON *doc = cJSON_ParseWithLength(r->json, r->json_len);
    cJSON *state = cJSON_GetObjectItemCaseSensitive(doc, "state");
    cJSON *delta = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(state, "delta"), g_property);
    cJSON *reported = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(state, "reported"), g_property);
    if (g_value) {
        printf("  Ignoring initial query because a delta event or user input has already set the local value.\n");
    } else if (delta && !cJSON_IsNull(delta)) {
        printf("  Shadow contains delta value '%s'.\n", text_of(delta, buf));
        change_value(cJSON_Duplicate(delta, true));
    } else if (reported && !cJSON_IsNull(reported)) {
        printf("  Shadow contains reported value '%s'.\n", text_of(reported, buf));
        if (!(g_value = cJSON_Duplicate(reported, true)))
            exit_sample("out of memory");
        printf("Enter desired value:\n");
    } else {
        printf("  Shadow document lacks '%s' property. Setting defaults...\n", g_property);
        change_value(cJSON_CreateString(SHADOW_VALUE_DEFAULT));
    }
    cJSON_Delete(doc);
}

static void on_get(iotc_shadow *s, const iotc_shadow_result *r, void *user)
{
    (void)s, (void)user;
    handle_get(r);
    atomic_fetch_sub(&g_pending, 1);
}

/* /update/delta: desired differs from reported (service thread). */
static void on_delta(iotc_shadow *s, const char *json, size_t len, uint64_t version, void *user)
{
    (void)s, (void)version, (void)user;
    char buf[TEXT_MAX];
    printf("Received shadow delta event.\n");
    cJSON *doc = cJSON_ParseWithLength(json, len);
    cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "state"), g_property);
    cJSON *token = cJSON_GetObjectItemCaseSensitive(doc, "clientToken");
    if (!v) {
        printf("  Delta did not report a change in '%s'\n", g_property);
    } else if (cJSON_IsNull(v)) {
        printf("  Delta reports that '%s' was deleted. Resetting defaults...\n", g_property);
        change_value(cJSON_CreateString(SHADOW_VALUE_DEFAULT));
    } else {
        printf("  Delta reports that desired value is '%s'. Changing local value...\n", text_of(v, buf));
        if (cJSON_IsString(token))
            printf("  ClientToken is: %s\n", token->valuestring);
        change_value(cJSON_Duplicate(v, true));
    }
    cJSON_Delete(doc);
}

static void on_delta_subscribed(int status, uint8_t granted, void *user)
{
    (void)user;
    if (status != IOTC_OK || granted == 0x80)
        exit_sample("Failed to subscribe to Delta events: %s (granted 0x%02x)", iotc_strerror(status), granted);
}

static void on_failure(iotc_client *c, int err, uint8_t code, const char *reason, void *user)
{
    (void)c, (void)user;
    fprintf(stderr, "Connection attempt failed: %s (CONNACK %u): %s\n", iotc_strerror(err), code, reason ? reason : "");
}

static void on_interrupted(iotc_client *c, int err, const char *reason, void *user)
{
    (void)c, (void)user;
    printf("Connection interrupted: %s: %s\n", iotc_strerror(err), reason ? reason : "");
}

static void on_resumed(iotc_client *c, uint8_t code, bool session_present, void *user)
{
    (void)c, (void)user;
    printf("Connection resumed: return code %u, session present %d\n", code, session_present);
}

static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* One line of stdin without its line end; false at the end of input, or
 * once a callback has ended the sample.  stdin is unbuffered, so poll sees
 * every line that fgets has not read yet. */
static bool read_line(char *buf, int n)
{
    struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
    while (!atomic_load(&g_failed)) {
        int r = poll(&p, 1, 200);
        if (r < 0 && errno != EINTR)
            return false;
        if (r > 0) {
            if (!fgets(buf, n, stdin))
                return false;
            buf[strcspn(buf, "\r\n")] = '\0';
            return true;
        }
    }
    return false;
}

/* Hands a new value to the service thread (on_input). */
static void post_value(iotc_client *c, const char *value)
{
    size_t n = strlen(value) + 1;
    char *copy = malloc(n);
    atomic_fetch_add(&g_pending, 1);
    if (!copy || iotc_client_call_after(c, 0, on_input, memcpy(copy, value, n)) != IOTC_OK) {
        free(copy);
        atomic_fetch_sub(&g_pending, 1);
        exit_sample("cannot hand the value to the client");
    }
}

static int usage(FILE *f, const char *why)
{
    if (why)
        fprintf(f, "shadow: %s\n", why);
    fprintf(f, "usage: shadow --endpoint HOST --cert CERT --key KEY --thing_name NAME [--ca_file CA] [--port N]\n"
               "              [--client_id ID] [--shadow_property P] [--shadow_name S] [--is_ci X]\n"
               "  --shadow_property P  the property kept in sync (default color)\n"
               "  --shadow_name S      a named shadow (default: the classic one)\n"
               "  --is_ci X            no stdin: report Shadow_Value_0..4, one a second, then quit\n"
               "Then type a value and Enter to report it; quit, exit or end of input ends.\n");
    return why ? 2 : 0;
}

int main(int argc, char **argv)
{
    const char *endpoint = NULL, *cert = NULL, *key = NULL, *ca = NULL, *client_id = NULL, *thing = NULL;
    const char *shadow_name = NULL;
    long port = 0;
    bool ci = false;
    setvbuf(stdout, NULL, _IOLBF, 0); /* two threads print; keep the lines whole when piped */
    setvbuf(stdin, NULL, _IONBF, 0);  /* see read_line */

    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--help") || !strcmp(f, "-h"))
            return usage(stdout, NULL);
        if (i + 1 >= argc)
            return usage(stderr, "a flag without its value, or an unknown flag");
        const char *v = argv[++i];
        if (!strcmp(f, "--endpoint"))
            endpoint = v;
        else if (!strcmp(f, "--cert"))
            cert = v;
        else if (!strcmp(f, "--key"))
            key = v;
        else if (!strcmp(f, "--ca_file"))
            ca = v;
        else if (!strcmp(f, "--client_id"))
            client_id = v;
        else if (!strcmp(f, "--thing_name"))
            thing = v;
        else if (!strcmp(f, "--shadow_property"))
            g_property = v;
        else if (!strcmp(f, "--shadow_name"))
            shadow_name = v;
        else if (!strcmp(f, "--is_ci"))
            ci = true;
        else if (!strcmp(f, "--port"))
            port = strtol(v, NULL, 10);
        else
            return usage(stderr, f);
    }
    if (!endpoint || !thing)
        return usage(stderr, "--endpoint and --thing_name are required");
    if (!cert || !key)
        return usage(stderr, "--cert and --key are required");
    if (port < 0 || port > 65535 || !g_property[0])
        return usage(stderr, "--port out of range, or an empty --shadow_property");

    /* The SDK samples' default client id, which their documented policy allows (test-*). */
    char idbuf[48];
    if (!client_id) {
        snprintf(idbuf, sizeof idbuf, "test-%lx-%lx", (unsigned long)time(NULL), (unsigned long)getpid());
        client_id = idbuf;
    }

    iotc_builder *b = NULL;
    int rc = iotc_mtls_from_path(&b, endpoint, cert, key);
    if (rc == IOTC_OK && ca)
        rc = iotc_builder_set_ca_file(b, ca);
    if (rc == IOTC_OK)
        rc = iotc_builder_set_client_id(b, client_id);
    if (rc == IOTC_OK && port)
        rc = iotc_builder_set_port(b, (uint16_t)port);
    if (rc != IOTC_OK) {
        fprintf(stderr, "shadow: %s: %s\n", iotc_strerror(rc), b ? iotc_builder_why(b) : iotc_builder_new_why());
        iotc_builder_free(b);
        return 1;
    }
    iotc_callbacks cb = {.on_connection_failure = on_failure, .on_interrupted = on_interrupted,
                         .on_resumed = on_resumed};
    iotc_client *c = NULL;
    rc = iotc_client_new(b, &cb, NULL, &c);
    iotc_builder_free(b);
    if (rc != IOTC_OK) {
        fprintf(stderr, "shadow: %s: %s\n", iotc_strerror(rc), iotc_client_new_why());
        return 1;
    }
    if ((rc = iotc_shadow_new(c, thing, shadow_name, &g_shadow)) != IOTC_OK) {
        fprintf(stderr, "shadow: %s: %s\n", iotc_strerror(rc), iotc_shadow_why());
        iotc_client_free(c);
        return 2; /* a thing or shadow name AWS would not accept */
    }

    printf("Connecting to %s with client ID '%s'...\n", endpoint, client_id);
    if ((rc = iotc_client_connect_wait(c, WAIT_MS, NULL)) != IOTC_OK) {
        fprintf(stderr, "Connect failed: %s\n", iotc_strerror(rc));
        iotc_shadow_free(g_shadow);
        iotc_client_free(c); /* also stops the reconnect attempts */
        return 1;
    }
    printf("Connected!\n");

    /* The shadow client subscribes to get's and update's accepted/rejected
     * topics itself, before their first request.  The delta stream is
     * started first: the broker answers SUBSCRIBEs in order, so no delta
     * can slip between the get's answer and the stream going live. */
    printf("Subscribing to Delta events...\n");
    rc = iotc_shadow_on_delta(g_shadow, on_delta, NULL, on_delta_subscribed, NULL);
    if (rc == IOTC_OK) {
        printf("Requesting current shadow state...\n");
        atomic_fetch_add(&g_pending, 1);
        if ((rc = iotc_shadow_get(g_shadow, WAIT_MS, on_get, NULL)) != IOTC_OK)
            atomic_fetch_sub(&g_pending, 1);
    }
    if (rc != IOTC_OK)
        exit_sample("%s: %s", iotc_strerror(rc), iotc_shadow_why());

    if (ci) {
        for (int i = 0; i < 5 && !atomic_load(&g_failed); i++) {
            char v[32];
            snprintf(v, sizeof v, "Shadow_Value_%d", i);
            post_value(c, v);
            sleep_ms(1000);
        }
    } else {
        char line[512];
        while (read_line(line, (int)sizeof line) && strcmp(line, "quit") && strcmp(line, "exit"))
            post_value(c, line);
    }
    if (!atomic_load(&g_failed)) {
        printf("Exiting sample: %s\n", ci ? "CI has quit" : "User has quit");
        /* Let the lines handed over and the requests sent get their answers. */
        for (int waited = 0; atomic_load(&g_pending) > 0 && waited < (int)(WAIT_MS / 100) + 10; waited++)
            sleep_ms(100);
    }

    printf("Disconnecting...\n");
    atomic_store(&g_closing, true);
    iotc_shadow_free(g_shadow); /* requests still pending fail: exit_sample */
    iotc_client_disconnect_wait(c, WAIT_MS);
    iotc_client_free(c);
    cJSON_Delete(g_value);
    printf("Disconnected.\n");
    return atomic_load(&g_failed) ? 1 : 0;
}

/*
 * pubsub: the AWS IoT Device SDK's basicPubSub (v1) / pubsub (v2) sample on
 * libiotc.  Connects with mTLS (or, with -w, MQTT over WebSocket signed with
 * SigV4), subscribes to a topic, publishes a message there once a second
 * `--count` times, prints what comes back, and disconnects.
 *
 *   pubsub --endpoint HOST --cert CERT --key KEY --ca_file CA [--port N]
 *          [--client_id ID] [--topic T] [--message M] [--count N]
 *   pubsub -e HOST -c CERT -k KEY -r CA [-p N] [-id ID] [-t T] [-M M] [-w]
 *
 * Both flag styles are the seed samples' own, so their command lines work.
 * It uses the blocking helpers for brevity; a real device would rather use
 * the asynchronous calls and their completion callbacks.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "iotc/client.h"

#define WAIT_MS 10000u

static atomic_int g_received;

/* Runs on the library's service thread. */
static void on_message(iotc_client *c, const char *topic, size_t topic_len, const uint8_t *payload, size_t len,
                       uint8_t qos, bool retain, bool dup, void *user)
{
    (void)c, (void)qos, (void)retain, (void)dup, (void)user;
    printf("Received message from topic '%.*s': %.*s\n", (int)topic_len, topic, (int)len, (const char *)payload);
    atomic_fetch_add(&g_received, 1);
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

static int usage(const char *why)
{
    fprintf(stderr,
            "pubsub: %s\n"
            "usage: pubsub --endpoint HOST --cert CERT --key KEY [--ca_file CA] [--port N] [--client_id ID]\n"
            "              [--topic T] [--message M] [--count N] [--signing_region R]\n"
            "   or: pubsub -e HOST -c CERT -k KEY [-r CA] [-p N] [-id ID] [-t T] [-M M] [-w]\n",
            why);
    return 2;
}

/* The region of "xxx-ats.iot.REGION.amazonaws.com", for -w. */
static const char *region_of(const char *endpoint, char *buf, size_t n)
{
    const char *p = strstr(endpoint, ".iot.");
    const char *q = p ? strchr(p + 5, '.') : NULL;
    if (!q || (size_t)(q - (p + 5)) >= n)
        return NULL;
    snprintf(buf, n, "%.*s", (int)(q - (p + 5)), p + 5);
    return buf;
}

int main(int argc, char **argv)
{
    const char *endpoint = NULL, *cert = NULL, *key = NULL, *ca = NULL, *client_id = NULL, *region = NULL;
    const char *topic = "test/topic", *message = "Hello World!";
    long port = 0, count = 10;
    bool websocket = false;
    setvbuf(stdout, NULL, _IOLBF, 0); /* two threads print; keep the lines in order when piped */

    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-w") || !strcmp(f, "--websocket")) {
            websocket = true;
            continue;
        }
        if (i + 1 >= argc)
            return usage("a flag without its value, or an unknown flag");
        const char *v = argv[++i];
        if (!strcmp(f, "-e") || !strcmp(f, "--endpoint"))
            endpoint = v;
        else if (!strcmp(f, "-c") || !strcmp(f, "--cert"))
            cert = v;
        else if (!strcmp(f, "-k") || !strcmp(f, "--key"))
            key = v;
        else if (!strcmp(f, "-r") || !strcmp(f, "--ca_file") || !strcmp(f, "--root-ca"))
            ca = v;
        else if (!strcmp(f, "-id") || !strcmp(f, "--client_id") || !strcmp(f, "--clientId"))
            client_id = v;
        else if (!strcmp(f, "-t") || !strcmp(f, "--topic"))
            topic = v;
        else if (!strcmp(f, "-M") || !strcmp(f, "--message"))
            message = v;
        else if (!strcmp(f, "-p") || !strcmp(f, "--port"))
            port = strtol(v, NULL, 10);
        else if (!strcmp(f, "--count"))
            count = strtol(v, NULL, 10);
        else if (!strcmp(f, "--signing_region"))
            region = v;
        else
            return usage(f);
    }
    if (!endpoint)
        return usage("an endpoint is required (-e / --endpoint)");
    if (!websocket && (!cert || !key))
        return usage("a certificate and key are required (-c/-k, --cert/--key), or -w");
    if (port < 0 || port > 65535 || count < 0)
        return usage("port or count out of range");

    /* Connection: the same builder calls as the SDK v2's mqtt_connection_builder. */
    iotc_builder *b = NULL;
    char rbuf[64];
    int rc;
    if (websocket) {
        if (!region && !(region = region_of(endpoint, rbuf, sizeof rbuf)))
            return usage("-w: cannot tell the region from the endpoint; give --signing_region");
        rc = iotc_websockets_with_default_aws_signing(&b, endpoint, region, NULL); /* credentials from the environment */
    } else {
        rc = iotc_mtls_from_path(&b, endpoint, cert, key);
    }
    if (rc == IOTC_OK && ca)
        rc = iotc_builder_set_ca_file(b, ca);
    if (rc == IOTC_OK && client_id)
        rc = iotc_builder_set_client_id(b, client_id);
    if (rc == IOTC_OK && port)
        rc = iotc_builder_set_port(b, (uint16_t)port);
    if (rc != IOTC_OK) {
        fprintf(stderr, "pubsub: %s: %s\n", iotc_strerror(rc), b ? iotc_builder_why(b) : "");
        iotc_builder_free(b);
        return 1;
    }

    iotc_callbacks cb = {.on_connection_failure = on_failure, .on_interrupted = on_interrupted,
                         .on_resumed = on_resumed};
    iotc_client *c = NULL;
    rc = iotc_client_new(b, &cb, NULL, &c);
    iotc_builder_free(b); /* the client keeps its own copy */
    if (rc != IOTC_OK) {
        fprintf(stderr, "pubsub: %s: %s\n", iotc_strerror(rc), iotc_client_new_why());
        return 1;
    }

    printf("Connecting to %s with client ID '%s'...\n", endpoint, client_id ? client_id : "(generated)");
    bool session_present = false;
    if ((rc = iotc_client_connect_wait(c, WAIT_MS, &session_present)) != IOTC_OK) {
        fprintf(stderr, "Connect failed: %s\n", iotc_strerror(rc));
        iotc_client_free(c); /* also stops the reconnect attempts */
        return 1;
    }
    printf("Connected!\n");

    printf("Subscribing to topic '%s'...\n", topic);
    uint8_t granted = 0;
    rc = iotc_subscribe_wait(c, topic, 1, on_message, NULL, WAIT_MS, &granted);
    if (rc != IOTC_OK || granted == 0x80) {
        fprintf(stderr, "Subscribe failed: %s (granted 0x%02x)\n", iotc_strerror(rc), granted);
        iotc_client_free(c);
        return 1;
    }
    printf("Subscribed with QoS %u\n", granted);

    printf("Sending %ld message(s)\n", count);
    for (long i = 1; i <= count; i++) {
        char payload[512];
        snprintf(payload, sizeof payload, "%s [%ld]", message, i);
        printf("Publishing message to topic '%s': %s\n", topic, payload);
        if ((rc = iotc_publish_wait(c, topic, payload, strlen(payload), 1, false, WAIT_MS)) != IOTC_OK)
            fprintf(stderr, "Publish failed: %s\n", iotc_strerror(rc));
        sleep_ms(1000);
    }

    /* Every message should come back through our own subscription. */
    for (int waited = 0; atomic_load(&g_received) < count && waited < 100; waited++)
        sleep_ms(100);
    printf("%d message(s) received.\n", atomic_load(&g_received));

    printf("Disconnecting...\n");
    iotc_client_disconnect_wait(c, WAIT_MS);
    iotc_client_free(c);
    printf("Disconnected!\n");
    return atomic_load(&g_received) >= count ? 0 : 1;
}

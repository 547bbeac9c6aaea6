/*
 * iotc-mqttdump: prints MQTT packets in a form a person reads.
 *
 *   iotc-mqttdump [-V 4|5] [-r] [FILE...]
 *
 * Input is either raw wire bytes (-r, e.g. a TCP stream saved by a proxy) or
 * the text format of client/tests/fixtures (lines "V 4|5", "C <hex>",
 * "S <hex>", "# comment").  Each packet goes through the streaming decoder;
 * a packet the codec refuses is printed with the error, its offset and the
 * rule, and the exit status is 1.  Reads standard input without FILE.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iotc/mqtt.h"

static void print_bytes(const char *label, iotc_mqtt_bytes b)
{
    printf("%s%s=\"", *label ? " " : "", label);
    size_t n = b.len > 64 ? 64 : b.len;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = b.data[i];
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\')
            putchar(c);
        else
            printf("\\x%02x", c);
    }
    printf("\"%s", b.len > n ? "..." : "");
    if (b.len > n)
        printf("(%zu bytes)", b.len);
}

static void print_props(const iotc_mqtt_props *p, const char *label)
{
    if (!p->present && !p->user_count && !p->sub_id_count)
        return;
    printf(" %s{", label);
    iotc_mqtt_props q = *p;
    for (unsigned id = 1; id < 64; id++) {
        if (!(p->present & IOTC_PROP_BIT(id)))
            continue;
        printf(" [%s]", iotc_mqtt_prop_name(id));
        switch (id) {
        case IOTC_PROP_PAYLOAD_FORMAT_INDICATOR: printf("=%u", p->payload_format_indicator); break;
        case IOTC_PROP_REQUEST_PROBLEM_INFORMATION: printf("=%u", p->request_problem_information); break;
        case IOTC_PROP_REQUEST_RESPONSE_INFORMATION: printf("=%u", p->request_response_information); break;
        case IOTC_PROP_MAXIMUM_QOS: printf("=%u", p->maximum_qos); break;
        case IOTC_PROP_RETAIN_AVAILABLE: printf("=%u", p->retain_available); break;
        case IOTC_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE: printf("=%u", p->wildcard_subscription_available); break;
        case IOTC_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE: printf("=%u", p->subscription_identifier_available); break;
        case IOTC_PROP_SHARED_SUBSCRIPTION_AVAILABLE: printf("=%u", p->shared_subscription_available); break;
        case IOTC_PROP_SERVER_KEEP_ALIVE: printf("=%u", p->server_keep_alive); break;
        case IOTC_PROP_RECEIVE_MAXIMUM: printf("=%u", p->receive_maximum); break;
        case IOTC_PROP_TOPIC_ALIAS_MAXIMUM: printf("=%u", p->topic_alias_maximum); break;
        case IOTC_PROP_TOPIC_ALIAS: printf("=%u", p->topic_alias); break;
        case IOTC_PROP_MESSAGE_EXPIRY_INTERVAL: printf("=%u", p->message_expiry_interval); break;
        case IOTC_PROP_SESSION_EXPIRY_INTERVAL: printf("=%u", p->session_expiry_interval); break;
        case IOTC_PROP_WILL_DELAY_INTERVAL: printf("=%u", p->will_delay_interval); break;
        case IOTC_PROP_MAXIMUM_PACKET_SIZE: printf("=%u", p->maximum_packet_size); break;
        case IOTC_PROP_CONTENT_TYPE: print_bytes("", p->content_type); break;
        case IOTC_PROP_RESPONSE_TOPIC: print_bytes("", p->response_topic); break;
        case IOTC_PROP_CORRELATION_DATA: print_bytes("", p->correlation_data); break;
        case IOTC_PROP_ASSIGNED_CLIENT_IDENTIFIER: print_bytes("", p->assigned_client_identifier); break;
        case IOTC_PROP_AUTHENTICATION_METHOD: print_bytes("", p->authentication_method); break;
        case IOTC_PROP_AUTHENTICATION_DATA: print_bytes("", p->authentication_data); break;
        case IOTC_PROP_RESPONSE_INFORMATION: print_bytes("", p->response_information); break;
        case IOTC_PROP_SERVER_REFERENCE: print_bytes("", p->server_reference); break;
        case IOTC_PROP_REASON_STRING: print_bytes("", p->reason_string); break;
        default: break;
        }
    }
    size_t pos = 0;
    uint32_t sid;
    while (iotc_mqtt_sub_id_next(&q, &pos, &sid))
        printf(" [Subscription Identifier]=%u", sid);
    pos = 0;
    iotc_mqtt_user_prop up;
    while (iotc_mqtt_user_prop_next(&q, &pos, &up)) {
        printf(" [User Property]");
        print_bytes("k", up.key);
        print_bytes("v", up.value);
    }
    printf(" }");
}

static void print_packet(const iotc_mqtt_packet *p, iotc_mqtt_version v)
{
    printf("%s", iotc_mqtt_type_name(p->type));
    switch (p->type) {
    case IOTC_MQTT_CONNECT: {
        const iotc_mqtt_connect *c = &p->u.connect;
        printf(" level=%d clean=%d keepalive=%u", c->version, c->clean_start, c->keep_alive);
        print_bytes("client_id", c->client_id);
        if (c->will) {
            printf(" will_qos=%u will_retain=%d", c->will_qos, c->will_retain);
            print_bytes("will_topic", c->will_topic);
            print_bytes("will_payload", c->will_payload);
            print_props(&c->will_props, "will_props");
        }
        if (c->has_username)
            print_bytes("username", c->username);
        if (c->has_password)
            printf(" password=(%zu bytes)", c->password.len);
        print_props(&c->props, "props");
        break;
    }
    case IOTC_MQTT_CONNACK:
        printf(" session_present=%d reason=0x%02x (%s)", p->u.connack.session_present, p->u.connack.reason,
               iotc_mqtt_reason_name(p->type, v, p->u.connack.reason));
        print_props(&p->u.connack.props, "props");
        break;
    case IOTC_MQTT_PUBLISH: {
        const iotc_mqtt_publish *pb = &p->u.publish;
        printf(" qos=%u dup=%d retain=%d", pb->qos, pb->dup, pb->retain);
        if (pb->qos)
            printf(" id=%u", pb->packet_id);
        print_bytes("topic", pb->topic);
        print_bytes("payload", pb->payload);
        print_props(&pb->props, "props");
        break;
    }
    case IOTC_MQTT_PUBACK:
    case IOTC_MQTT_PUBREC:
    case IOTC_MQTT_PUBREL:
    case IOTC_MQTT_PUBCOMP:
        printf(" id=%u", p->u.ack.packet_id);
        if (v == IOTC_MQTT_V5)
            printf(" reason=0x%02x (%s)", p->u.ack.reason, iotc_mqtt_reason_name(p->type, v, p->u.ack.reason));
        print_props(&p->u.ack.props, "props");
        break;
    case IOTC_MQTT_SUBSCRIBE: {
        printf(" id=%u", p->u.subscribe.packet_id);
        size_t pos = 0;
        iotc_mqtt_sub s;
        while (iotc_mqtt_sub_next(&p->u.subscribe, &pos, &s)) {
            print_bytes("filter", s.filter);
            printf(" qos=%u", s.qos);
            if (v == IOTC_MQTT_V5)
                printf(" nl=%d rap=%d rh=%u", s.no_local, s.retain_as_published, s.retain_handling);
        }
        print_props(&p->u.subscribe.props, "props");
        break;
    }
    case IOTC_MQTT_UNSUBSCRIBE: {
        printf(" id=%u", p->u.unsubscribe.packet_id);
        size_t pos = 0;
        iotc_mqtt_bytes f;
        while (iotc_mqtt_unsub_next(&p->u.unsubscribe, &pos, &f))
            print_bytes("filter", f);
        print_props(&p->u.unsubscribe.props, "props");
        break;
    }
    case IOTC_MQTT_SUBACK:
    case IOTC_MQTT_UNSUBACK:
        printf(" id=%u codes=[", p->u.suback.packet_id);
        for (size_t i = 0; i < p->u.suback.count; i++)
            printf("%s0x%02x", i ? " " : "", p->u.suback.codes[i]);
        printf("]");
        print_props(&p->u.suback.props, "props");
        break;
    case IOTC_MQTT_DISCONNECT:
    case IOTC_MQTT_AUTH:
        if (v == IOTC_MQTT_V5)
            printf(" reason=0x%02x (%s)", p->u.disconnect.reason,
                   iotc_mqtt_reason_name(p->type, v, p->u.disconnect.reason));
        print_props(&p->u.disconnect.props, "props");
        break;
    default: break;
    }
    printf("\n");
}

/* Feeds one direction's bytes; prints what comes out.  Returns 0 if all decoded. */
static int dump(iotc_mqtt_reader *r, const char *dir, const uint8_t *data, size_t len)
{
    int rc = 0;
    while (len > 0) {
        size_t used;
        iotc_mqtt_packet p;
        iotc_mqtt_error e;
        iotc_mqtt_status st = iotc_mqtt_reader_feed(r, data, len, &used, &p, &e);
        data += used;
        len -= used;
        if (st == IOTC_MQTT_OK) {
            printf("%s ", dir);
            print_packet(&p, p.type == IOTC_MQTT_CONNECT ? p.u.connect.version : r->version);
            if (p.type == IOTC_MQTT_CONNECT)
                iotc_mqtt_reader_set_version(r, p.u.connect.version);
        } else if (st != IOTC_MQTT_NEED_MORE) {
            printf("%s ERROR %s (reason 0x%02x %s) at offset %zu: %s\n", dir, iotc_mqtt_status_str(st), e.reason,
                   iotc_mqtt_reason_name(IOTC_MQTT_DISCONNECT, IOTC_MQTT_V5, e.reason), e.offset, e.what);
            iotc_mqtt_reader_reset(r);
            return 1;
        }
    }
    return rc;
}

static int hexval(int c)
{
    return isdigit(c) ? c - '0' : (tolower(c) >= 'a' && tolower(c) <= 'f') ? tolower(c) - 'a' + 10 : -1;
}

static int dump_text(FILE *f, iotc_mqtt_version v)
{
    iotc_mqtt_reader rc, rs; /* client-to-broker, broker-to-client */
    iotc_mqtt_reader_init(&rc, v, 0, NULL, 0);
    iotc_mqtt_reader_init(&rs, v, 0, NULL, 0);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t n;
    int rc_all = 0;
    uint8_t *bin = NULL;
    size_t bcap = 0;
    while ((n = getline(&line, &lcap, f)) > 0) {
        if (line[0] == 'V' && line[1] == ' ') {
            v = atoi(line + 2) == 5 ? IOTC_MQTT_V5 : IOTC_MQTT_V311;
            iotc_mqtt_reader_set_version(&rc, v);
            iotc_mqtt_reader_set_version(&rs, v);
            continue;
        }
        if (line[0] == '#' || line[0] == '\n' || line[0] == '\r')
            continue;
        if ((line[0] != 'C' && line[0] != 'S') || line[1] != ' ') {
            fprintf(stderr, "iotc-mqttdump: line not understood (want \"V 4|5\", \"C <hex>\", \"S <hex>\" or \"# ...\"): %s",
                    line);
            rc_all |= 2;
            continue;
        }
        if ((size_t)n / 2 > bcap) {
            bcap = (size_t)n / 2;
            uint8_t *nb = realloc(bin, bcap);
            if (!nb) {
                fprintf(stderr, "iotc-mqttdump: out of memory\n");
                rc_all = 2;
                break;
            }
            bin = nb;
        }
        size_t len = 0;
        char *q = line + 2;
        for (; hexval(q[0]) >= 0 && hexval(q[1]) >= 0; q += 2)
            bin[len++] = (uint8_t)(hexval(q[0]) << 4 | hexval(q[1]));
        if (*q && *q != '\n' && *q != '\r') {
            fprintf(stderr, "iotc-mqttdump: bad hex at column %zu: %s", (size_t)(q - line) + 1, line);
            rc_all |= 2;
            continue;
        }
        rc_all |= dump(line[0] == 'C' ? &rc : &rs, line[0] == 'C' ? "C" : "S", bin, len);
    }
    free(line);
    free(bin);
    iotc_mqtt_reader_free(&rc);
    iotc_mqtt_reader_free(&rs);
    return rc_all;
}

static int dump_raw(FILE *f, iotc_mqtt_version v)
{
    iotc_mqtt_reader r;
    iotc_mqtt_reader_init(&r, v, 0, NULL, 0);
    uint8_t buf[16384];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(buf, 1, sizeof buf, f)) > 0)
        rc = dump(&r, "-", buf, n);
    if (!rc && r.hdr_len)
        printf("- incomplete packet at the end (%zu of %zu bytes)\n", r.have ? r.have : r.hdr_len, r.total);
    iotc_mqtt_reader_free(&r);
    return rc;
}

int main(int argc, char **argv)
{
    iotc_mqtt_version v = IOTC_MQTT_V311;
    int raw = 0, i = 1, rc = 0;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        if (!strcmp(argv[i], "-r")) {
            raw = 1;
        } else if (!strcmp(argv[i], "-V") && i + 1 < argc) {
            v = atoi(argv[++i]) == 5 ? IOTC_MQTT_V5 : IOTC_MQTT_V311;
        } else {
            fprintf(stderr, "usage: iotc-mqttdump [-V 4|5] [-r] [FILE...]\n");
            return 2;
        }
    }
    if (i == argc)
        return raw ? dump_raw(stdin, v) : dump_text(stdin, v);
    for (; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            perror(argv[i]);
            rc = 2;
            continue;
        }
        if (argc - i > 1 || i > 1)
            printf("== %s\n", argv[i]);
        rc |= raw ? dump_raw(f, v) : dump_text(f, v);
        fclose(f);
    }
    return rc;
}

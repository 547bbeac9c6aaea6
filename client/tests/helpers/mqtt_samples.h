/*
 * Valid control packets, written byte by byte from the MQTT 3.1.1 (OASIS 2014)
 * and MQTT 5.0 (OASIS 2019) specifications.  Offsets in the comments count
 * from the packet's first byte.  Shared by the packet, error and stream tests.
 */
#ifndef MQTT_SAMPLES_H
#define MQTT_SAMPLES_H

#include <stddef.h>
#include <stdint.h>

#include "iotc/mqtt.h"

/* ---- CONNECT (3.1) --------------------------------------------------------- */

/* 3.1.1: clean session, keep alive 60, client id "a". */
static const uint8_t S_V4_CONNECT_MIN[] = {
    0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x01, 'a'};

/* 3.1.1: flags 0xEE = user name, password, will retain, will QoS 1, will,
 * clean session; keep alive 10; "cid", will "w/t" = "bye", user "user",
 * password 00 FF (binary). */
static const uint8_t S_V4_CONNECT_FULL[] = {
    0x10, 0x23, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0xEE, 0x00, 0x0A,
    0x00, 0x03, 'c', 'i', 'd',
    0x00, 0x03, 'w', '/', 't',
    0x00, 0x03, 'b', 'y', 'e',
    0x00, 0x04, 'u', 's', 'e', 'r',
    0x00, 0x02, 0x00, 0xFF};

/* 3.1.1: user name only, Clean Session 0, keep alive 65535, id "id", user "bob". */
static const uint8_t S_V4_CONNECT_USER[] = {
    0x10, 0x13, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x80, 0xFF, 0xFF,
    0x00, 0x02, 'i', 'd',
    0x00, 0x03, 'b', 'o', 'b'};

/* 3.1.1: will QoS 0 without user name; empty client id; will "t", empty message. */
static const uint8_t S_V4_CONNECT_WILL[] = {
    0x10, 0x11, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x06, 0x00, 0x00,
    0x00, 0x00,
    0x00, 0x01, 't',
    0x00, 0x00};

/* 5.0: clean start, keep alive 60, no properties, client id "a". */
static const uint8_t S_V5_CONNECT_MIN[] = {
    0x10, 0x0E, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3C, 0x00, 0x00, 0x01, 'a'};

/* 5.0: every CONNECT property and every Will property.  Flags 0xF6 = user
 * name, password, will retain, will QoS 2, will, clean start.  Properties at
 * 13..58 (46 bytes), Will properties at 64..100 (37 bytes). */
static const uint8_t S_V5_CONNECT_FULL[] = {
    0x10, 0x71,                                     /* remaining 113 */
    0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0xF6, 0x00, 0x1E,
    0x2E,                                           /* property length 46 */
    0x11, 0x00, 0x00, 0x0E, 0x10,                   /* session expiry 3600 */
    0x21, 0x00, 0x14,                               /* receive maximum 20 */
    0x27, 0x00, 0x00, 0x40, 0x00,                   /* maximum packet size 16384 */
    0x22, 0x00, 0x08,                               /* topic alias maximum 8 */
    0x19, 0x01,                                     /* request response information 1 */
    0x17, 0x00,                                     /* request problem information 0 */
    0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v',         /* user k=v */
    0x26, 0x00, 0x01, 'k', 0x00, 0x02, 'v', '2',    /* user k=v2 (same key again) */
    0x15, 0x00, 0x03, 'x', 'y', 'z',                /* authentication method */
    0x16, 0x00, 0x02, 0x01, 0x02,                   /* authentication data */
    0x00, 0x02, 'c', '1',                           /* client id at 59 */
    0x25,                                           /* will property length 37 at 63 */
    0x18, 0x00, 0x00, 0x00, 0x05,                   /* will delay 5 */
    0x01, 0x01,                                     /* payload format indicator 1 */
    0x02, 0x00, 0x00, 0x00, 0x3C,                   /* message expiry 60 */
    0x03, 0x00, 0x04, 't', 'e', 'x', 't',           /* content type */
    0x08, 0x00, 0x03, 'r', '/', 't',                /* response topic */
    0x09, 0x00, 0x02, 0xAB, 0xCD,                   /* correlation data */
    0x26, 0x00, 0x01, 'a', 0x00, 0x01, 'b',         /* user a=b */
    0x00, 0x01, 'w',                                /* will topic at 101 */
    0x00, 0x03, 'b', 'y', 'e',                      /* will payload */
    0x00, 0x01, 'u',                                /* user name */
    0x00, 0x01, 'p'};                               /* password */

/* 5.0: a password without a user name (allowed since 5.0, §3.1.2.9). */
static const uint8_t S_V5_CONNECT_PASS_ONLY[] = {
    0x10, 0x12, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x42, 0x00, 0x00, 0x00,
    0x00, 0x01, 'a',
    0x00, 0x02, 'p', 'w'};

/* ---- CONNACK (3.2) --------------------------------------------------------- */

static const uint8_t S_V4_CONNACK[] = {0x20, 0x02, 0x01, 0x00};       /* session present */
static const uint8_t S_V4_CONNACK_REFUSED[] = {0x20, 0x02, 0x00, 0x05}; /* not authorized */
static const uint8_t S_V5_CONNACK_MIN[] = {0x20, 0x03, 0x00, 0x00, 0x00};
static const uint8_t S_V5_CONNACK_REFUSED[] = {0x20, 0x03, 0x00, 0x87, 0x00};

/* 5.0: every CONNACK property; block at 5..71 (67 bytes). */
static const uint8_t S_V5_CONNACK_FULL[] = {
    0x20, 0x46, 0x01, 0x00, 0x43,
    0x11, 0x00, 0x00, 0x00, 0x78,                   /* session expiry 120 */
    0x21, 0x00, 0x0A,                               /* receive maximum 10 */
    0x24, 0x01,                                     /* maximum QoS 1 */
    0x25, 0x00,                                     /* retain available 0 */
    0x27, 0x00, 0x01, 0x00, 0x00,                   /* maximum packet size 65536 */
    0x12, 0x00, 0x03, 'i', 'd', '1',                /* assigned client id */
    0x22, 0x00, 0x08,                               /* topic alias maximum 8 */
    0x1F, 0x00, 0x02, 'o', 'k',                     /* reason string */
    0x26, 0x00, 0x01, 'x', 0x00, 0x01, 'y',         /* user x=y */
    0x28, 0x01,                                     /* wildcard subscription available */
    0x29, 0x00,                                     /* subscription identifiers available */
    0x2A, 0x01,                                     /* shared subscription available */
    0x13, 0x00, 0x1E,                               /* server keep alive 30 */
    0x1A, 0x00, 0x03, 'r', '/', 'i',                /* response information */
    0x1C, 0x00, 0x03, 's', 'r', 'v',                /* server reference */
    0x15, 0x00, 0x01, 'm',                          /* authentication method */
    0x16, 0x00, 0x01, 0x07};                        /* authentication data */

/* ---- PUBLISH (3.3) --------------------------------------------------------- */

static const uint8_t S_V4_PUBLISH_QOS0[] = {
    0x30, 0x0A, 0x00, 0x03, 'a', '/', 'b', 'h', 'e', 'l', 'l', 'o'};
/* DUP, QoS 1, RETAIN; packet id 0x1234; payload "hi". */
static const uint8_t S_V4_PUBLISH_QOS1[] = {
    0x3B, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x12, 0x34, 'h', 'i'};
/* QoS 2, packet id 65535, empty payload. */
static const uint8_t S_V4_PUBLISH_QOS2[] = {0x34, 0x07, 0x00, 0x03, 'a', '/', 'b', 0xFF, 0xFF};
static const uint8_t S_V5_PUBLISH_MIN[] = {0x30, 0x06, 0x00, 0x03, 'a', '/', 'b', 0x00};

/* 5.0: QoS 1, RETAIN, every PUBLISH property; user properties with a repeated
 * key; three subscription identifiers (1, 128, 268435455).  Block at 10..79. */
static const uint8_t S_V5_PUBLISH_FULL[] = {
    0x33, 0x50, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x07, 0x46,
    0x01, 0x01,                                     /* payload format indicator 1 */
    0x02, 0x00, 0x00, 0x00, 0x0A,                   /* message expiry 10 */
    0x23, 0x00, 0x05,                               /* topic alias 5 */
    0x08, 0x00, 0x03, 'r', '/', '1',                /* response topic */
    0x09, 0x00, 0x03, 0x01, 0x02, 0x03,             /* correlation data */
    0x26, 0x00, 0x02, 'k', '1', 0x00, 0x02, 'v', '1',
    0x26, 0x00, 0x02, 'k', '2', 0x00, 0x00,
    0x26, 0x00, 0x02, 'k', '1', 0x00, 0x02, 'v', '3',
    0x0B, 0x01,                                     /* subscription id 1 */
    0x0B, 0x80, 0x01,                               /* subscription id 128 */
    0x0B, 0xFF, 0xFF, 0xFF, 0x7F,                   /* subscription id 268435455 */
    0x03, 0x00, 0x0A, 't', 'e', 'x', 't', '/', 'p', 'l', 'a', 'i', 'n',
    'p', 'l'};

/* 5.0: empty topic name with a Topic Alias (§3.3.2.3.4). */
static const uint8_t S_V5_PUBLISH_ALIAS[] = {0x30, 0x07, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01, 'x'};

/* ---- PUBACK, PUBREC, PUBREL, PUBCOMP (3.4-3.7) ------------------------------ */

static const uint8_t S_V4_PUBACK[] = {0x40, 0x02, 0x12, 0x34};
static const uint8_t S_V4_PUBREC[] = {0x50, 0x02, 0x12, 0x34};
static const uint8_t S_V4_PUBREL[] = {0x62, 0x02, 0x12, 0x34};
static const uint8_t S_V4_PUBCOMP[] = {0x70, 0x02, 0x12, 0x34};

/* 5.0 short forms: remaining length 2 (reason 0), 3 (no property length). */
static const uint8_t S_V5_PUBACK_SHORT2[] = {0x40, 0x02, 0x12, 0x34};
static const uint8_t S_V5_PUBACK_SHORT3[] = {0x40, 0x03, 0x12, 0x34, 0x10};
static const uint8_t S_V5_PUBACK_NOPROPS[] = {0x40, 0x04, 0x12, 0x34, 0x10, 0x00};
static const uint8_t S_V5_PUBREL_SHORT3[] = {0x62, 0x03, 0x12, 0x34, 0x92};

/* 5.0 with reason string and a user property; block at 6..18. */
static const uint8_t S_V5_PUBACK_FULL[] = {
    0x40, 0x11, 0x12, 0x34, 0x87, 0x0D, 0x1F, 0x00, 0x03, 'b', 'a', 'd', 0x26, 0x00, 0x01, 'a', 0x00, 0x01, 'b'};
static const uint8_t S_V5_PUBREC_FULL[] = {
    0x50, 0x11, 0x12, 0x34, 0x80, 0x0D, 0x1F, 0x00, 0x03, 'b', 'a', 'd', 0x26, 0x00, 0x01, 'a', 0x00, 0x01, 'b'};
static const uint8_t S_V5_PUBREL_FULL[] = {
    0x62, 0x11, 0x12, 0x34, 0x92, 0x0D, 0x1F, 0x00, 0x03, 'b', 'a', 'd', 0x26, 0x00, 0x01, 'a', 0x00, 0x01, 'b'};
static const uint8_t S_V5_PUBCOMP_FULL[] = {
    0x70, 0x11, 0x12, 0x34, 0x92, 0x0D, 0x1F, 0x00, 0x03, 'b', 'a', 'd', 0x26, 0x00, 0x01, 'a', 0x00, 0x01, 'b'};

/* ---- SUBSCRIBE, SUBACK (3.8, 3.9) -------------------------------------------- */

/* 3.1.1: packet id 10; "a/b" QoS 1, "#" QoS 2. */
static const uint8_t S_V4_SUBSCRIBE[] = {
    0x82, 0x0C, 0x00, 0x0A, 0x00, 0x03, 'a', '/', 'b', 0x01, 0x00, 0x01, '#', 0x02};

/* 5.0: subscription id 5 and a user property (block at 5..13); then
 * "a/+" options 0x2D (QoS 1, No Local, Retain As Published, Retain Handling 2),
 * "$share/g/t" options 0x12 (QoS 2, Retain Handling 1), "x" options 0x00. */
static const uint8_t S_V5_SUBSCRIBE[] = {
    0x82, 0x23, 0x00, 0x0A, 0x09, 0x0B, 0x05, 0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v',
    0x00, 0x03, 'a', '/', '+', 0x2D,
    0x00, 0x0A, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 't', 0x12,
    0x00, 0x01, 'x', 0x00};

static const uint8_t S_V4_SUBACK[] = {0x90, 0x05, 0x00, 0x0A, 0x00, 0x02, 0x80};
/* 5.0: reason string "r", then every SUBACK reason code. */
static const uint8_t S_V5_SUBACK[] = {
    0x90, 0x13, 0x00, 0x0A, 0x04, 0x1F, 0x00, 0x01, 'r',
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2};

/* ---- UNSUBSCRIBE, UNSUBACK (3.10, 3.11) ---------------------------------------- */

static const uint8_t S_V4_UNSUBSCRIBE[] = {0xA2, 0x0A, 0x00, 0x0B, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x01, '#'};
static const uint8_t S_V5_UNSUBSCRIBE[] = {
    0xA2, 0x12, 0x00, 0x0B, 0x07, 0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v',
    0x00, 0x03, 'a', '/', 'b', 0x00, 0x01, '#'};
static const uint8_t S_V4_UNSUBACK[] = {0xB0, 0x02, 0x00, 0x0B};
/* 5.0: every UNSUBACK reason code. */
static const uint8_t S_V5_UNSUBACK[] = {0xB0, 0x0A, 0x00, 0x0B, 0x00, 0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91};

/* ---- PINGREQ, PINGRESP, DISCONNECT, AUTH (3.12-3.15) --------------------------- */

static const uint8_t S_PINGREQ[] = {0xC0, 0x00};
static const uint8_t S_PINGRESP[] = {0xD0, 0x00};
static const uint8_t S_DISCONNECT_EMPTY[] = {0xE0, 0x00};
static const uint8_t S_V5_DISCONNECT_REASON[] = {0xE0, 0x01, 0x04}; /* with Will */
/* 5.0: Server shutting down, with session expiry, reason string, server
 * reference and a user property; block at 4..26. */
static const uint8_t S_V5_DISCONNECT_FULL[] = {
    0xE0, 0x19, 0x8B, 0x17,
    0x11, 0x00, 0x00, 0x00, 0x00,
    0x1F, 0x00, 0x04, 'b', 'y', 'e', '!',
    0x1C, 0x00, 0x01, 's',
    0x26, 0x00, 0x01, 'a', 0x00, 0x01, 'b'};
static const uint8_t S_V5_AUTH_EMPTY[] = {0xF0, 0x00};
/* 5.0: Continue authentication; block at 4..28. */
static const uint8_t S_V5_AUTH_FULL[] = {
    0xF0, 0x1B, 0x18, 0x19,
    0x15, 0x00, 0x05, 'S', 'C', 'R', 'A', 'M',
    0x16, 0x00, 0x03, 0x01, 0x02, 0x03,
    0x1F, 0x00, 0x01, 'c',
    0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v'};

/* ---- the catalogue ------------------------------------------------------------ */

typedef struct {
    const char *name;
    iotc_mqtt_version version;
    const uint8_t *bytes;
    size_t len;
} tu_sample;

#define SAMPLE(v, a) { #a, v, a, sizeof(a) }
static const tu_sample tu_samples[] = {
    SAMPLE(IOTC_MQTT_V311, S_V4_CONNECT_MIN),
    SAMPLE(IOTC_MQTT_V311, S_V4_CONNECT_FULL),
    SAMPLE(IOTC_MQTT_V311, S_V4_CONNECT_USER),
    SAMPLE(IOTC_MQTT_V311, S_V4_CONNECT_WILL),
    SAMPLE(IOTC_MQTT_V5, S_V5_CONNECT_MIN),
    SAMPLE(IOTC_MQTT_V5, S_V5_CONNECT_FULL),
    SAMPLE(IOTC_MQTT_V5, S_V5_CONNECT_PASS_ONLY),
    SAMPLE(IOTC_MQTT_V311, S_V4_CONNACK),
    SAMPLE(IOTC_MQTT_V311, S_V4_CONNACK_REFUSED),
    SAMPLE(IOTC_MQTT_V5, S_V5_CONNACK_MIN),
    SAMPLE(IOTC_MQTT_V5, S_V5_CONNACK_REFUSED),
    SAMPLE(IOTC_MQTT_V5, S_V5_CONNACK_FULL),
    SAMPLE(IOTC_MQTT_V311, S_V4_PUBLISH_QOS0),
    SAMPLE(IOTC_MQTT_V311, S_V4_PUBLISH_QOS1),
    SAMPLE(IOTC_MQTT_V311, S_V4_PUBLISH_QOS2),
    SAMPLE(IOTC_MQTT_V5, S_V5_PUBLISH_MIN),
    SAMPLE(IOTC_MQTT_V5, S_V5_PUBLISH_FULL),
    SAMPLE(IOTC_MQTT_V5, S_V5_PUBLISH_ALIAS),
    SAMPLE(IOTC_MQTT_V311, S_V4_PUBACK),
    SAMPLE(IOTC_MQTT_V311, S_V4_PUBREC),
    SAMPLE(IOTC_MQTT_V311, S_V4_PUBREL),
    SAMPLE(IOTC_MQTT_V311, S_V4_PUBCOMP),
    SAMPLE(IOTC_MQTT_V5, S_V5_PUBACK_SHORT2),
    SAMPLE(IOTC_MQTT_V5, S_V5_PUBACK_SHORT3),
    SAMPLE(IOTC_MQTT_V5, S_V5_PUBACK_NOPROPS),
    SAMPLE(IOTC_MQTT_V5, S_V5_PUBREL_SHORT3),
    SAMPLE(IOTC_MQTT_V5, S_V5_PUBACK_FULL),
    SAMPLE(IOTC_MQTT_V5, S_V5_PUBREC_FULL),
    SAMPLE(IOTC_MQTT_V5, S_V5_PUBREL_FULL),
    SAMPLE(IOTC_MQTT_V5, S_V5_PUBCOMP_FULL),
    SAMPLE(IOTC_MQTT_V311, S_V4_SUBSCRIBE),
    SAMPLE(IOTC_MQTT_V5, S_V5_SUBSCRIBE),
    SAMPLE(IOTC_MQTT_V311, S_V4_SUBACK),
    SAMPLE(IOTC_MQTT_V5, S_V5_SUBACK),
    SAMPLE(IOTC_MQTT_V311, S_V4_UNSUBSCRIBE),
    SAMPLE(IOTC_MQTT_V5, S_V5_UNSUBSCRIBE),
    SAMPLE(IOTC_MQTT_V311, S_V4_UNSUBACK),
    SAMPLE(IOTC_MQTT_V5, S_V5_UNSUBACK),
    SAMPLE(IOTC_MQTT_V311, S_PINGREQ),
    SAMPLE(IOTC_MQTT_V5, S_PINGREQ),
    SAMPLE(IOTC_MQTT_V311, S_PINGRESP),
    SAMPLE(IOTC_MQTT_V5, S_PINGRESP),
    SAMPLE(IOTC_MQTT_V311, S_DISCONNECT_EMPTY),
    SAMPLE(IOTC_MQTT_V5, S_DISCONNECT_EMPTY),
    SAMPLE(IOTC_MQTT_V5, S_V5_DISCONNECT_REASON),
    SAMPLE(IOTC_MQTT_V5, S_V5_DISCONNECT_FULL),
    SAMPLE(IOTC_MQTT_V5, S_V5_AUTH_EMPTY),
    SAMPLE(IOTC_MQTT_V5, S_V5_AUTH_FULL),
};
#undef SAMPLE
#define TU_NSAMPLES (sizeof tu_samples / sizeof tu_samples[0])

#endif

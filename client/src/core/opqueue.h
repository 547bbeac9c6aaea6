/*
 * core/opqueue.h: the offline request queue.
 *
 * Owns: the order and the admission of operations (publishes QoS 0 and 1,
 * subscribes, unsubscribes) made while the client cannot send them: a FIFO
 * with a size limit (-1 unbounded, 0 off, N) and a drop policy, and its
 * counters.  It does not own the operations: they are the engine's structs,
 * each embedding an `iotc_opq_item`, so the queue never allocates and never
 * frees, and it never completes anything.  Whenever an item leaves the queue
 * the queue hands it back to the caller (a return value or an out-parameter),
 * and the caller completes it exactly once: with IOTC_ERR_QUEUE_DROPPED when
 * the queue dropped it, IOTC_ERR_QUEUE_OFF when it refused it, or by sending
 * it.  Nothing leaves silently.
 *
 * What the v1 SDKs got wrong and this queue does not
 * (../shared/reference/anchors.md §B2, §B3, §E; each has a test named after it
 * in client/tests/test_core_opqueue.c):
 * - PY1: with DROP_OLDEST the *new* request raised "queue full" although it
 *   was kept and the oldest was dropped, so the caller could not tell which
 *   was lost.  Here a push names the dropped item, the oldest or the new one.
 * - PY1: an offline publishAsync lost its ack callback.  Here the queue holds
 *   the engine's whole operation, callback included.
 * - PY1: reconfiguring the queue replaced it and threw away what was queued.
 *   Here iotc_opq_configure() keeps the items and hands back each one a
 *   smaller limit no longer holds.
 * - PY1: a link drop in the middle of a drain lost the rest of the queue.
 *   Here the engine pops one item at a time and, if its send fails, puts it
 *   back at the head with iotc_opq_push_front(): order and item survive.
 * - PY1: the README's default (20) and the code's (unbounded) disagreed.
 *   Here iotc_opq_config_init() is the one place, and it is tested.
 * - JS1: DROP_NEWEST discarded the new publish silently, and with queueing
 *   off an offline publish vanished without its callback.  Here both are
 *   reported (a dropped item; IOTC_ERR_QUEUE_OFF).
 * - JS1: subscribes and unsubscribes had a queue of their own, so they
 *   overtook publishes made before them.  Here there is one FIFO for all.
 * - aws-sdk-android #2558: the bound was never enforced.  Here it holds after
 *   every call, push_front included.
 *
 * Not thread-safe; the engine calls it from its one thread.
 */
#ifndef IOTC_CORE_OPQUEUE_H
#define IOTC_CORE_OPQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iotc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

struct iotc_opq;

/* The link the engine embeds in each operation struct and finds its
 * operation from (container_of-style: offsetof the member).  Zero it (or
 * iotc_opq_item_init()) before the first push; the queue keeps it valid. */
typedef struct iotc_opq_item {
    struct iotc_opq_item *next;
    struct iotc_opq_item *prev;
    /* The queue it is in, NULL when in none: lets every call refuse an item
     * that is already queued, or not in this queue, instead of corrupting
     * two lists. */
    const struct iotc_opq *owner;
} iotc_opq_item;

void iotc_opq_item_init(iotc_opq_item *it);

/* Whether `it` is in a queue now. */
bool iotc_opq_item_queued(const iotc_opq_item *it);

typedef enum {
    /* Full: the oldest queued item leaves to make room (newest data wins,
     * what telemetry usually wants). */
    IOTC_OPQ_DROP_OLDEST = 0,
    /* Full: the new item is dropped and the queue keeps what it has. */
    IOTC_OPQ_DROP_NEWEST = 1
} iotc_opq_drop;

#define IOTC_OPQ_UNBOUNDED (-1)
#define IOTC_OPQ_OFF 0

typedef struct {
    /* IOTC_OPQ_UNBOUNDED (-1), IOTC_OPQ_OFF (0: every push is refused with
     * IOTC_ERR_QUEUE_OFF), or N > 0 items. */
    int64_t limit;
    iotc_opq_drop drop;
} iotc_opq_config;

/* Defaults: 20 items, DROP_NEWEST: what the v1 Python SDK's README promises
 * (its code said unbounded).  Bounded because an unbounded queue on a device
 * turns a long outage into an out-of-memory failure. */
void iotc_opq_config_init(iotc_opq_config *cfg);

/* IOTC_OK, or IOTC_ERR_INVALID_ARG with `*why` (when `why` is not NULL) set
 * to a static sentence: NULL, limit < -1, an unknown drop policy. */
int iotc_opq_config_check(const iotc_opq_config *cfg, const char **why);

/* Counters since iotc_opq_init(); they only grow.  At every moment
 *     length == queued + requeued - dropped - drained - removed.
 * The net number of operations drained is drained - requeued. */
typedef struct {
    uint64_t queued;   /* items pushed at the tail, including a new one
                          dropped at once by DROP_NEWEST */
    uint64_t requeued; /* items put back at the head (iotc_opq_push_front) */
    uint64_t dropped;  /* items handed back for IOTC_ERR_QUEUE_DROPPED */
    uint64_t drained;  /* items popped from the head (iotc_opq_pop) */
    uint64_t removed;  /* items taken out by iotc_opq_remove (timeout, close) */
    uint64_t refused;  /* pushes refused because the queue is off */
} iotc_opq_stats;

/* The queue.  Fields private; public so that the engine embeds it. */
typedef struct iotc_opq {
    iotc_opq_item *head; /* oldest */
    iotc_opq_item *tail; /* newest */
    size_t length;
    iotc_opq_config cfg;
    iotc_opq_stats stats;
} iotc_opq;

/* An empty queue with a copy of `cfg`.  IOTC_OK, or IOTC_ERR_INVALID_ARG
 * (q NULL, bad config) leaving `q` untouched. */
int iotc_opq_init(iotc_opq *q, const iotc_opq_config *cfg);

/*
 * Appends `it` (the newest).  Returns:
 * - IOTC_OK: `it` was accepted.  `*dropped` is NULL, or the item the drop
 *   policy removed because the queue was full: the oldest (DROP_OLDEST) or
 *   `it` itself (DROP_NEWEST).  A dropped item is out of the queue and the
 *   caller completes it with IOTC_ERR_QUEUE_DROPPED.
 * - IOTC_ERR_QUEUE_OFF: the limit is 0; `it` was not taken and `*dropped`
 *   is NULL.  The caller completes `it` with IOTC_ERR_QUEUE_OFF.
 * - IOTC_ERR_INVALID_ARG: q, it or dropped NULL, or `it` already in a queue;
 *   nothing changed (`*dropped`, when given, is NULL).
 * `dropped` is required because a drop the caller does not see is the bug
 * this queue exists to avoid.
 */
int iotc_opq_push(iotc_opq *q, iotc_opq_item *it, iotc_opq_item **dropped);

/*
 * Puts `it` back at the head (it becomes the oldest): for an item popped
 * for sending whose send failed, so that it stays first.  Same returns as
 * iotc_opq_push(); when the queue is full the policy still decides, from
 * the same ends: DROP_OLDEST drops the head, which is `it` now, and
 * DROP_NEWEST the tail.  The limit holds even for items put back (items
 * pushed meanwhile may have taken the place).
 */
int iotc_opq_push_front(iotc_opq *q, iotc_opq_item *it, iotc_opq_item **dropped);

/* Takes the oldest item out for sending, or NULL when empty. */
iotc_opq_item *iotc_opq_pop(iotc_opq *q);

/* The oldest item, left in place; NULL when empty. */
iotc_opq_item *iotc_opq_peek(const iotc_opq *q);

/* Takes `it` out from wherever it is (its operation timed out, the client
 * is closing).  IOTC_OK, or IOTC_ERR_INVALID_ARG if `it` is not in `q`. */
int iotc_opq_remove(iotc_opq *q, iotc_opq_item *it);

/* Iteration from oldest to newest:
 *     for (it = iotc_opq_first(q); it; it = nx) { nx = iotc_opq_next(q, it); ... }
 * Taking `nx` before the body lets the body remove `it`. */
iotc_opq_item *iotc_opq_first(const iotc_opq *q);
iotc_opq_item *iotc_opq_next(const iotc_opq *q, const iotc_opq_item *it);

/*
 * Changes the limit and the policy, keeping the items.  If the new limit
 * holds fewer items than are queued, the excess must leave: call
 * iotc_opq_shed() until it returns NULL and complete each with
 * IOTC_ERR_QUEUE_DROPPED.  IOTC_OK, or IOTC_ERR_INVALID_ARG (bad config,
 * nothing changed).
 */
int iotc_opq_configure(iotc_opq *q, const iotc_opq_config *cfg);

/* One item over the limit taken out by the policy (the oldest for
 * DROP_OLDEST, the newest for DROP_NEWEST; every item when the queue is
 * off), counted as dropped; NULL when the queue is within its limit. */
iotc_opq_item *iotc_opq_shed(iotc_opq *q);

size_t iotc_opq_length(const iotc_opq *q);
const iotc_opq_stats *iotc_opq_get_stats(const iotc_opq *q);

#ifdef __cplusplus
}
#endif

#endif /* IOTC_CORE_OPQUEUE_H */

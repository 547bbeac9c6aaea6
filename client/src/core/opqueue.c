/*
 * The offline request queue (core/opqueue.h): an intrusive doubly linked
 * list, so that push, pop, push_front and removal from the middle (an
 * operation's timeout) are O(1) and nothing is allocated.
 *
 * Both pushes insert first and then let the policy shed from its end while
 * the queue is over its limit.  One rule for both ends keeps "which item
 * leaves" obvious: DROP_OLDEST always takes the head, DROP_NEWEST always
 * the tail, whoever was just inserted.
 */
#include "core/opqueue.h"

void iotc_opq_item_init(iotc_opq_item *it)
{
    if (!it)
        return;
    it->next = NULL;
    it->prev = NULL;
    it->owner = NULL;
}

bool iotc_opq_item_queued(const iotc_opq_item *it)
{
    return it && it->owner;
}

void iotc_opq_config_init(iotc_opq_config *cfg)
{
    if (!cfg)
        return;
    cfg->limit = 20;
    cfg->drop = IOTC_OPQ_DROP_NEWEST;
}

int iotc_opq_config_check(const iotc_opq_config *cfg, const char **why)
{
    const char *w = NULL;
    if (!cfg)
        w = "offline queue: no configuration";
    else if (cfg->limit < IOTC_OPQ_UNBOUNDED)
        w = "offline queue: limit must be -1 (unbounded), 0 (off) or a positive size";
    else if (cfg->drop != IOTC_OPQ_DROP_OLDEST && cfg->drop != IOTC_OPQ_DROP_NEWEST)
        w = "offline queue: unknown drop policy";
    if (why)
        *why = w;
    return w ? IOTC_ERR_INVALID_ARG : IOTC_OK;
}

int iotc_opq_init(iotc_opq *q, const iotc_opq_config *cfg)
{
    if (!q || iotc_opq_config_check(cfg, NULL) != IOTC_OK)
        return IOTC_ERR_INVALID_ARG;
    q->head = NULL;
    q->tail = NULL;
    q->length = 0;
    q->cfg = *cfg;
    q->stats = (iotc_opq_stats){0};
    return IOTC_OK;
}

static bool over_limit(const iotc_opq *q)
{
    if (q->cfg.limit == IOTC_OPQ_UNBOUNDED)
        return false;
    return (uint64_t)q->length > (uint64_t)q->cfg.limit;
}

static void unlink_item(iotc_opq *q, iotc_opq_item *it)
{
    if (it->prev)
        it->prev->next = it->next;
    else
        q->head = it->next;
    if (it->next)
        it->next->prev = it->prev;
    else
        q->tail = it->prev;
    it->next = NULL;
    it->prev = NULL;
    it->owner = NULL;
    q->length--;
}

iotc_opq_item *iotc_opq_shed(iotc_opq *q)
{
    if (!q || !over_limit(q))
        return NULL;
    iotc_opq_item *victim = q->cfg.drop == IOTC_OPQ_DROP_OLDEST ? q->head : q->tail;
    unlink_item(q, victim);
    q->stats.dropped++;
    return victim;
}

/* Shared checks of both pushes; IOTC_OK when `it` may go in. */
static int admit(iotc_opq *q, iotc_opq_item *it, iotc_opq_item **dropped)
{
    if (dropped)
        *dropped = NULL;
    if (!q || !it || !dropped || it->owner)
        return IOTC_ERR_INVALID_ARG;
    if (q->cfg.limit == IOTC_OPQ_OFF) {
        q->stats.refused++;
        return IOTC_ERR_QUEUE_OFF;
    }
    return IOTC_OK;
}

int iotc_opq_push(iotc_opq *q, iotc_opq_item *it, iotc_opq_item **dropped)
{
    int rc = admit(q, it, dropped);
    if (rc != IOTC_OK)
        return rc;
    it->owner = q;
    it->next = NULL;
    it->prev = q->tail;
    if (q->tail)
        q->tail->next = it;
    else
        q->head = it;
    q->tail = it;
    q->length++;
    q->stats.queued++;
    /* The limit held before this push (a caller sheds after
     * iotc_opq_configure(), as the header requires), so one item at most
     * must go. */
    *dropped = iotc_opq_shed(q);
    return IOTC_OK;
}

int iotc_opq_push_front(iotc_opq *q, iotc_opq_item *it, iotc_opq_item **dropped)
{
    int rc = admit(q, it, dropped);
    if (rc != IOTC_OK)
        return rc;
    it->owner = q;
    it->prev = NULL;
    it->next = q->head;
    if (q->head)
        q->head->prev = it;
    else
        q->tail = it;
    q->head = it;
    q->length++;
    q->stats.requeued++;
    *dropped = iotc_opq_shed(q);
    return IOTC_OK;
}

iotc_opq_item *iotc_opq_pop(iotc_opq *q)
{
    if (!q || !q->head)
        return NULL;
    iotc_opq_item *it = q->head;
    unlink_item(q, it);
    q->stats.drained++;
    return it;
}

iotc_opq_item *iotc_opq_peek(const iotc_opq *q)
{
    return q ? q->head : NULL;
}

int iotc_opq_remove(iotc_opq *q, iotc_opq_item *it)
{
    if (!q || !it || it->owner != q)
        return IOTC_ERR_INVALID_ARG;
    unlink_item(q, it);
    q->stats.removed++;
    return IOTC_OK;
}

iotc_opq_item *iotc_opq_first(const iotc_opq *q)
{
    return q ? q->head : NULL;
}

iotc_opq_item *iotc_opq_next(const iotc_opq *q, const iotc_opq_item *it)
{
    if (!q || !it || it->owner != q)
        return NULL;
    return it->next;
}

int iotc_opq_configure(iotc_opq *q, const iotc_opq_config *cfg)
{
    if (!q || iotc_opq_config_check(cfg, NULL) != IOTC_OK)
        return IOTC_ERR_INVALID_ARG;
    q->cfg = *cfg;
    return IOTC_OK;
}

size_t iotc_opq_length(const iotc_opq *q)
{
    return q ? q->length : 0;
}

const iotc_opq_stats *iotc_opq_get_stats(const iotc_opq *q)
{
    return q ? &q->stats : NULL;
}

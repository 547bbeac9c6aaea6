/*
 * The offline request queue (core/opqueue.h).  The tests play the engine:
 * operations are structs embedding an iotc_opq_item, each with a completion
 * callback that must run exactly once whatever happens to the operation.
 * One test per v1 SDK bug the queue avoids (anchors.md §B2, §B3, §E), named
 * after the bug; then every call's edges; then a long randomised run
 * against a plain array model.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/opqueue.h"

/* ---- a miniature engine --------------------------------------------------- */

typedef enum { PUB_QOS0, PUB_QOS1, SUBSCRIBE, UNSUBSCRIBE } op_kind;

typedef struct op op;
typedef void (*op_done_fn)(op *o, int status);

struct op {
    int id;
    op_kind kind;
    iotc_opq_item link; /* not first, so that the container arithmetic is exercised */
    op_done_fn done;    /* the user's completion callback, kept while queued */
    int completions;
    int status;
};

static op *op_of(iotc_opq_item *it)
{
    return it ? (op *)(void *)((char *)it - offsetof(op, link)) : NULL;
}

static int done_calls;

static void on_done(op *o, int status)
{
    o->completions++;
    o->status = status;
    done_calls++;
}

static void op_init(op *o, int id, op_kind kind)
{
    memset(o, 0, sizeof *o);
    o->id = id;
    o->kind = kind;
    o->done = on_done;
    o->status = 1; /* no iotc_err is positive: "not completed" */
    iotc_opq_item_init(&o->link);
}

/* What the engine does with a request made while offline: push it and
 * complete whatever the queue gives back. */
static int submit(iotc_opq *q, op *o)
{
    iotc_opq_item *dropped = (iotc_opq_item *)1; /* must be overwritten */
    int rc = iotc_opq_push(q, &o->link, &dropped);
    if (rc != IOTC_OK) {
        assert_null(dropped);
        o->done(o, rc);
    } else if (dropped) {
        op *d = op_of(dropped);
        assert_false(iotc_opq_item_queued(dropped));
        d->done(d, IOTC_ERR_QUEUE_DROPPED);
    }
    return rc;
}

/* The engine's drain step: pop and "send"; a failed send puts it back. */
static op *drain_one(iotc_opq *q, bool send_ok)
{
    op *o = op_of(iotc_opq_pop(q));
    if (!o)
        return NULL;
    if (send_ok) {
        o->done(o, IOTC_OK);
        return o;
    }
    iotc_opq_item *dropped = NULL;
    int rc = iotc_opq_push_front(q, &o->link, &dropped);
    if (rc != IOTC_OK)
        o->done(o, rc);
    else if (dropped)
        op_of(dropped)->done(op_of(dropped), IOTC_ERR_QUEUE_DROPPED);
    return o;
}

static void shed_all(iotc_opq *q)
{
    iotc_opq_item *it;
    while ((it = iotc_opq_shed(q)))
        op_of(it)->done(op_of(it), IOTC_ERR_QUEUE_DROPPED);
}

static iotc_opq_config qcfg(int64_t limit, iotc_opq_drop drop)
{
    iotc_opq_config c = {.limit = limit, .drop = drop};
    return c;
}

/* The queue's ids from oldest to newest must be exactly `ids`. */
static void expect_ids(const iotc_opq *q, const int *ids, size_t n, int line)
{
    size_t i = 0;
    for (iotc_opq_item *it = iotc_opq_first(q); it; it = iotc_opq_next(q, it), i++) {
        if (i >= n || op_of(it)->id != ids[i]) {
            print_error("queue position %zu: id %d, expected %d\n", i, op_of(it)->id, i < n ? ids[i] : -1);
            _fail(__FILE__, line);
        }
    }
    if (i != n || iotc_opq_length(q) != n) {
        print_error("queue holds %zu (length %zu), expected %zu\n", i, iotc_opq_length(q), n);
        _fail(__FILE__, line);
    }
}
#define EXPECT_IDS(q, ...) \
    expect_ids(q, (const int[]){__VA_ARGS__}, sizeof((const int[]){__VA_ARGS__}) / sizeof(int), __LINE__)
#define EXPECT_EMPTY(q) expect_ids(q, NULL, 0, __LINE__)

static void expect_invariant(const iotc_opq *q)
{
    const iotc_opq_stats *s = iotc_opq_get_stats(q);
    assert_true(s->queued + s->requeued - s->dropped - s->drained - s->removed == iotc_opq_length(q));
}

static int setup(void **state)
{
    (void)state;
    done_calls = 0;
    return 0;
}

/* ---- the v1 SDKs' bugs ---------------------------------------------------- */

/* PY1 §B2: full + DROP_OLDEST removed the head and appended the new request,
 * then raised the same "queue full" exception as DROP_NEWEST, so the caller
 * could not tell its request had been kept and another lost.  Here the new
 * request is accepted and the dropped one is named and completed. */
static void test_py1_drop_oldest_raises_queue_full_although_the_new_request_was_kept(void **state)
{
    (void)state;
    iotc_opq q;
    iotc_opq_config c = qcfg(2, IOTC_OPQ_DROP_OLDEST);
    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    op a, b, n;
    op_init(&a, 1, PUB_QOS1);
    op_init(&b, 2, PUB_QOS1);
    op_init(&n, 3, PUB_QOS1);
    iotc_opq_item *dropped = NULL;
    assert_int_equal(iotc_opq_push(&q, &a.link, &dropped), IOTC_OK);
    assert_null(dropped);
    assert_int_equal(iotc_opq_push(&q, &b.link, &dropped), IOTC_OK);
    assert_null(dropped);
    assert_int_equal(iotc_opq_push(&q, &n.link, &dropped), IOTC_OK); /* accepted, not "full" */
    assert_ptr_equal(dropped, &a.link);                              /* and the oldest named */
    assert_false(iotc_opq_item_queued(&a.link));
    assert_true(iotc_opq_item_queued(&n.link));
    EXPECT_IDS(&q, 2, 3);
    assert_int_equal(iotc_opq_get_stats(&q)->dropped, 1);
}

/* PY1 §B2: publishAsync's ackCallback was not stored with an offline
 * publish, so it never fired.  Here the queue carries the engine's whole
 * operation: every callback fires exactly once, with its outcome, whether
 * the operation was sent, dropped or refused. */
static void test_py1_offline_publish_async_loses_its_ack_callback(void **state)
{
    (void)state;
    iotc_opq q;
    iotc_opq_config c = qcfg(3, IOTC_OPQ_DROP_OLDEST);
    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    op ops[5];
    for (int i = 0; i < 5; i++) {
        op_init(&ops[i], i, (op_kind)(i % 4));
        assert_int_equal(submit(&q, &ops[i]), IOTC_OK);
    }
    while (drain_one(&q, true))
        ;
    for (int i = 0; i < 5; i++)
        assert_int_equal(ops[i].completions, 1);
    assert_int_equal(ops[0].status, IOTC_ERR_QUEUE_DROPPED);
    assert_int_equal(ops[1].status, IOTC_ERR_QUEUE_DROPPED);
    for (int i = 2; i < 5; i++)
        assert_int_equal(ops[i].status, IOTC_OK);
    assert_int_equal(done_calls, 5);
}

/* PY1 §B2: configureOfflinePublishQueueing replaced the queue object, and
 * everything queued vanished without a word.  Here reconfiguring keeps the
 * items; a smaller limit hands back exactly the excess, by the new policy. */
static void test_py1_reconfigure_throws_away_the_queue(void **state)
{
    (void)state;
    iotc_opq q;
    iotc_opq_config c = qcfg(IOTC_OPQ_UNBOUNDED, IOTC_OPQ_DROP_NEWEST);
    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    op ops[6];
    for (int i = 0; i < 6; i++) {
        op_init(&ops[i], i, PUB_QOS0);
        submit(&q, &ops[i]);
    }
    c = qcfg(10, IOTC_OPQ_DROP_OLDEST); /* larger: nothing leaves */
    assert_int_equal(iotc_opq_configure(&q, &c), IOTC_OK);
    assert_null(iotc_opq_shed(&q));
    EXPECT_IDS(&q, 0, 1, 2, 3, 4, 5);
    c = qcfg(4, IOTC_OPQ_DROP_OLDEST); /* smaller: the two oldest leave */
    assert_int_equal(iotc_opq_configure(&q, &c), IOTC_OK);
    shed_all(&q);
    EXPECT_IDS(&q, 2, 3, 4, 5);
    assert_int_equal(ops[0].status, IOTC_ERR_QUEUE_DROPPED);
    assert_int_equal(ops[1].status, IOTC_ERR_QUEUE_DROPPED);
    c = qcfg(3, IOTC_OPQ_DROP_NEWEST); /* the newest leaves */
    assert_int_equal(iotc_opq_configure(&q, &c), IOTC_OK);
    shed_all(&q);
    EXPECT_IDS(&q, 2, 3, 4);
    assert_int_equal(ops[5].status, IOTC_ERR_QUEUE_DROPPED);
    assert_int_equal(done_calls, 3);
    for (int i = 2; i <= 4; i++)
        assert_int_equal(ops[i].completions, 0);
    expect_invariant(&q);
}

/* PY1 §B2: the drain loop never looked at the link; when it dropped
 * mid-drain the rest of the queue was handed to a dead connection and lost.
 * Here a failed send goes back to the head: the order and every item
 * survive for the next connection, and nothing completes twice. */
static void test_py1_link_drop_mid_drain_loses_the_rest(void **state)
{
    (void)state;
    iotc_opq q;
    iotc_opq_config c = qcfg(IOTC_OPQ_UNBOUNDED, IOTC_OPQ_DROP_OLDEST);
    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    op ops[6];
    for (int i = 0; i < 6; i++) {
        op_init(&ops[i], i, (op_kind)(i % 4));
        submit(&q, &ops[i]);
    }
    assert_ptr_equal(drain_one(&q, true), &ops[0]);
    assert_ptr_equal(drain_one(&q, true), &ops[1]);
    assert_ptr_equal(drain_one(&q, false), &ops[2]); /* the link drops here */
    EXPECT_IDS(&q, 2, 3, 4, 5);
    /* New requests while offline join the tail. */
    op late;
    op_init(&late, 6, PUB_QOS1);
    submit(&q, &late);
    EXPECT_IDS(&q, 2, 3, 4, 5, 6);
    /* The next connection drains the rest in order. */
    for (int i = 2; i <= 6; i++)
        assert_int_equal(drain_one(&q, true)->id, i);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(ops[i].completions, 1);
        assert_int_equal(ops[i].status, IOTC_OK);
    }
    assert_int_equal(late.completions, 1);
    const iotc_opq_stats *s = iotc_opq_get_stats(&q);
    assert_int_equal(s->queued, 7);
    assert_int_equal(s->drained, 8);
    assert_int_equal(s->requeued, 1);
    assert_int_equal(s->drained - s->requeued, 7); /* net drained */
    expect_invariant(&q);
}

/* PY1 §B2: README.rst said 20 / DROP_NEWEST, MqttCore built an unbounded
 * queue.  Here the default is defined once, in iotc_opq_config_init(), and
 * is what opqueue.h says it is. */
static void test_py1_readme_and_code_defaults_disagree(void **state)
{
    (void)state;
    iotc_opq_config c;
    memset(&c, 0x77, sizeof c);
    iotc_opq_config_init(&c);
    assert_int_equal(c.limit, 20);
    assert_int_equal(c.drop, IOTC_OPQ_DROP_NEWEST);
    iotc_opq q;
    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    op ops[21];
    for (int i = 0; i < 21; i++) {
        op_init(&ops[i], i, PUB_QOS1);
        submit(&q, &ops[i]);
    }
    assert_int_equal(iotc_opq_length(&q), 20);
    assert_int_equal(ops[20].status, IOTC_ERR_QUEUE_DROPPED);
    iotc_opq_config_init(NULL); /* no crash */
}

/* PY1 #262, #236, #144: "queue size 0 still queues".  Here a queue with
 * limit 0 holds nothing, ever: every push is refused with its own error,
 * the operation is left untouched for the caller to complete. */
static void test_py1_queue_size_0_still_queues(void **state)
{
    (void)state;
    iotc_opq q;
    iotc_opq_config c = qcfg(IOTC_OPQ_OFF, IOTC_OPQ_DROP_OLDEST);
    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    op ops[4];
    for (int i = 0; i < 4; i++) {
        op_init(&ops[i], i, (op_kind)i);
        assert_int_equal(submit(&q, &ops[i]), IOTC_ERR_QUEUE_OFF);
        assert_false(iotc_opq_item_queued(&ops[i].link));
        assert_int_equal(ops[i].completions, 1);
        assert_int_equal(ops[i].status, IOTC_ERR_QUEUE_OFF);
    }
    EXPECT_EMPTY(&q);
    assert_null(iotc_opq_pop(&q));
    /* Putting one back is refused the same way. */
    iotc_opq_item *dropped = (iotc_opq_item *)1;
    assert_int_equal(iotc_opq_push_front(&q, &ops[0].link, &dropped), IOTC_ERR_QUEUE_OFF);
    assert_null(dropped);
    const iotc_opq_stats *s = iotc_opq_get_stats(&q);
    assert_int_equal(s->refused, 5);
    assert_int_equal(s->queued + s->requeued + s->dropped, 0);
    /* DROP_NEWEST changes nothing when off. */
    c.drop = IOTC_OPQ_DROP_NEWEST;
    assert_int_equal(iotc_opq_configure(&q, &c), IOTC_OK);
    assert_int_equal(iotc_opq_push(&q, &ops[1].link, &dropped), IOTC_ERR_QUEUE_OFF);
}

/* JS1 §B3: with 'newest', a publish to a full queue was discarded without
 * an error or its callback.  Here the new item comes back as the dropped one. */
static void test_js1_drop_newest_is_silent(void **state)
{
    (void)state;
    iotc_opq q;
    iotc_opq_config c = qcfg(2, IOTC_OPQ_DROP_NEWEST);
    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    op a, b, n;
    op_init(&a, 1, PUB_QOS0);
    op_init(&b, 2, PUB_QOS0);
    op_init(&n, 3, PUB_QOS0);
    iotc_opq_item *dropped = NULL;
    assert_int_equal(iotc_opq_push(&q, &a.link, &dropped), IOTC_OK);
    assert_int_equal(iotc_opq_push(&q, &b.link, &dropped), IOTC_OK);
    assert_int_equal(iotc_opq_push(&q, &n.link, &dropped), IOTC_OK);
    assert_ptr_equal(dropped, &n.link);
    assert_false(iotc_opq_item_queued(&n.link));
    EXPECT_IDS(&q, 1, 2);
    const iotc_opq_stats *s = iotc_opq_get_stats(&q);
    assert_int_equal(s->queued, 3);
    assert_int_equal(s->dropped, 1);
    expect_invariant(&q);
    /* The dropped item is free again: it may be pushed later. */
    assert_ptr_equal(iotc_opq_pop(&q), &a.link);
    assert_int_equal(iotc_opq_push(&q, &n.link, &dropped), IOTC_OK);
    assert_null(dropped);
    EXPECT_IDS(&q, 2, 3);
}

/* JS1 §B3: with offlineQueueing false, a publish made while inactive was
 * silently discarded and its callback never ran.  Here the refusal is a
 * return code, and the caller is made to look at drops: `dropped` may not
 * be NULL. */
static void test_js1_queueing_off_discards_without_callback(void **state)
{
    (void)state;
    iotc_opq q;
    iotc_opq_config c = qcfg(IOTC_OPQ_OFF, IOTC_OPQ_DROP_NEWEST);
    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    op o;
    op_init(&o, 1, PUB_QOS1);
    assert_int_equal(submit(&q, &o), IOTC_ERR_QUEUE_OFF);
    assert_int_equal(o.completions, 1);
    assert_int_equal(o.status, IOTC_ERR_QUEUE_OFF);
    /* A caller that does not want to hear about drops is refused outright. */
    c = qcfg(1, IOTC_OPQ_DROP_NEWEST);
    assert_int_equal(iotc_opq_configure(&q, &c), IOTC_OK);
    op_init(&o, 2, PUB_QOS1);
    assert_int_equal(iotc_opq_push(&q, &o.link, NULL), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_opq_push_front(&q, &o.link, NULL), IOTC_ERR_INVALID_ARG);
    EXPECT_EMPTY(&q);
}

/* JS1 §B3: subscribes and unsubscribes had their own queue, drained before
 * publishes, so a subscribe overtook publishes made before it (and an
 * unsubscribe could overtake the publish meant to precede it).  Here one
 * FIFO holds every kind, and the drain order is the call order. */
static void test_js1_subscribes_overtake_earlier_publishes(void **state)
{
    (void)state;
    iotc_opq q;
    iotc_opq_config c = qcfg(IOTC_OPQ_UNBOUNDED, IOTC_OPQ_DROP_OLDEST);
    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    const op_kind kinds[] = {PUB_QOS1, PUB_QOS0, SUBSCRIBE, PUB_QOS1, UNSUBSCRIBE, PUB_QOS0, SUBSCRIBE, UNSUBSCRIBE};
    op ops[8];
    for (int i = 0; i < 8; i++) {
        op_init(&ops[i], i, kinds[i]);
        submit(&q, &ops[i]);
    }
    for (int i = 0; i < 8; i++) {
        op *o = drain_one(&q, true);
        assert_int_equal(o->id, i);
        assert_int_equal(o->kind, kinds[i]);
    }
    assert_null(drain_one(&q, true));
}

/* JS1 §B3: an unsubscribe made when the subscription queue was full (50)
 * was dropped with no error at all.  Here a full queue treats every kind
 * alike and reports the drop. */
static void test_js1_unsubscribe_on_full_queue_dropped_silently(void **state)
{
    (void)state;
    iotc_opq q;
    iotc_opq_config c = qcfg(50, IOTC_OPQ_DROP_NEWEST);
    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    op subs[50], unsub;
    for (int i = 0; i < 50; i++) {
        op_init(&subs[i], i, SUBSCRIBE);
        submit(&q, &subs[i]);
    }
    op_init(&unsub, 50, UNSUBSCRIBE);
    assert_int_equal(submit(&q, &unsub), IOTC_OK);
    assert_int_equal(unsub.completions, 1);
    assert_int_equal(unsub.status, IOTC_ERR_QUEUE_DROPPED);
    assert_int_equal(iotc_opq_length(&q), 50);
}

/* aws-sdk-android #2558: offlinePublishQueueBound was never enforced.  Here
 * the length never exceeds the limit, after pushes at either end. */
static void test_android_2558_bound_never_enforced(void **state)
{
    (void)state;
    for (int pol = 0; pol < 2; pol++) {
        iotc_opq q;
        iotc_opq_config c = qcfg(5, (iotc_opq_drop)pol);
        assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
        op ops[40];
        for (int i = 0; i < 40; i++) {
            op_init(&ops[i], i, PUB_QOS1);
            if (i % 3 == 2) {
                /* A pop whose send fails: put back while full. */
                drain_one(&q, false);
            }
            submit(&q, &ops[i]);
            assert_true(iotc_opq_length(&q) <= 5);
            expect_invariant(&q);
        }
        /* Every operation: queued, or completed exactly once. */
        for (int i = 0; i < 40; i++)
            assert_int_equal(ops[i].completions + iotc_opq_item_queued(&ops[i].link), 1);
    }
}

/* ---- configuration -------------------------------------------------------- */

static void test_config_validation(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(iotc_opq_config_check(NULL, &why), IOTC_ERR_INVALID_ARG);
    assert_non_null(why);
    iotc_opq_config bad[] = {
        qcfg(-2, IOTC_OPQ_DROP_OLDEST),
        qcfg(INT64_MIN, IOTC_OPQ_DROP_NEWEST),
        qcfg(5, (iotc_opq_drop)2),
        qcfg(5, (iotc_opq_drop)-1),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        assert_int_equal(iotc_opq_config_check(&bad[i], &why), IOTC_ERR_INVALID_ARG);
        assert_non_null(why);
        assert_non_null(strstr(why, i < 2 ? "limit" : "drop"));
        iotc_opq q;
        assert_int_equal(iotc_opq_init(&q, &bad[i]), IOTC_ERR_INVALID_ARG);
    }
    iotc_opq_config ok[] = {
        qcfg(-1, IOTC_OPQ_DROP_OLDEST),
        qcfg(0, IOTC_OPQ_DROP_NEWEST),
        qcfg(1, IOTC_OPQ_DROP_OLDEST),
        qcfg(INT64_MAX, IOTC_OPQ_DROP_NEWEST),
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        why = "stale";
        assert_int_equal(iotc_opq_config_check(&ok[i], &why), IOTC_OK);
        assert_null(why);
        assert_int_equal(iotc_opq_config_check(&ok[i], NULL), IOTC_OK);
    }
}

static void test_init_and_configure_refusals_change_nothing(void **state)
{
    (void)state;
    iotc_opq_config c = qcfg(3, IOTC_OPQ_DROP_OLDEST), bad = qcfg(-5, IOTC_OPQ_DROP_OLDEST);
    iotc_opq q, before;
    memset(&q, 0x3c, sizeof q);
    memcpy(&before, &q, sizeof q); /* bytes, padding included */
    assert_int_equal(iotc_opq_init(NULL, &c), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_opq_init(&q, NULL), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_opq_init(&q, &bad), IOTC_ERR_INVALID_ARG);
    assert_memory_equal(&q, &before, sizeof q);

    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    op o;
    op_init(&o, 1, PUB_QOS0);
    submit(&q, &o);
    assert_int_equal(iotc_opq_configure(&q, &bad), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_opq_configure(&q, NULL), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_opq_configure(NULL, &c), IOTC_ERR_INVALID_ARG);
    assert_int_equal(q.cfg.limit, 3);
    assert_int_equal(q.cfg.drop, IOTC_OPQ_DROP_OLDEST);
    EXPECT_IDS(&q, 1);
}

/* ---- the calls, one by one ------------------------------------------------ */

static void test_item_init_and_queued(void **state)
{
    (void)state;
    iotc_opq_item it;
    memset(&it, 0xff, sizeof it);
    iotc_opq_item_init(&it);
    assert_null(it.next);
    assert_null(it.prev);
    assert_false(iotc_opq_item_queued(&it));
    assert_false(iotc_opq_item_queued(NULL));
    iotc_opq_item_init(NULL);
    /* A zeroed item is a fresh one. */
    iotc_opq_item z = {0};
    iotc_opq q;
    iotc_opq_config c = qcfg(-1, IOTC_OPQ_DROP_OLDEST);
    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    iotc_opq_item *d;
    assert_int_equal(iotc_opq_push(&q, &z, &d), IOTC_OK);
    assert_true(iotc_opq_item_queued(&z));
}

static void test_fifo_pop_peek_length(void **state)
{
    (void)state;
    iotc_opq q;
    iotc_opq_config c = qcfg(IOTC_OPQ_UNBOUNDED, IOTC_OPQ_DROP_OLDEST);
    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    EXPECT_EMPTY(&q);
    assert_null(iotc_opq_pop(&q));
    assert_null(iotc_opq_peek(&q));
    assert_null(iotc_opq_first(&q));
    op ops[4];
    for (int i = 0; i < 4; i++) {
        op_init(&ops[i], i, PUB_QOS1);
        assert_int_equal(submit(&q, &ops[i]), IOTC_OK);
        assert_ptr_equal(iotc_opq_peek(&q), &ops[0].link);
        assert_int_equal(iotc_opq_length(&q), (size_t)i + 1);
    }
    EXPECT_IDS(&q, 0, 1, 2, 3);
    for (int i = 0; i < 4; i++) {
        iotc_opq_item *it = iotc_opq_pop(&q);
        assert_ptr_equal(it, &ops[i].link);
        assert_false(iotc_opq_item_queued(it));
        assert_null(it->next);
        assert_null(it->prev);
    }
    EXPECT_EMPTY(&q);
    assert_null(iotc_opq_pop(&q));
    assert_null(iotc_opq_peek(&q));
    const iotc_opq_stats *s = iotc_opq_get_stats(&q);
    assert_int_equal(s->queued, 4);
    assert_int_equal(s->drained, 4);
    assert_int_equal(s->dropped + s->removed + s->requeued + s->refused, 0);
    /* Refill after empty: head and tail were reset properly. */
    submit(&q, &ops[2]);
    submit(&q, &ops[0]);
    EXPECT_IDS(&q, 2, 0);
    /* NULL queue. */
    assert_null(iotc_opq_pop(NULL));
    assert_null(iotc_opq_peek(NULL));
    assert_null(iotc_opq_first(NULL));
    assert_int_equal(iotc_opq_length(NULL), 0);
    assert_null(iotc_opq_get_stats(NULL));
    assert_null(iotc_opq_shed(NULL));
}

static void test_unbounded_holds_many(void **state)
{
    (void)state;
    enum { N = 100000 };
    op *ops = calloc(N, sizeof *ops);
    assert_non_null(ops);
    iotc_opq q;
    iotc_opq_config c = qcfg(IOTC_OPQ_UNBOUNDED, IOTC_OPQ_DROP_NEWEST);
    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    for (int i = 0; i < N; i++) {
        op_init(&ops[i], i, PUB_QOS0);
        assert_int_equal(submit(&q, &ops[i]), IOTC_OK);
    }
    assert_int_equal(iotc_opq_length(&q), N);
    assert_int_equal(done_calls, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(op_of(iotc_opq_pop(&q))->id, i);
    free(ops);
}

static void test_drop_oldest_sequence(void **state)
{
    (void)state;
    iotc_opq q;
    iotc_opq_config c = qcfg(3, IOTC_OPQ_DROP_OLDEST);
    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    op ops[7];
    for (int i = 0; i < 7; i++) {
        op_init(&ops[i], i, PUB_QOS1);
        submit(&q, &ops[i]);
    }
    EXPECT_IDS(&q, 4, 5, 6);
    for (int i = 0; i < 4; i++)
        assert_int_equal(ops[i].status, IOTC_ERR_QUEUE_DROPPED);
    const iotc_opq_stats *s = iotc_opq_get_stats(&q);
    assert_int_equal(s->queued, 7);
    assert_int_equal(s->dropped, 4);
    expect_invariant(&q);
    /* Limit 1: each new one replaces the last. */
    c = qcfg(1, IOTC_OPQ_DROP_OLDEST);
    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    for (int i = 0; i < 7; i++) {
        op_init(&ops[i], i, PUB_QOS1);
        submit(&q, &ops[i]);
        EXPECT_IDS(&q, i);
    }
}

static void test_drop_newest_sequence(void **state)
{
    (void)state;
    iotc_opq q;
    iotc_opq_config c = qcfg(3, IOTC_OPQ_DROP_NEWEST);
    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    op ops[7];
    for (int i = 0; i < 7; i++) {
        op_init(&ops[i], i, PUB_QOS1);
        submit(&q, &ops[i]);
    }
    EXPECT_IDS(&q, 0, 1, 2);
    for (int i = 3; i < 7; i++)
        assert_int_equal(ops[i].status, IOTC_ERR_QUEUE_DROPPED);
    /* Room again after a pop: the next one is kept. */
    drain_one(&q, true);
    op x;
    op_init(&x, 9, PUB_QOS0);
    submit(&q, &x);
    EXPECT_IDS(&q, 1, 2, 9);
    assert_int_equal(x.completions, 0);
    /* Limit 1. */
    c = qcfg(1, IOTC_OPQ_DROP_NEWEST);
    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    for (int i = 0; i < 7; i++) {
        op_init(&ops[i], i, PUB_QOS1);
        submit(&q, &ops[i]);
        EXPECT_IDS(&q, 0);
    }
}

static void test_push_refusals_change_nothing(void **state)
{
    (void)state;
    iotc_opq q, other;
    iotc_opq_config c = qcfg(5, IOTC_OPQ_DROP_OLDEST);
    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    assert_int_equal(iotc_opq_init(&other, &c), IOTC_OK);
    op a, b;
    op_init(&a, 1, PUB_QOS1);
    op_init(&b, 2, PUB_QOS1);
    submit(&q, &a);
    submit(&other, &b);
    iotc_opq_stats before = *iotc_opq_get_stats(&q);
    iotc_opq_item *d = (iotc_opq_item *)1;
    assert_int_equal(iotc_opq_push(NULL, &a.link, &d), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_opq_push(&q, NULL, &d), IOTC_ERR_INVALID_ARG);
    assert_null(d);
    d = (iotc_opq_item *)1;
    /* Already in this queue, at either end: refused, not linked twice. */
    assert_int_equal(iotc_opq_push(&q, &a.link, &d), IOTC_ERR_INVALID_ARG);
    assert_null(d);
    assert_int_equal(iotc_opq_push_front(&q, &a.link, &d), IOTC_ERR_INVALID_ARG);
    /* In another queue: refused, both lists intact. */
    assert_int_equal(iotc_opq_push(&q, &b.link, &d), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_opq_push_front(&q, &b.link, &d), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_opq_push_front(NULL, &b.link, &d), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_opq_push_front(&q, NULL, &d), IOTC_ERR_INVALID_ARG);
    /* Refused for bad arguments: not even counted as `refused`. */
    assert_memory_equal(iotc_opq_get_stats(&q), &before, sizeof before);
    EXPECT_IDS(&q, 1);
    EXPECT_IDS(&other, 2);
}

static void test_push_front_order_and_limits(void **state)
{
    (void)state;
    iotc_opq q;
    iotc_opq_config c = qcfg(IOTC_OPQ_UNBOUNDED, IOTC_OPQ_DROP_OLDEST);
    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    op ops[5];
    for (int i = 0; i < 5; i++)
        op_init(&ops[i], i, PUB_QOS1);
    iotc_opq_item *d;
    /* Into an empty queue: head and tail. */
    assert_int_equal(iotc_opq_push_front(&q, &ops[0].link, &d), IOTC_OK);
    assert_null(d);
    EXPECT_IDS(&q, 0);
    submit(&q, &ops[1]);
    assert_int_equal(iotc_opq_push_front(&q, &ops[2].link, &d), IOTC_OK);
    EXPECT_IDS(&q, 2, 0, 1);
    assert_int_equal(iotc_opq_get_stats(&q)->requeued, 2);

    /* Full, DROP_OLDEST: the item put back is the oldest now, and leaves. */
    c = qcfg(3, IOTC_OPQ_DROP_OLDEST);
    assert_int_equal(iotc_opq_configure(&q, &c), IOTC_OK);
    assert_int_equal(iotc_opq_push_front(&q, &ops[3].link, &d), IOTC_OK);
    assert_ptr_equal(d, &ops[3].link);
    assert_false(iotc_opq_item_queued(&ops[3].link));
    EXPECT_IDS(&q, 2, 0, 1);
    /* Full, DROP_NEWEST: the tail leaves, the item put back stays first. */
    c = qcfg(3, IOTC_OPQ_DROP_NEWEST);
    assert_int_equal(iotc_opq_configure(&q, &c), IOTC_OK);
    assert_int_equal(iotc_opq_push_front(&q, &ops[3].link, &d), IOTC_OK);
    assert_ptr_equal(d, &ops[1].link);
    EXPECT_IDS(&q, 3, 2, 0);
    expect_invariant(&q);
}

static void test_remove_anywhere(void **state)
{
    (void)state;
    iotc_opq q, other;
    iotc_opq_config c = qcfg(IOTC_OPQ_UNBOUNDED, IOTC_OPQ_DROP_OLDEST);
    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    assert_int_equal(iotc_opq_init(&other, &c), IOTC_OK);
    op ops[6], stray, elsewhere;
    for (int i = 0; i < 6; i++) {
        op_init(&ops[i], i, PUB_QOS1);
        submit(&q, &ops[i]);
    }
    op_init(&stray, 7, PUB_QOS1);
    op_init(&elsewhere, 8, PUB_QOS1);
    submit(&other, &elsewhere);
    assert_int_equal(iotc_opq_remove(&q, &ops[3].link), IOTC_OK); /* middle */
    EXPECT_IDS(&q, 0, 1, 2, 4, 5);
    assert_int_equal(iotc_opq_remove(&q, &ops[0].link), IOTC_OK); /* head */
    EXPECT_IDS(&q, 1, 2, 4, 5);
    assert_int_equal(iotc_opq_remove(&q, &ops[5].link), IOTC_OK); /* tail */
    EXPECT_IDS(&q, 1, 2, 4);
    assert_false(iotc_opq_item_queued(&ops[3].link));
    /* Not in a queue, in another queue, removed twice, NULLs. */
    assert_int_equal(iotc_opq_remove(&q, &stray.link), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_opq_remove(&q, &elsewhere.link), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_opq_remove(&q, &ops[3].link), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_opq_remove(NULL, &ops[1].link), IOTC_ERR_INVALID_ARG);
    assert_int_equal(iotc_opq_remove(&q, NULL), IOTC_ERR_INVALID_ARG);
    EXPECT_IDS(&q, 1, 2, 4);
    EXPECT_IDS(&other, 8);
    /* A removed item may be queued again (at the tail). */
    submit(&q, &ops[3]);
    EXPECT_IDS(&q, 1, 2, 4, 3);
    /* Down to empty by removal; the ends are reset. */
    assert_int_equal(iotc_opq_remove(&q, &ops[2].link), IOTC_OK);
    assert_int_equal(iotc_opq_remove(&q, &ops[1].link), IOTC_OK);
    assert_int_equal(iotc_opq_remove(&q, &ops[3].link), IOTC_OK);
    assert_int_equal(iotc_opq_remove(&q, &ops[4].link), IOTC_OK);
    EXPECT_EMPTY(&q);
    assert_null(iotc_opq_peek(&q));
    submit(&q, &ops[0]);
    EXPECT_IDS(&q, 0);
    assert_int_equal(iotc_opq_get_stats(&q)->removed, 7);
    expect_invariant(&q);
}

/* The operation-timeout scan: walk the queue and take out what expired. */
static void test_iterate_and_remove_expired(void **state)
{
    (void)state;
    iotc_opq q;
    iotc_opq_config c = qcfg(IOTC_OPQ_UNBOUNDED, IOTC_OPQ_DROP_OLDEST);
    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    op ops[10];
    for (int i = 0; i < 10; i++) {
        op_init(&ops[i], i, (op_kind)(i % 4));
        submit(&q, &ops[i]);
    }
    iotc_opq_item *it, *nx;
    for (it = iotc_opq_first(&q); it; it = nx) {
        nx = iotc_opq_next(&q, it);
        op *o = op_of(it);
        if (o->id % 3 == 0) { /* 0, 3, 6, 9 expired: head, middle, tail */
            assert_int_equal(iotc_opq_remove(&q, it), IOTC_OK);
            o->done(o, IOTC_ERR_TIMEOUT);
        }
    }
    EXPECT_IDS(&q, 1, 2, 4, 5, 7, 8);
    for (int i = 0; i < 10; i++)
        assert_int_equal(ops[i].completions, i % 3 == 0);
    /* next() of an item that is not in this queue ends the walk. */
    assert_null(iotc_opq_next(&q, &ops[0].link));
    assert_null(iotc_opq_next(NULL, &ops[1].link));
    assert_null(iotc_opq_next(&q, NULL));
    assert_null(iotc_opq_next(&q, &ops[8].link)); /* the tail */
}

/* Closing the client: everything queued completes with IOTC_ERR_CLOSED. */
static void test_close_flushes_with_one_completion_each(void **state)
{
    (void)state;
    iotc_opq q;
    iotc_opq_config c = qcfg(8, IOTC_OPQ_DROP_NEWEST);
    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    op ops[10];
    for (int i = 0; i < 10; i++) {
        op_init(&ops[i], i, (op_kind)(i % 4));
        submit(&q, &ops[i]);
    }
    iotc_opq_item *it;
    while ((it = iotc_opq_peek(&q))) {
        assert_int_equal(iotc_opq_remove(&q, it), IOTC_OK);
        op_of(it)->done(op_of(it), IOTC_ERR_CLOSED);
    }
    for (int i = 0; i < 10; i++) {
        assert_int_equal(ops[i].completions, 1);
        assert_int_equal(ops[i].status, i < 8 ? IOTC_ERR_CLOSED : IOTC_ERR_QUEUE_DROPPED);
    }
    assert_int_equal(done_calls, 10);
}

static void test_configure_to_off_and_back(void **state)
{
    (void)state;
    for (int pol = 0; pol < 2; pol++) {
        iotc_opq q;
        iotc_opq_config c = qcfg(IOTC_OPQ_UNBOUNDED, (iotc_opq_drop)pol);
        assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
        op ops[4];
        for (int i = 0; i < 4; i++) {
            op_init(&ops[i], i, PUB_QOS1);
            submit(&q, &ops[i]);
        }
        c.limit = IOTC_OPQ_OFF;
        assert_int_equal(iotc_opq_configure(&q, &c), IOTC_OK);
        /* Off: every item is excess; each leaves from the policy's end. */
        iotc_opq_item *first = iotc_opq_shed(&q);
        assert_ptr_equal(first, pol == IOTC_OPQ_DROP_OLDEST ? &ops[0].link : &ops[3].link);
        op_of(first)->done(op_of(first), IOTC_ERR_QUEUE_DROPPED);
        shed_all(&q);
        EXPECT_EMPTY(&q);
        assert_null(iotc_opq_shed(&q));
        for (int i = 0; i < 4; i++)
            assert_int_equal(ops[i].status, IOTC_ERR_QUEUE_DROPPED);
        op x;
        op_init(&x, 9, PUB_QOS0);
        assert_int_equal(submit(&q, &x), IOTC_ERR_QUEUE_OFF);
        /* Back on. */
        c.limit = 2;
        assert_int_equal(iotc_opq_configure(&q, &c), IOTC_OK);
        op_init(&x, 9, PUB_QOS0);
        assert_int_equal(submit(&q, &x), IOTC_OK);
        EXPECT_IDS(&q, 9);
        expect_invariant(&q);
    }
}

/* ---- a long random run against an array model ----------------------------- */

static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t pick(size_t n)
{
    return (size_t)(rng() % n);
}

enum { POOL = 64, STEPS = 200000 };

typedef struct {
    int ids[POOL];
    size_t n;
    int64_t limit;
    iotc_opq_drop drop;
} model;

static void model_insert(model *m, size_t at, int id)
{
    memmove(&m->ids[at + 1], &m->ids[at], (m->n - at) * sizeof m->ids[0]);
    m->ids[at] = id;
    m->n++;
}

static int model_take(model *m, size_t at)
{
    int id = m->ids[at];
    memmove(&m->ids[at], &m->ids[at + 1], (m->n - at - 1) * sizeof m->ids[0]);
    m->n--;
    return id;
}

/* The id the model drops now, or -1. */
static int model_shed(model *m)
{
    if (m->limit < 0 || m->n <= (size_t)m->limit)
        return -1;
    return model_take(m, m->drop == IOTC_OPQ_DROP_OLDEST ? 0 : m->n - 1);
}

static void test_random_operations_against_a_model(void **state)
{
    (void)state;
    rng_state = 2024;
    static op ops[POOL];
    int completions[POOL] = {0};
    int outstanding = 0; /* popped ("on the wire"), not yet completed */
    bool popped[POOL] = {false};
    for (int i = 0; i < POOL; i++)
        op_init(&ops[i], i, (op_kind)(i % 4));
    iotc_opq q;
    model m = {.n = 0, .limit = 8, .drop = IOTC_OPQ_DROP_OLDEST};
    iotc_opq_config c = qcfg(m.limit, m.drop);
    assert_int_equal(iotc_opq_init(&q, &c), IOTC_OK);
    int pushes = 0, completed = 0;

    for (int step = 0; step < STEPS; step++) {
        size_t r = pick(100);
        iotc_opq_item *d = NULL;
        int rc;
        if (r < 40) { /* a new request from a free op */
            size_t i = pick(POOL);
            if (iotc_opq_item_queued(&ops[i].link) || popped[i])
                continue;
            rc = iotc_opq_push(&q, &ops[i].link, &d);
            pushes++;
            if (m.limit == 0) {
                assert_int_equal(rc, IOTC_ERR_QUEUE_OFF);
                assert_null(d);
                completions[i]++;
                continue;
            }
            assert_int_equal(rc, IOTC_OK);
            model_insert(&m, m.n, (int)i);
            int exp = model_shed(&m);
            assert_int_equal(d ? op_of(d)->id : -1, exp);
            if (d)
                completions[op_of(d)->id]++;
        } else if (r < 65) { /* the drain takes one */
            iotc_opq_item *it = iotc_opq_pop(&q);
            if (m.n == 0) {
                assert_null(it);
                continue;
            }
            assert_int_equal(op_of(it)->id, model_take(&m, 0));
            popped[op_of(it)->id] = true;
            outstanding++;
        } else if (r < 80) { /* a send finishes: success or put back */
            if (!outstanding)
                continue;
            size_t i;
            do
                i = pick(POOL);
            while (!popped[i]);
            popped[i] = false;
            outstanding--;
            if (pick(2)) {
                completions[i]++;
                continue;
            }
            rc = iotc_opq_push_front(&q, &ops[i].link, &d);
            if (m.limit == 0) {
                assert_int_equal(rc, IOTC_ERR_QUEUE_OFF);
                completions[i]++;
                continue;
            }
            assert_int_equal(rc, IOTC_OK);
            model_insert(&m, 0, (int)i);
            int exp = model_shed(&m);
            assert_int_equal(d ? op_of(d)->id : -1, exp);
            if (d)
                completions[op_of(d)->id]++;
        } else if (r < 92) { /* an operation times out while queued */
            if (m.n == 0)
                continue;
            size_t at = pick(m.n);
            int id = model_take(&m, at);
            assert_int_equal(iotc_opq_remove(&q, &ops[id].link), IOTC_OK);
            completions[id]++;
        } else if (r < 94) { /* a bogus remove is refused */
            size_t i = pick(POOL);
            if (iotc_opq_item_queued(&ops[i].link))
                continue;
            assert_int_equal(iotc_opq_remove(&q, &ops[i].link), IOTC_ERR_INVALID_ARG);
        } else { /* the application reconfigures */
            const int64_t limits[] = {-1, 0, 1, 2, 5, 8, 16};
            m.limit = limits[pick(7)];
            m.drop = (iotc_opq_drop)pick(2);
            c = qcfg(m.limit, m.drop);
            assert_int_equal(iotc_opq_configure(&q, &c), IOTC_OK);
            iotc_opq_item *it;
            while ((it = iotc_opq_shed(&q))) {
                assert_int_equal(op_of(it)->id, model_shed(&m));
                completions[op_of(it)->id]++;
            }
            assert_int_equal(model_shed(&m), -1);
        }
        /* Same contents, same order, the bound held, the books balance. */
        assert_int_equal(iotc_opq_length(&q), m.n);
        if (m.limit >= 0)
            assert_true(m.n <= (size_t)m.limit);
        size_t k = 0;
        for (iotc_opq_item *it = iotc_opq_first(&q); it; it = iotc_opq_next(&q, it), k++)
            assert_int_equal(op_of(it)->id, m.ids[k]);
        expect_invariant(&q);
    }
    /* Close: flush what is left; every request then completed exactly once. */
    iotc_opq_item *it;
    while ((it = iotc_opq_peek(&q))) {
        iotc_opq_remove(&q, it);
        completions[op_of(it)->id]++;
    }
    for (int i = 0; i < POOL; i++) {
        if (popped[i])
            completions[i]++;
        completed += completions[i];
    }
    assert_int_equal(completed, pushes);
    const iotc_opq_stats *s = iotc_opq_get_stats(&q);
    assert_true(s->dropped > 1000 && s->drained > 1000 && s->requeued > 1000 && s->removed > 1000 &&
                s->refused > 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* the v1 SDKs' bugs, one test each */
        cmocka_unit_test_setup(test_py1_drop_oldest_raises_queue_full_although_the_new_request_was_kept, setup),
        cmocka_unit_test_setup(test_py1_offline_publish_async_loses_its_ack_callback, setup),
        cmocka_unit_test_setup(test_py1_reconfigure_throws_away_the_queue, setup),
        cmocka_unit_test_setup(test_py1_link_drop_mid_drain_loses_the_rest, setup),
        cmocka_unit_test_setup(test_py1_readme_and_code_defaults_disagree, setup),
        cmocka_unit_test_setup(test_py1_queue_size_0_still_queues, setup),
        cmocka_unit_test_setup(test_js1_drop_newest_is_silent, setup),
        cmocka_unit_test_setup(test_js1_queueing_off_discards_without_callback, setup),
        cmocka_unit_test_setup(test_js1_subscribes_overtake_earlier_publishes, setup),
        cmocka_unit_test_setup(test_js1_unsubscribe_on_full_queue_dropped_silently, setup),
        cmocka_unit_test_setup(test_android_2558_bound_never_enforced, setup),
        /* configuration */
        cmocka_unit_test_setup(test_config_validation, setup),
        cmocka_unit_test_setup(test_init_and_configure_refusals_change_nothing, setup),
        /* the calls */
        cmocka_unit_test_setup(test_item_init_and_queued, setup),
        cmocka_unit_test_setup(test_fifo_pop_peek_length, setup),
        cmocka_unit_test_setup(test_unbounded_holds_many, setup),
        cmocka_unit_test_setup(test_drop_oldest_sequence, setup),
        cmocka_unit_test_setup(test_drop_newest_sequence, setup),
        cmocka_unit_test_setup(test_push_refusals_change_nothing, setup),
        cmocka_unit_test_setup(test_push_front_order_and_limits, setup),
        cmocka_unit_test_setup(test_remove_anywhere, setup),
        cmocka_unit_test_setup(test_iterate_and_remove_expired, setup),
        cmocka_unit_test_setup(test_close_flushes_with_one_completion_each, setup),
        cmocka_unit_test_setup(test_configure_to_off_and_back, setup),
        cmocka_unit_test_setup(test_random_operations_against_a_model, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

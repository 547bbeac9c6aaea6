/*
 * svc/svc_base.h: what the service clients (svc/shadow.c, svc/identity.c)
 * share on top of the client API: the lock and the reference count, the
 * pending and completion lists of requests, the timer that expires them on
 * the service thread, the pair of subscriptions (accepted, rejected) per
 * operation, closing on the service thread, and the box a blocking helper
 * waits on.  Each client keeps its own protocol core, how a request is
 * matched to its answer (a clientToken for the shadow, one outstanding
 * request per channel for fleet provisioning), what it publishes and what
 * it delivers.
 *
 * A client embeds an iotc_svc as its first member and its request struct
 * an iotc_svc_req as its first member, so that the pointers convert both
 * ways; iotc_svc_ops is how this module calls back into the client.
 *
 * Locking.  `mu` is a leaf lock: never held while calling into the client
 * (iotc_subscribe, iotc_publish, iotc_client_call_after...) or a user
 * callback.  The client calls us (message, SUBACK, PUBACK and timer
 * callbacks) while holding its own lock, so the order is always client
 * lock, then `mu`.  Each function says whether it wants `mu` held.
 *
 * Lifetime.  The client keeps our pointer in outstanding operations and
 * timers, so the struct is reference-counted: the user holds one reference,
 * each SUBSCRIBE, PUBLISH and timer started holds one, and ops->destroy
 * runs with the last.
 */
#ifndef IOTC_SVC_BASE_H
#define IOTC_SVC_BASE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iotc/client.h"

typedef enum { IOTC_SVC_SUB_NONE, IOTC_SVC_SUB_PENDING, IOTC_SVC_SUB_READY } iotc_svc_sub_state;

typedef struct iotc_svc iotc_svc;

/* The done-callback context of one SUBSCRIBE of a pair. */
typedef struct {
    iotc_svc *b;
    int i; /* the pair's index */
} iotc_svc_subctx;

/* One operation's (or channel's) subscriptions to its accepted and
 * rejected topics, subscribed together before its first request. */
typedef struct {
    iotc_svc_sub_state state;
    int wait;   /* SUBACKs still expected */
    int err;    /* the first failure among them */
    bool tried; /* subscribed at least once: unsubscribe at close */
    iotc_svc_subctx ctx;
} iotc_svc_sub;

/* The first member of a client's request. */
typedef struct iotc_svc_req {
    struct iotc_svc_req *next;
    int sub;        /* the index of the pair its answer comes on */
    bool published; /* its PUBLISH went to the client */
    int status;     /* on a completion list: the status to deliver */
} iotc_svc_req;

typedef struct {
    /* The last reference is gone: free the client (its core, its memory). */
    void (*destroy)(iotc_svc *b);
    /* Call r's callback with r->status and no document, and free r. */
    void (*deliver_status)(iotc_svc *b, iotc_svc_req *r);
    /* mu held: take out of the core one request whose deadline is at or
     * before `now`; NULL when none. */
    iotc_svc_req *(*take_due)(iotc_svc *b, uint64_t now);
    /* mu held: take out of the core any pending request; NULL when none. */
    iotc_svc_req *(*take_any)(iotc_svc *b);
    /* mu held: the core's earliest deadline, UINT64_MAX none. */
    uint64_t (*next_deadline)(const iotc_svc *b);
    /* The SUBACKs of pair `i` (see iotc_svc_sub_settle). */
    void (*subacks_in)(iotc_svc *b, int i, int status, int n);
    /* On the service thread: complete everything, unsubscribe (see
     * iotc_svc_close_begin, iotc_svc_close_end). */
    void (*close)(iotc_svc *b, bool client_alive);
} iotc_svc_ops;

struct iotc_svc {
    iotc_client *c;
    const iotc_svc_ops *ops;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* close_done, and the blocking helpers' boxes */
    int refs;
    bool closed;     /* closing began: nothing new starts, nothing more is delivered */
    bool close_done; /* closing finished on the service thread */
    iotc_svc_sub *subs;
    int nsubs;
    iotc_svc_req *reqs;     /* pending, in the core's table too */
    iotc_svc_req *deferred; /* completed off the service thread, to deliver there */
    bool flush_armed;
    uint64_t timer_at; /* the deadline of the earliest timer armed, UINT64_MAX none */
};

/* The monotonic clock the cores get, in ms (the client's own). */
uint64_t iotc_svc_now_ms(void);

/* Sets up `b` with one reference (the user's); `subs` (nsubs of them,
 * zeroed) stays the caller's. */
void iotc_svc_init(iotc_svc *b, iotc_client *c, const iotc_svc_ops *ops, iotc_svc_sub *subs, int nsubs);

void iotc_svc_ref(iotc_svc *b);
void iotc_svc_unref_n(iotc_svc *b, int n);
void iotc_svc_unref(iotc_svc *b);

/* mu held: adds `r` to the pending list / takes it off (the core's table
 * is the caller's business). */
void iotc_svc_link(iotc_svc *b, iotc_svc_req *r);
void iotc_svc_unlink(iotc_svc *b, iotc_svc_req *r);

/* mu not held: completes the requests of `list` (linked by next, each with
 * its status) through ops->deliver_status: now on the service thread, else
 * handed to it with a 0 ms timer. */
void iotc_svc_complete(iotc_svc *b, iotc_svc_req *list);

/* ---- timeouts ---- */

/* mu held: whether a timer must be armed for the core's earliest deadline,
 * and in how many ms (a reference is taken for it).  Timers already armed
 * for later deadlines stay: each one, when it fires, expires what is due
 * and plans again, so an extra one costs a wake-up and a missing one
 * cannot happen. */
bool iotc_svc_plan_timer(iotc_svc *b, uint64_t now, uint32_t *ms);

/* mu not held: arms what iotc_svc_plan_timer decided; false when the
 * client could not, and then the plan is undone. */
bool iotc_svc_arm_timer(iotc_svc *b, uint32_t ms);

/* ---- subscriptions ---- */

/* mu held: a disconnect ended the session, and our subscriptions with it. */
void iotc_svc_forget_subscriptions(iotc_svc *b);

/* mu held: when pair `i` is not subscribed, marks it pending, takes the
 * two references its SUBACKs will drop, and returns true: the caller then
 * calls iotc_svc_subscribe_pair. */
bool iotc_svc_sub_start(iotc_svc *b, int i);

/* mu held: `n` SUBACKs of pair `i` came in (or will not come: a refused
 * call counts for those not acknowledged) with `status`.  True when that
 * was the last and the client is not closing: the pair is then READY (its
 * err IOTC_OK) or NONE again (err the first failure), and the caller
 * publishes or fails what waited for it. */
bool iotc_svc_sub_settle(iotc_svc *b, int i, int status, int n);

/* mu not held: subscribes pair `i` to topics[0] and topics[1] (references
 * taken by iotc_svc_sub_start), their messages to on_msg with `b`.
 * IOTC_OK, or the refusal of a call, and then *unacked (1 or 2) SUBACKs
 * will never come: the caller settles them and drops their references. */
int iotc_svc_subscribe_pair(iotc_svc *b, int i, const char *const topics[2], iotc_message_fn on_msg, int *unacked);

/* ---- closing ---- */

/* mu held: starts closing; false when it had begun already.  *done gets
 * every request to complete (the deferred ones, then each pending one,
 * status IOTC_ERR_CLOSED); no timer will be armed any more. */
bool iotc_svc_close_begin(iotc_svc *b, iotc_svc_req **done);

/* mu not held: finishes closing: delivers `done`, and when the client is
 * alive cancels the timers and unsubscribes `topics` (every filter ever
 * asked for, so that the client stops calling on_msg with our pointer). */
void iotc_svc_close_end(iotc_svc *b, iotc_svc_req *done, bool client_alive, const char *const *topics, size_t nt);

/* The user's free: closes on the service thread (waiting for it from any
 * other) and drops the user's reference. */
void iotc_svc_free(iotc_svc *b);

/* ---- blocking helpers ---- */

/* Shared by the waiting thread and the callback: whoever is last frees it
 * with `release`, so a wait that gave up leaves nothing dangling.  The
 * first member of a client's box. */
typedef struct iotc_svc_box {
    int refs;
    bool done;
    void (*release)(struct iotc_svc_box *w);
} iotc_svc_box;

/* A new box of `size` bytes (zeroed, two references), NULL out of memory. */
void *iotc_svc_box_new(size_t size, void (*release)(iotc_svc_box *w));

/* mu held: drops one reference. */
void iotc_svc_box_put(iotc_svc_box *w);

/* mu held: the callback's end: marks `w` done, drops its reference and
 * wakes the waiter. */
void iotc_svc_box_done(iotc_svc *b, iotc_svc_box *w);

/* mu held: waits until `w` is done or timeout_ms and a margin (a service
 * thread stuck in someone's callback) passed; whether it is done. */
bool iotc_svc_box_wait(iotc_svc *b, iotc_svc_box *w, uint32_t timeout_ms);

#endif

/*
 * svc/svc_base.c: see svc_base.h.  Everything the client reports reaches
 * us on the service thread, so completions are delivered right there; the
 * exception is a request that fails inside a call made on another thread
 * (a SUBSCRIBE the client refused at its call, failing the requests that
 * were waiting for it): those are handed to the service thread with a 0 ms
 * timer, to keep the contract that callbacks run there.
 */
#include <stdlib.h>
#include <time.h>

#include "svc/svc_base.h"

uint64_t iotc_svc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void iotc_svc_init(iotc_svc *b, iotc_client *c, const iotc_svc_ops *ops, iotc_svc_sub *subs, int nsubs)
{
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->c = c;
    b->ops = ops;
    b->refs = 1;
    b->timer_at = UINT64_MAX;
    b->subs = subs;
    b->nsubs = nsubs;
    for (int i = 0; i < nsubs; i++)
        subs[i].ctx = (iotc_svc_subctx){b, i};
}

/* ---- references ------------------------------------------------------------------------ */

void iotc_svc_ref(iotc_svc *b)
{
    pthread_mutex_lock(&b->mu);
    b->refs++;
    pthread_mutex_unlock(&b->mu);
}

void iotc_svc_unref_n(iotc_svc *b, int n)
{
    if (n <= 0)
        return;
    pthread_mutex_lock(&b->mu);
    b->refs -= n;
    bool last = b->refs == 0;
    pthread_mutex_unlock(&b->mu);
    if (last) {
        pthread_cond_destroy(&b->cv);
        pthread_mutex_destroy(&b->mu);
        b->ops->destroy(b);
    }
}

void iotc_svc_unref(iotc_svc *b)
{
    iotc_svc_unref_n(b, 1);
}

/* ---- requests and their completion ------------------------------------------------------ */

void iotc_svc_link(iotc_svc *b, iotc_svc_req *r)
{
    r->next = b->reqs;
    b->reqs = r;
}

void iotc_svc_unlink(iotc_svc *b, iotc_svc_req *r)
{
    for (iotc_svc_req **p = &b->reqs; *p; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            r->next = NULL;
            return;
        }
    }
}

static void deliver_list(iotc_svc *b, iotc_svc_req *list)
{
    while (list) {
        iotc_svc_req *r = list;
        list = r->next;
        b->ops->deliver_status(b, r);
    }
}

/* mu not held: delivers what was deferred. */
static void flush(iotc_svc *b)
{
    pthread_mutex_lock(&b->mu);
    iotc_svc_req *l = b->deferred;
    b->deferred = NULL;
    b->flush_armed = false;
    pthread_mutex_unlock(&b->mu);
    deliver_list(b, l);
    iotc_svc_unref(b);
}

static void on_flush(iotc_client *c, int status, void *user)
{
    (void)c;
    (void)status; /* CLOSED (the client is being freed): deliver all the same */
    flush(user);
}

void iotc_svc_complete(iotc_svc *b, iotc_svc_req *list)
{
    if (!list)
        return;
    if (iotc_client_on_service_thread(b->c)) {
        deliver_list(b, list);
        return;
    }
    pthread_mutex_lock(&b->mu);
    iotc_svc_req **tail = &b->deferred;
    while (*tail)
        tail = &(*tail)->next;
    *tail = list;
    bool arm = !b->flush_armed;
    if (arm) {
        b->flush_armed = true;
        b->refs++;
    }
    pthread_mutex_unlock(&b->mu);
    if (arm && iotc_client_call_after(b->c, 0, on_flush, b) != IOTC_OK)
        flush(b); /* no timer (out of memory): deliver here rather than never */
}

/* ---- timeouts ---------------------------------------------------------------------------- */

bool iotc_svc_plan_timer(iotc_svc *b, uint64_t now, uint32_t *ms)
{
    uint64_t next = b->ops->next_deadline(b);
    if (next == UINT64_MAX || next >= b->timer_at)
        return false;
    b->timer_at = next;
    b->refs++;
    uint64_t d = next > now ? next - now : 0;
    *ms = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
    return true;
}

static void on_timer(iotc_client *c, int status, void *user)
{
    (void)c;
    iotc_svc *b = user;
    if (status != IOTC_OK) { /* the client is being freed: closing will do */
        iotc_svc_unref(b);
        return;
    }
    iotc_svc_req *expired = NULL, **tail = &expired, *r;
    uint32_t ms = 0;
    pthread_mutex_lock(&b->mu);
    b->timer_at = UINT64_MAX;
    uint64_t now = iotc_svc_now_ms();
    while (!b->closed && (r = b->ops->take_due(b, now)) != NULL) {
        iotc_svc_unlink(b, r);
        /* A request that went out and got no answer may mean that the
         * session (and our subscription with it) ended under us, e.g. a
         * disconnect and connect: subscribe again before the next one. */
        if (r->published && b->subs[r->sub].state == IOTC_SVC_SUB_READY)
            b->subs[r->sub].state = IOTC_SVC_SUB_NONE;
        r->status = IOTC_ERR_TIMEOUT;
        *tail = r;
        tail = &r->next;
    }
    bool arm = !b->closed && iotc_svc_plan_timer(b, now, &ms);
    pthread_mutex_unlock(&b->mu);
    if (arm)
        iotc_svc_arm_timer(b, ms);
    iotc_svc_complete(b, expired); /* on the service thread: delivered now */
    iotc_svc_unref(b);
}

bool iotc_svc_arm_timer(iotc_svc *b, uint32_t ms)
{
    if (iotc_client_call_after(b->c, ms, on_timer, b) == IOTC_OK)
        return true;
    pthread_mutex_lock(&b->mu);
    b->timer_at = UINT64_MAX;
    b->refs--; /* the caller holds a reference too: never the last */
    pthread_mutex_unlock(&b->mu);
    return false;
}

/* ---- subscriptions ----------------------------------------------------------------------- */

void iotc_svc_forget_subscriptions(iotc_svc *b)
{
    for (int i = 0; i < b->nsubs; i++)
        if (b->subs[i].state == IOTC_SVC_SUB_READY)
            b->subs[i].state = IOTC_SVC_SUB_NONE;
}

bool iotc_svc_sub_start(iotc_svc *b, int i)
{
    iotc_svc_sub *p = &b->subs[i];
    if (p->state != IOTC_SVC_SUB_NONE)
        return false;
    p->state = IOTC_SVC_SUB_PENDING;
    p->tried = true;
    p->wait = 2;
    p->err = IOTC_OK;
    b->refs += 2;
    return true;
}

bool iotc_svc_sub_settle(iotc_svc *b, int i, int status, int n)
{
    iotc_svc_sub *p = &b->subs[i];
    p->wait -= n;
    if (status != IOTC_OK && p->err == IOTC_OK)
        p->err = status;
    if (p->wait > 0 || b->closed)
        return false;
    p->state = p->err == IOTC_OK ? IOTC_SVC_SUB_READY : IOTC_SVC_SUB_NONE;
    return true;
}

static void on_suback(int status, uint8_t granted, void *user)
{
    iotc_svc_subctx *sx = user;
    iotc_svc *b = sx->b;
    if (status == IOTC_OK && granted == 0x80) {
        status = IOTC_ERR_REFUSED;
    } else if (status == IOTC_ERR_CLOSED) {
        pthread_mutex_lock(&b->mu);
        iotc_svc_forget_subscriptions(b);
        pthread_mutex_unlock(&b->mu);
    }
    b->ops->subacks_in(b, sx->i, status, 1);
    iotc_svc_unref(b);
}

int iotc_svc_subscribe_pair(iotc_svc *b, int i, const char *const topics[2], iotc_message_fn on_msg, int *unacked)
{
    *unacked = 0;
    for (int k = 0; k < 2; k++) {
        int rc = iotc_subscribe(b->c, topics[k], 1, on_msg, b, on_suback, &b->subs[i].ctx);
        if (rc != IOTC_OK) {
            /* This one and any not tried will never be acknowledged. */
            *unacked = 2 - k;
            return rc;
        }
    }
    return IOTC_OK;
}

/* ---- closing ----------------------------------------------------------------------------- */

bool iotc_svc_close_begin(iotc_svc *b, iotc_svc_req **done)
{
    *done = NULL;
    if (b->closed)
        return false;
    b->closed = true;
    iotc_svc_req **tail = done, *r;
    *done = b->deferred;
    b->deferred = NULL;
    while (*tail)
        tail = &(*tail)->next;
    while ((r = b->ops->take_any(b)) != NULL) {
        iotc_svc_unlink(b, r);
        r->status = IOTC_ERR_CLOSED;
        *tail = r;
        tail = &r->next;
    }
    return true;
}

void iotc_svc_close_end(iotc_svc *b, iotc_svc_req *done, bool client_alive, const char *const *topics, size_t nt)
{
    deliver_list(b, done);
    int cancelled = 0;
    bool pinned = false;
    if (client_alive) {
        /* Our timers hold references: cancelled ones will not drop them. */
        cancelled += iotc_client_cancel_calls(b->c, on_timer, b);
        cancelled += iotc_client_cancel_calls(b->c, on_flush, b);
        for (size_t i = 0; i < nt; i++)
            if (iotc_unsubscribe(b->c, topics[i], NULL, NULL) != IOTC_OK)
                pinned = true;
    }
    pthread_mutex_lock(&b->mu);
    b->refs -= cancelled > 0 ? cancelled : 0;
    /* An unsubscribe refused at its call (offline with the queue off, out
     * of memory) leaves the client holding our pointer for that filter's
     * messages: keep the memory (on_msg sees `closed` and returns) rather
     * than let the client call into freed memory.  A small leak, only then. */
    if (pinned)
        b->refs++;
    b->close_done = true;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static void on_close(iotc_client *c, int status, void *user)
{
    (void)c;
    iotc_svc *b = user;
    b->ops->close(b, status == IOTC_OK);
    iotc_svc_unref(b);
}

void iotc_svc_free(iotc_svc *b)
{
    if (iotc_client_on_service_thread(b->c)) {
        b->ops->close(b, true);
    } else {
        /* Close on the service thread, where no callback of ours can be
         * running, and wait for it. */
        iotc_svc_ref(b);
        if (iotc_client_call_after(b->c, 0, on_close, b) != IOTC_OK) {
            iotc_svc_unref(b);
            b->ops->close(b, false); /* no timer: the client is going away */
        }
        pthread_mutex_lock(&b->mu);
        while (!b->close_done)
            pthread_cond_wait(&b->cv, &b->mu);
        pthread_mutex_unlock(&b->mu);
    }
    iotc_svc_unref(b); /* the user's */
}

/* ---- blocking helpers ---------------------------------------------------------------------- */

/* Beyond the request's own timeout, how long to wait for its callback
 * before giving up (a service thread stuck in someone's callback). */
#define WAIT_MARGIN_MS 5000u

void *iotc_svc_box_new(size_t size, void (*release)(iotc_svc_box *w))
{
    iotc_svc_box *w = calloc(1, size);
    if (w) {
        w->refs = 2;
        w->release = release;
    }
    return w;
}

void iotc_svc_box_put(iotc_svc_box *w)
{
    if (--w->refs == 0)
        w->release(w);
}

void iotc_svc_box_done(iotc_svc *b, iotc_svc_box *w)
{
    w->done = true;
    iotc_svc_box_put(w);
    pthread_cond_broadcast(&b->cv);
}

bool iotc_svc_box_wait(iotc_svc *b, iotc_svc_box *w, uint32_t timeout_ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    uint64_t ms = (uint64_t)timeout_ms + WAIT_MARGIN_MS;
    dl.tv_sec += (time_t)(ms / 1000);
    dl.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    int e = 0;
    while (!w->done && e == 0)
        e = pthread_cond_timedwait(&b->cv, &b->mu, &dl);
    return w->done;
}

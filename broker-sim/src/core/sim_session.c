/* sim_session.c: see sim_session.h. */
#include "sim_session.h"

#include <stdlib.h>
#include <string.h>

sim_session *sim_session_new(const char *client_id, iotc_mqtt_version v, uint64_t serial, const char sid[37])
{
    sim_session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->client_id = strdup(client_id);
    if (!s->client_id) {
        free(s);
        return NULL;
    }
    s->version = v;
    s->serial = serial;
    s->next_pid = 1;
    memcpy(s->sid, sid, 37);
    return s;
}

void sim_fifo_clear(sim_fifo *f)
{
    sim_item it;
    while (sim_fifo_pop(f, &it))
        sim_msg_unref(it.m);
    free(f->v);
    memset(f, 0, sizeof *f);
}

void sim_session_free(sim_session *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nsubs; i++)
        free(s->subs[i].filter);
    free(s->subs);
    sim_fifo_clear(&s->stored);
    sim_fifo_clear(&s->pending);
    sim_msg_unref(s->stash.m);
    for (size_t i = 0; i < s->nfl; i++)
        sim_msg_unref(s->fl[i].it.m);
    free(s->fl);
    free(s->client_id);
    free(s);
}

static bool fifo_grow(sim_fifo *f)
{
    if (f->len < f->cap)
        return true;
    size_t ncap = f->cap ? f->cap * 2 : 16;
    sim_item *v = malloc(ncap * sizeof *v);
    if (!v)
        return false;
    for (size_t i = 0; i < f->len; i++)
        v[i] = f->v[(f->head + i) % f->cap];
    free(f->v);
    f->v = v;
    f->cap = ncap;
    f->head = 0;
    return true;
}

bool sim_fifo_push(sim_fifo *f, sim_item it)
{
    if (!fifo_grow(f))
        return false;
    f->v[(f->head + f->len) % f->cap] = it;
    f->len++;
    return true;
}

bool sim_fifo_push_front(sim_fifo *f, sim_item it)
{
    if (!fifo_grow(f))
        return false;
    f->head = (f->head + f->cap - 1) % f->cap;
    f->v[f->head] = it;
    f->len++;
    return true;
}

bool sim_fifo_pop(sim_fifo *f, sim_item *out)
{
    if (!f->len)
        return false;
    *out = f->v[f->head];
    f->head = (f->head + 1) % f->cap;
    f->len--;
    return true;
}

bool sim_session_subscribe(sim_session *s, const char *filter, size_t len, const sim_sub *opts, bool *added,
                           size_t *at)
{
    for (size_t i = 0; i < s->nsubs; i++) {
        if (s->subs[i].len == len && memcmp(s->subs[i].filter, filter, len) == 0) {
            char *keep = s->subs[i].filter;
            s->subs[i] = *opts;
            s->subs[i].filter = keep;
            s->subs[i].len = len;
            *added = false;
            *at = i;
            return true;
        }
    }
    if (s->nsubs == s->subcap) {
        size_t ncap = s->subcap ? s->subcap * 2 : 8;
        sim_sub *n = realloc(s->subs, ncap * sizeof *n);
        if (!n)
            return false;
        s->subs = n;
        s->subcap = ncap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return false;
    memcpy(copy, filter, len);
    copy[len] = 0;
    s->subs[s->nsubs] = *opts;
    s->subs[s->nsubs].filter = copy;
    s->subs[s->nsubs].len = len;
    *at = s->nsubs++;
    *added = true;
    return true;
}

bool sim_session_unsubscribe(sim_session *s, const char *filter, size_t len)
{
    for (size_t i = 0; i < s->nsubs; i++) {
        if (s->subs[i].len == len && memcmp(s->subs[i].filter, filter, len) == 0) {
            free(s->subs[i].filter);
            memmove(&s->subs[i], &s->subs[i + 1], (s->nsubs - i - 1) * sizeof s->subs[0]);
            s->nsubs--;
            return true;
        }
    }
    return false;
}

static bool pid_in_use(const sim_session *s, uint16_t pid)
{
    for (size_t i = 0; i < s->nfl; i++)
        if (s->fl[i].pid == pid)
            return true;
    return false;
}

uint16_t sim_session_next_pid(sim_session *s)
{
    /* The window holds at most a few hundred, so a free id is always near. */
    for (;;) {
        uint16_t pid = s->next_pid;
        s->next_pid = (uint16_t)(pid == 65535 ? 1 : pid + 1);
        if (!pid_in_use(s, pid))
            return pid;
    }
}

bool sim_session_add_flight(sim_session *s, uint16_t pid, sim_item it, uint64_t now_ms)
{
    if (s->nfl == s->flcap) {
        size_t ncap = s->flcap ? s->flcap * 2 : 16;
        sim_flight *n = realloc(s->fl, ncap * sizeof *n);
        if (!n)
            return false;
        s->fl = n;
        s->flcap = ncap;
    }
    s->fl[s->nfl].pid = pid;
    s->fl[s->nfl].it = it;
    s->fl[s->nfl].first_sent = now_ms;
    s->fl[s->nfl].last_sent = now_ms;
    s->nfl++;
    return true;
}

bool sim_session_ack(sim_session *s, uint16_t pid, sim_item *out)
{
    for (size_t i = 0; i < s->nfl; i++) {
        if (s->fl[i].pid == pid) {
            *out = s->fl[i].it;
            memmove(&s->fl[i], &s->fl[i + 1], (s->nfl - i - 1) * sizeof s->fl[0]);
            s->nfl--;
            return true;
        }
    }
    return false;
}

void sim_session_requeue(sim_session *s)
{
    if (s->stash.m) { /* a held-back delivery is still owed */
        if (!sim_fifo_push(&s->pending, s->stash))
            sim_msg_unref(s->stash.m);
        s->stash.m = NULL;
    }
    /* Pending first (they go behind the flights), each pushed to the front in
     * reverse so that the original order is kept. */
    sim_item it;
    sim_fifo tmp = {0};
    while (sim_fifo_pop(&s->pending, &it)) {
        if (it.qos == 0 || !sim_fifo_push(&tmp, it))
            sim_msg_unref(it.m); /* QoS 0 is not stored */
    }
    for (size_t i = tmp.len; i-- > 0;) {
        sim_item x = tmp.v[(tmp.head + i) % tmp.cap];
        if (!sim_fifo_push_front(&s->stored, x))
            sim_msg_unref(x.m);
    }
    free(tmp.v);
    for (size_t i = s->nfl; i-- > 0;) {
        if (!sim_fifo_push_front(&s->stored, s->fl[i].it))
            sim_msg_unref(s->fl[i].it.m);
    }
    s->nfl = 0;
}

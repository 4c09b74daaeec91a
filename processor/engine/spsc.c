/*
 * processor/spsc.c - see spsc.h.
 *
 * Layout: a byte ring of power-of-two size; head and tail are free-running
 * byte counters (position = counter & mask). An entry is an 8-byte header
 * holding its length, then the payload padded to 8 bytes. An entry never
 * wraps: when it does not fit before the end of the ring, a header with
 * length WRAP fills the rest and the entry starts at position 0.
 *
 * Waiting: a side that must wait sets its flag, re-checks under the mutex
 * and sleeps on the condition variable; the other side signals only when it
 * sees the flag. The flag store and the counter load are sequentially
 * consistent on both sides (Dekker), so a wake-up is never lost; waits also
 * time out as a safety net.
 */
#include "spsc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "common.h"

#define HDR 8u
#define WRAP UINT64_MAX

struct weir_spsc {
    uint8_t *buf;
    size_t cap, mask;
    _Atomic size_t head; /* producer: bytes published */
    _Atomic size_t tail; /* consumer: bytes released */
    size_t pending;      /* producer: head after the reserved entry */
    size_t next;         /* consumer: tail after the peeked entry */
    atomic_bool cons_waiting, prod_waiting;
    pthread_mutex_t mu;
    pthread_cond_t cons_cv, prod_cv;
};

static size_t pad8(size_t n) { return (n + 7u) & ~(size_t)7u; }

static void die(const char *what, size_t n) {
    fprintf(stderr, "weir: spsc: %s (%zu bytes)\n", what, n);
    abort();
}

weir_spsc_t *weir_spsc_new(size_t cap) {
    size_t c = 4096;
    while (c < cap)
        c <<= 1;
    weir_spsc_t *q = weir_calloc(1, sizeof(*q));
    if (posix_memalign((void **)&q->buf, 64, c) != 0)
        die("out of memory", c);
    q->cap = c;
    q->mask = c - 1;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cons_cv, NULL);
    pthread_cond_init(&q->prod_cv, NULL);
    return q;
}

void weir_spsc_destroy(weir_spsc_t *q) {
    if (!q)
        return;
    pthread_cond_destroy(&q->cons_cv);
    pthread_cond_destroy(&q->prod_cv);
    pthread_mutex_destroy(&q->mu);
    free(q->buf);
    free(q);
}

size_t weir_spsc_max_entry(const weir_spsc_t *q) { return q->cap / 2 - HDR; }

static void deadline(struct timespec *ts, int ms) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Producer: wait until at least `need` bytes are free (or, need == cap, all). */
static void wait_room(weir_spsc_t *q, size_t head, size_t need) {
    while (q->cap - (head - atomic_load(&q->tail)) < need) {
        pthread_mutex_lock(&q->mu);
        atomic_store(&q->prod_waiting, true);
        if (q->cap - (head - atomic_load(&q->tail)) < need) {
            struct timespec ts;
            deadline(&ts, 100);
            pthread_cond_timedwait(&q->prod_cv, &q->mu, &ts);
        }
        atomic_store(&q->prod_waiting, false);
        pthread_mutex_unlock(&q->mu);
    }
}

void *weir_spsc_reserve(weir_spsc_t *q, size_t n) {
    size_t size = HDR + pad8(n);
    if (size > q->cap / 2)
        die("entry larger than half the ring", n);
    size_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
    size_t pos = head & q->mask;
    if (pos + size > q->cap) {
        /* fill the rest of the ring with a WRAP marker, start over at 0 */
        size_t rest = q->cap - pos;
        wait_room(q, head, rest + size);
        uint64_t w = WRAP;
        __builtin_memcpy(q->buf + pos, &w, sizeof(w));
        head += rest;
        pos = 0;
    } else {
        wait_room(q, head, size);
    }
    uint64_t len = n;
    __builtin_memcpy(q->buf + pos, &len, sizeof(len));
    q->pending = head + size;
    return q->buf + pos + HDR;
}

void weir_spsc_push(weir_spsc_t *q) {
    atomic_store(&q->head, q->pending); /* seq_cst: pairs with cons_waiting */
    if (atomic_load(&q->cons_waiting)) {
        pthread_mutex_lock(&q->mu);
        pthread_cond_signal(&q->cons_cv);
        pthread_mutex_unlock(&q->mu);
    }
}

void weir_spsc_drain(weir_spsc_t *q) { wait_room(q, atomic_load_explicit(&q->head, memory_order_relaxed), q->cap); }

const void *weir_spsc_peek(weir_spsc_t *q, size_t *n) {
    size_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
    size_t head = atomic_load_explicit(&q->head, memory_order_acquire);
    if (tail == head)
        return NULL;
    uint64_t len;
    __builtin_memcpy(&len, q->buf + (tail & q->mask), sizeof(len));
    if (len == WRAP) {
        tail += q->cap - (tail & q->mask);
        __builtin_memcpy(&len, q->buf, sizeof(len));
    }
    q->next = tail + HDR + pad8((size_t)len);
    *n = (size_t)len;
    return q->buf + (tail & q->mask) + HDR;
}

void weir_spsc_pop(weir_spsc_t *q) {
    atomic_store(&q->tail, q->next); /* seq_cst: pairs with prod_waiting */
    if (atomic_load(&q->prod_waiting)) {
        pthread_mutex_lock(&q->mu);
        pthread_cond_signal(&q->prod_cv);
        pthread_mutex_unlock(&q->mu);
    }
}

bool weir_spsc_wait(weir_spsc_t *q, int timeout_ms) {
    if (atomic_load(&q->head) != atomic_load_explicit(&q->tail, memory_order_relaxed))
        return true;
    pthread_mutex_lock(&q->mu);
    atomic_store(&q->cons_waiting, true);
    if (atomic_load(&q->head) == atomic_load_explicit(&q->tail, memory_order_relaxed)) {
        struct timespec ts;
        deadline(&ts, timeout_ms);
        pthread_cond_timedwait(&q->cons_cv, &q->mu, &ts);
    }
    atomic_store(&q->cons_waiting, false);
    pthread_mutex_unlock(&q->mu);
    return atomic_load(&q->head) != atomic_load_explicit(&q->tail, memory_order_relaxed);
}

void weir_spsc_wake(weir_spsc_t *q) {
    pthread_mutex_lock(&q->mu);
    pthread_cond_signal(&q->cons_cv);
    pthread_mutex_unlock(&q->mu);
}

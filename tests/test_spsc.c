/* Unit tests of processor/spsc.c: order, contents, wrap-around, blocking, drain. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "spsc.h"

/* Entry i: size and bytes derived from i alone, so the consumer checks it independently. */
static size_t size_of(uint64_t i) { return (size_t)((i * 2654435761u) % 301); }
static uint8_t byte_of(uint64_t i, size_t k) { return (uint8_t)(i * 31 + k * 7 + 1); }

static void fill(uint8_t *p, uint64_t i) {
    for (size_t k = 0; k < size_of(i); k++)
        p[k] = byte_of(i, k);
}

static bool check(const uint8_t *p, size_t n, uint64_t i) {
    if (n != size_of(i))
        return false;
    for (size_t k = 0; k < n; k++)
        if (p[k] != byte_of(i, k))
            return false;
    return true;
}

Test(spsc, one_thread_order_contents_and_wrap) {
    weir_spsc_t *q = weir_spsc_new(4096);
    size_t n;
    cr_assert_null(weir_spsc_peek(q, &n), "a new ring is empty");
    uint64_t in = 0, out = 0;
    /* push a few, pop a few, many times round the ring */
    for (int round = 0; round < 2000; round++) {
        for (int k = 0; k < 5; k++, in++) {
            uint8_t *p = weir_spsc_reserve(q, size_of(in));
            cr_assert_eq((uintptr_t)p % 8, 0, "entries are 8-byte aligned");
            fill(p, in);
            weir_spsc_push(q);
        }
        while (out < in) {
            const uint8_t *p = weir_spsc_peek(q, &n);
            cr_assert_not_null(p, "entry %llu missing", (unsigned long long)out);
            cr_assert(check(p, n, out), "entry %llu corrupt (size %zu)", (unsigned long long)out, n);
            weir_spsc_pop(q);
            out++;
        }
        cr_assert_null(weir_spsc_peek(q, &n));
    }
    cr_assert_gt(in * 150, 4096 * 50, "the test went round the ring many times");
    cr_assert_eq(weir_spsc_max_entry(q), 4096 / 2 - 8);
    weir_spsc_destroy(q);
}

Test(spsc, reserve_is_invisible_until_push) {
    weir_spsc_t *q = weir_spsc_new(4096);
    size_t n;
    memset(weir_spsc_reserve(q, 10), 7, 10);
    cr_assert_null(weir_spsc_peek(q, &n));
    weir_spsc_push(q);
    const uint8_t *p = weir_spsc_peek(q, &n);
    cr_assert_not_null(p);
    cr_assert_eq(n, 10);
    cr_assert_eq(p[9], 7);
    weir_spsc_destroy(q);
}

typedef struct {
    weir_spsc_t *q;
    uint64_t count;
    _Atomic uint64_t popped;
    atomic_bool stop, bad;
} shared_t;

static void *consumer(void *arg) {
    shared_t *s = arg;
    uint64_t i = 0;
    while (i < s->count) {
        size_t n;
        const uint8_t *p = weir_spsc_peek(s->q, &n);
        if (!p) {
            weir_spsc_wait(s->q, 50);
            continue;
        }
        if (!check(p, n, i))
            atomic_store(&s->bad, true);
        /* done with the entry (as weir's hand-off thread is once librdkafka has
         * copied it), then release it: a drain must not return before this */
        i++;
        atomic_store(&s->popped, i);
        weir_spsc_pop(s->q);
    }
    return NULL;
}

Test(spsc, two_threads_small_ring_with_drains, .timeout = 60) {
    shared_t s = {.q = weir_spsc_new(4096), .count = 300000};
    pthread_t th;
    pthread_create(&th, NULL, consumer, &s);
    for (uint64_t i = 0; i < s.count; i++) {
        fill(weir_spsc_reserve(s.q, size_of(i)), i);
        weir_spsc_push(s.q);
        if (i % 9973 == 0) {
            weir_spsc_drain(s.q);
            /* drain returns only when the consumer released everything pushed */
            cr_assert_eq(atomic_load(&s.popped), i + 1, "drain returned at %llu with %llu popped",
                         (unsigned long long)i, (unsigned long long)atomic_load(&s.popped));
        }
    }
    weir_spsc_drain(s.q);
    cr_assert_eq(atomic_load(&s.popped), s.count);
    pthread_join(th, NULL);
    cr_assert(!atomic_load(&s.bad), "the consumer saw an entry out of order or corrupt");
    weir_spsc_destroy(s.q);
}

Test(spsc, wake_ends_a_wait_early) {
    weir_spsc_t *q = weir_spsc_new(4096);
    weir_spsc_wake(q); /* no waiter: harmless */
    cr_assert(!weir_spsc_wait(q, 1), "empty ring: wait times out with false");
    weir_spsc_reserve(q, 1);
    weir_spsc_push(q);
    cr_assert(weir_spsc_wait(q, 1000), "an entry is there");
    weir_spsc_destroy(q);
}

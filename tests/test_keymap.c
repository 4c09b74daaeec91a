/*
 * weir_keymap (processor/core/keymap.h) against an independent model: an array
 * of (key bytes, value) in insertion order, searched by a linear scan. Random
 * adds, finds, touches and removals with many keys (growth of every array),
 * keys with NUL bytes and the empty key; iteration order checked after every
 * phase.
 * Also the key rendering of processor/core/key.h.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "key.h"
#include "keymap.h"

typedef struct mkey {
    char k[40];
    size_t n;
    uint64_t val;
} mkey_t;

typedef struct model {
    mkey_t *v;
    size_t n, cap;
} model_t;

static long model_find(const model_t *m, const char *k, size_t n) {
    for (size_t i = 0; i < m->n; i++)
        if (m->v[i].n == n && !memcmp(m->v[i].k, k, n))
            return (long)i;
    return -1;
}

static void model_add(model_t *m, const char *k, size_t n, uint64_t val) {
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 64;
        m->v = realloc(m->v, m->cap * sizeof(*m->v));
    }
    memcpy(m->v[m->n].k, k, n);
    m->v[m->n].n = n;
    m->v[m->n].val = val;
    m->n++;
}

static void model_del(model_t *m, size_t i) {
    memmove(&m->v[i], &m->v[i + 1], (m->n - i - 1) * sizeof(*m->v));
    m->n--;
}

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint64_t rnd(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Key number i as bytes: varying lengths (0..39), some with NUL bytes inside. */
static size_t make_key(uint64_t i, char *k) {
    size_t n = (size_t)(i % 40);
    for (size_t j = 0; j < n; j++)
        k[j] = (char)((i >> (j % 8 * 8)) + j * 7);
    if (n > 3 && i % 3 == 0)
        k[1] = '\0';
    return n;
}

static void check_same(const weir_keymap_t *m, const model_t *mo) {
    cr_assert_eq(weir_keymap_count(m), mo->n);
    size_t i = 0;
    for (uint32_t id = weir_keymap_first(m); id != WEIR_KEYMAP_NONE; id = weir_keymap_next(m, id), i++) {
        cr_assert(i < mo->n, "more keys iterated than live");
        size_t n;
        const char *k = weir_keymap_key(m, id, &n);
        cr_assert_eq(n, mo->v[i].n, "key %zu: length %zu vs %zu", i, n, mo->v[i].n);
        cr_assert(!memcmp(k, mo->v[i].k, n), "key %zu: bytes differ (insertion order)", i);
        cr_assert_eq(k[n], '\0', "key bytes are NUL-terminated");
        uint64_t v;
        memcpy(&v, weir_keymap_val(m, id), sizeof(v));
        cr_assert_eq(v, mo->v[i].val);
    }
    cr_assert_eq(i, mo->n);
}

Test(keymap, random_against_model) {
    weir_keymap_t m;
    weir_keymap_init(&m, sizeof(uint64_t));
    model_t mo = {0};
    char k[40];
    const uint64_t universe = 30000;
    for (int phase = 0; phase < 4; phase++) {
        for (int step = 0; step < 40000; step++) {
            uint64_t i = rnd() % universe;
            size_t n = make_key(i, k);
            uint64_t h = weir_keymap_hash(k, n);
            uint32_t id = weir_keymap_find(&m, k, n, h);
            long mi = model_find(&mo, k, n);
            cr_assert_eq(id == WEIR_KEYMAP_NONE, mi < 0, "find disagrees on key %llu", (unsigned long long)i);
            if (id == WEIR_KEYMAP_NONE) {
                id = weir_keymap_add(&m, k, n, h);
                uint64_t zero;
                memcpy(&zero, weir_keymap_val(&m, id), sizeof(zero));
                cr_assert_eq(zero, 0, "a new value is zeroed");
                uint64_t v = rnd();
                memcpy(weir_keymap_val(&m, id), &v, sizeof(v));
                model_add(&mo, k, n, v);
            } else if (phase % 2 == 1 && rnd() % 2) {
                weir_keymap_del(&m, id);
                model_del(&mo, (size_t)mi);
            } else {
                uint64_t v;
                memcpy(&v, weir_keymap_val(&m, id), sizeof(v));
                cr_assert_eq(v, mo.v[mi].val);
                if (phase >= 2 && rnd() % 2) { /* touch: to the end of the order, as in the model */
                    weir_keymap_touch(&m, id);
                    mkey_t e = mo.v[mi];
                    model_del(&mo, (size_t)mi);
                    model_add(&mo, e.k, e.n, e.val);
                }
            }
        }
        check_same(&m, &mo);
    }
    /* Everything the model holds is found; nothing else is. */
    for (size_t i = 0; i < mo.n; i++) {
        uint64_t h = weir_keymap_hash(mo.v[i].k, mo.v[i].n);
        cr_assert_neq(weir_keymap_find(&m, mo.v[i].k, mo.v[i].n, h), WEIR_KEYMAP_NONE);
    }
    /* Remove everything, oldest first, then the map is reusable. */
    while (mo.n) {
        uint64_t h = weir_keymap_hash(mo.v[0].k, mo.v[0].n);
        weir_keymap_del(&m, weir_keymap_find(&m, mo.v[0].k, mo.v[0].n, h));
        model_del(&mo, 0);
    }
    check_same(&m, &mo);
    cr_assert_eq(weir_keymap_first(&m), WEIR_KEYMAP_NONE);
    uint32_t id = weir_keymap_add(&m, "x", 1, weir_keymap_hash("x", 1));
    cr_assert_eq(weir_keymap_first(&m), id);
    weir_keymap_free(&m, NULL, NULL);
    free(mo.v);
}

Test(keymap, nul_bytes_and_empty_key_are_distinct) {
    weir_keymap_t m;
    weir_keymap_init(&m, 0);
    static const char *const keys[] = {"", "\0", "\0\0", "a", "a\0", "a\0b", "a\0c"};
    static const size_t lens[] = {0, 1, 2, 1, 2, 3, 3};
    for (size_t i = 0; i < WEIR_ARRAY_SIZE(keys); i++) {
        uint64_t h = weir_keymap_hash(keys[i], lens[i]);
        cr_assert_eq(weir_keymap_find(&m, keys[i], lens[i], h), WEIR_KEYMAP_NONE, "key %zu before add", i);
        cr_assert_eq(weir_keymap_add(&m, keys[i], lens[i], h), (uint32_t)i);
    }
    for (size_t i = 0; i < WEIR_ARRAY_SIZE(keys); i++)
        cr_assert_eq(weir_keymap_find(&m, keys[i], lens[i], weir_keymap_hash(keys[i], lens[i])), (uint32_t)i);
    weir_keymap_free(&m, NULL, NULL);
}

Test(keymap, removed_ids_are_reused_and_order_is_insertion) {
    weir_keymap_t m;
    weir_keymap_init(&m, 4);
    char k[8];
    for (int i = 0; i < 10; i++) {
        int n = snprintf(k, sizeof(k), "k%d", i);
        weir_keymap_add(&m, k, (size_t)n, weir_keymap_hash(k, (size_t)n));
    }
    weir_keymap_del(&m, 3);
    weir_keymap_del(&m, 0);
    weir_keymap_del(&m, 9);
    uint32_t id = weir_keymap_add(&m, "k3", 2, weir_keymap_hash("k3", 2));
    cr_assert(id == 0 || id == 3 || id == 9, "a freed id is reused");
    const char *want[] = {"k1", "k2", "k4", "k5", "k6", "k7", "k8", "k3"};
    size_t i = 0;
    for (uint32_t e = weir_keymap_first(&m); e != WEIR_KEYMAP_NONE; e = weir_keymap_next(&m, e), i++) {
        size_t n;
        cr_assert_str_eq(weir_keymap_key(&m, e, &n), want[i]);
    }
    cr_assert_eq(i, WEIR_ARRAY_SIZE(want));
    weir_keymap_free(&m, NULL, NULL);
}

static void count_free(void *val, void *arg) {
    (void)val;
    (*(int *)arg)++;
}

Test(keymap, free_calls_back_every_live_value) {
    weir_keymap_t m;
    weir_keymap_init(&m, sizeof(void *));
    for (int i = 0; i < 1000; i++) {
        char k[8];
        int n = snprintf(k, sizeof(k), "%d", i);
        weir_keymap_add(&m, k, (size_t)n, weir_keymap_hash(k, (size_t)n));
    }
    weir_keymap_del(&m, 10);
    int freed = 0;
    weir_keymap_clear(&m, count_free, &freed);
    cr_assert_eq(freed, 999);
    cr_assert_eq(weir_keymap_count(&m), 0);
    weir_keymap_add(&m, "a", 1, weir_keymap_hash("a", 1));
    freed = 0;
    weir_keymap_free(&m, count_free, &freed);
    cr_assert_eq(freed, 1);
    weir_keymap_t zero = {0};
    weir_keymap_free(&zero, count_free, &freed); /* never initialised: a no-op */
}

Test(key, one_rendering) {
    char buf[WEIR_KEY_BUF];
    const char *p;
    size_t n;
    weir_value_t v = weir_v_long(-9223372036854775807LL - 1);
    cr_assert_eq(weir_key_render(&v, buf, &p, &n), 0);
    cr_assert_eq(n, strlen("-9223372036854775808"));
    cr_assert(!memcmp(p, "-9223372036854775808", n));
    v = weir_v_long(0);
    weir_key_render(&v, buf, &p, &n);
    cr_assert(n == 1 && p[0] == '0');
    v = weir_v_double(0.1);
    weir_key_render(&v, buf, &p, &n);
    cr_assert(n == strlen("0.1") && !memcmp(p, "0.1", n)); /* the shortest form that reads back, as JS prints it */
    v = weir_v_double(-1.2345678901234567e-308);
    cr_assert_eq(weir_key_render(&v, buf, &p, &n), 0);
    cr_assert(n < WEIR_KEY_BUF);
    v = weir_v_bool(false);
    weir_key_render(&v, buf, &p, &n);
    cr_assert(n == 5 && !memcmp(p, "false", 5));
    v = weir_v_str("a\0b", 3);
    weir_key_render(&v, buf, &p, &n);
    cr_assert(n == 3 && !memcmp(p, "a\0b", 3));
    v = weir_v_null();
    cr_assert_eq(weir_key_render(&v, buf, &p, &n), -1);
}

Test(keymap, sorted_ids_bytewise_prefix_first) {
    weir_keymap_t m;
    weir_keymap_init(&m, 0);
    static const char *const keys[] = {"a\0c", "b", "", "a\0b", "a", "\0\0", "a\0", "\0"};
    static const size_t lens[] = {3, 1, 0, 3, 1, 2, 2, 1};
    for (size_t i = 0; i < WEIR_ARRAY_SIZE(keys); i++)
        weir_keymap_add(&m, keys[i], lens[i], weir_keymap_hash(keys[i], lens[i]));
    weir_keymap_del(&m, 1); /* "b" */
    static const char *const want[] = {"", "\0", "\0\0", "a", "a\0", "a\0b", "a\0c"};
    static const size_t wlen[] = {0, 1, 2, 1, 2, 3, 3};
    uint32_t *ids = weir_keymap_sorted_ids(&m);
    cr_assert_not_null(ids);
    for (size_t i = 0; i < WEIR_ARRAY_SIZE(want); i++) {
        size_t n;
        const char *k = weir_keymap_key(&m, ids[i], &n);
        cr_assert(n == wlen[i] && !memcmp(k, want[i], n), "sorted position %zu", i);
    }
    free(ids);
    weir_keymap_free(&m, NULL, NULL);
}

/* weir_keymap_touch: the order becomes least recently added-or-touched first,
 * whatever the ids; touching the last key, the first key or a lone key keeps
 * the links consistent (checked both ways through the prev links too). */
Test(keymap, touch_gives_lru_order) {
    weir_keymap_t m;
    weir_keymap_init(&m, 0);
    char k[8];
    uint32_t id[6];
    for (int i = 0; i < 6; i++) {
        int n = snprintf(k, sizeof(k), "k%d", i);
        id[i] = weir_keymap_add(&m, k, (size_t)n, weir_keymap_hash(k, (size_t)n));
    }
    weir_keymap_touch(&m, id[5]); /* already last: no change */
    weir_keymap_touch(&m, id[0]); /* first */
    weir_keymap_touch(&m, id[3]); /* middle */
    weir_keymap_touch(&m, id[1]);
    weir_keymap_touch(&m, id[3]); /* again */
    weir_keymap_del(&m, id[2]);
    const char *want[] = {"k4", "k5", "k0", "k1", "k3"};
    size_t i = 0;
    uint32_t last = WEIR_KEYMAP_NONE;
    for (uint32_t e = weir_keymap_first(&m); e != WEIR_KEYMAP_NONE; e = weir_keymap_next(&m, e), i++) {
        size_t n;
        cr_assert_str_eq(weir_keymap_key(&m, e, &n), want[i], "position %zu", i);
        cr_assert_eq(weir_keymap_prev(&m, e), last, "prev link of position %zu", i);
        last = e;
    }
    cr_assert_eq(i, WEIR_ARRAY_SIZE(want));
    cr_assert_eq(m.tail, last);
    /* Evicting from the front removes the least recently used. */
    weir_keymap_del(&m, weir_keymap_first(&m));
    size_t n;
    cr_assert_str_eq(weir_keymap_key(&m, weir_keymap_first(&m), &n), "k5");
    weir_keymap_free(&m, NULL, NULL);
    weir_keymap_t one;
    weir_keymap_init(&one, 0);
    uint32_t a = weir_keymap_add(&one, "a", 1, weir_keymap_hash("a", 1));
    weir_keymap_touch(&one, a);
    cr_assert(one.head == a && one.tail == a);
    weir_keymap_free(&one, NULL, NULL);
}

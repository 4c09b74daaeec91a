/* Row types, arenas and records. */
#include "record.h"

#include <stdlib.h>
#include <string.h>

const char *weir_type_name(weir_type_t t) {
    switch (t) {
    case WEIR_NULL: return "null";
    case WEIR_BOOL: return "bool";
    case WEIR_LONG: return "long";
    case WEIR_DOUBLE: return "double";
    case WEIR_STRING: return "string";
    case WEIR_BYTES: return "bytes";
    }
    return "?";
}

weir_rowtype_t *weir_rowtype_new(void) { return weir_calloc(1, sizeof(weir_rowtype_t)); }

weir_rowtype_t *weir_rowtype_clone(const weir_rowtype_t *rt) {
    weir_rowtype_t *c = weir_rowtype_new();
    for (int i = 0; i < rt->nfields; i++)
        weir_rowtype_add(c, rt->fields[i].name, rt->fields[i].type, rt->fields[i].nullable);
    return c;
}

void weir_rowtype_destroy(weir_rowtype_t *rt) {
    if (!rt)
        return;
    for (int i = 0; i < rt->nfields; i++)
        free(rt->fields[i].name);
    free(rt->fields);
    free(rt);
}

int weir_rowtype_add(weir_rowtype_t *rt, const char *name, weir_type_t type, bool nullable) {
    if (weir_rowtype_find(rt, name) >= 0)
        return -1;
    if (rt->nfields == rt->cap) {
        rt->cap = rt->cap ? rt->cap * 2 : 8;
        rt->fields = weir_realloc(rt->fields, (size_t)rt->cap * sizeof(*rt->fields));
    }
    weir_field_t *f = &rt->fields[rt->nfields];
    f->name = weir_strdup(name);
    f->type = type;
    f->nullable = nullable;
    return rt->nfields++;
}

int weir_rowtype_find(const weir_rowtype_t *rt, const char *name) {
    for (int i = 0; i < rt->nfields; i++)
        if (!strcmp(rt->fields[i].name, name))
            return i;
    return -1;
}

/* ---- arena ---- */

struct weir_arena_chunk {
    weir_arena_chunk_t *next;
    size_t used, cap;
    _Alignas(16) uint8_t data[];
};

#define ARENA_CHUNK 4096

void *weir_arena_alloc(weir_arena_t *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    weir_arena_chunk_t *c = a->head;
    if (!c || c->used + n > c->cap) {
        size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        weir_arena_chunk_t *nc = weir_malloc(sizeof(*nc) + cap);
        nc->used = 0;
        nc->cap = cap;
        nc->next = c;
        a->head = c = nc;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

void weir_arena_reserve(weir_arena_t *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    weir_arena_chunk_t *c = a->head;
    if (!n || (c && c->used + n <= c->cap))
        return;
    weir_arena_chunk_t *nc = weir_malloc(sizeof(*nc) + n);
    nc->used = 0;
    nc->cap = n;
    nc->next = c;
    a->head = nc;
}

char *weir_arena_strndup(weir_arena_t *a, const char *s, size_t n) {
    char *p = weir_arena_alloc(a, n + 1);
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void weir_arena_reset(weir_arena_t *a) {
    weir_arena_chunk_t *c = a->head;
    if (!c)
        return;
    /* Keep the largest chunk (the last one allocated is usually it). */
    weir_arena_chunk_t *keep = c, *next = c->next;
    while (next) {
        weir_arena_chunk_t *n2 = next->next;
        if (next->cap > keep->cap) {
            free(keep);
            keep = next;
        } else {
            free(next);
        }
        next = n2;
    }
    keep->next = NULL;
    keep->used = 0;
    a->head = keep;
}

void weir_arena_free(weir_arena_t *a) {
    weir_arena_chunk_t *c = a->head;
    while (c) {
        weir_arena_chunk_t *n = c->next;
        free(c);
        c = n;
    }
    a->head = NULL;
}

/* ---- records ---- */

static void record_fit(weir_record_t *r, const weir_rowtype_t *rt) {
    if (r->cap < rt->nfields) {
        r->cap = rt->nfields;
        r->v = weir_realloc(r->v, (size_t)r->cap * sizeof(*r->v));
    }
}

void weir_record_init(weir_record_t *r, const weir_rowtype_t *rt) {
    memset(r, 0, sizeof(*r));
    r->rt = rt;
    r->ts = WEIR_TS_NONE;
    r->partition = -1;
    r->offset = -1;
    record_fit(r, rt);
    for (int i = 0; i < rt->nfields; i++)
        r->v[i].type = WEIR_NULL;
}

void weir_record_clear(weir_record_t *r) {
    for (int i = 0; i < r->rt->nfields; i++)
        r->v[i].type = WEIR_NULL;
    weir_arena_reset(&r->arena);
}

void weir_record_free(weir_record_t *r) {
    free(r->v);
    r->v = NULL;
    r->cap = 0;
    weir_arena_free(&r->arena);
}

void weir_record_copy_meta(weir_record_t *dst, const weir_record_t *src) {
    dst->key = src->key;
    dst->key_len = src->key_len;
    dst->ts = src->ts;
    dst->topic = src->topic;
    dst->partition = src->partition;
    dst->offset = src->offset;
}

void weir_record_copy_compact(weir_record_t *dst, const weir_record_t *src, const char *topic) {
    size_t need = 0;
    for (int i = 0; i < src->rt->nfields; i++) {
        const weir_value_t *v = &src->v[i];
        if ((v->type == WEIR_STRING || v->type == WEIR_BYTES) && v->u.s.n)
            need += (v->u.s.n + 1 + 15) & ~(size_t)15;
    }
    if (src->key)
        need += (src->key_len + 1 + 15) & ~(size_t)15;
    if (topic)
        need += (strlen(topic) + 1 + 15) & ~(size_t)15;
    weir_arena_reset(&dst->arena);
    if (!dst->arena.head)
        weir_arena_reserve(&dst->arena, need);
    weir_record_copy(dst, src);
    if (topic)
        dst->topic = weir_arena_strndup(&dst->arena, topic, strlen(topic));
}

void weir_record_copy(weir_record_t *dst, const weir_record_t *src) {
    dst->rt = src->rt;
    record_fit(dst, src->rt);
    weir_arena_reset(&dst->arena);
    for (int i = 0; i < src->rt->nfields; i++) {
        weir_value_t v = src->v[i];
        if ((v.type == WEIR_STRING || v.type == WEIR_BYTES) && v.u.s.n)
            v.u.s.p = weir_arena_strndup(&dst->arena, v.u.s.p, v.u.s.n);
        dst->v[i] = v;
    }
    weir_record_copy_meta(dst, src);
    if (src->key)
        dst->key = weir_arena_strndup(&dst->arena, src->key, src->key_len);
}

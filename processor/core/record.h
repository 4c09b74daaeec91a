/**
 * @file record.h
 * @brief Typed records: the rows that flow between operators.
 *
 * A record is a row of typed values whose layout (a weir_rowtype) is fixed
 * when the pipeline is compiled: every field name is resolved to a slot
 * index once, and nothing looks fields up by name per record (DESIGN.md §2).
 *
 * Ownership: string and bytes values point either into the record's own
 * arena or into memory that outlives the record for as long as the record is
 * borrowed (the decoded message, an upstream record). A record handed to
 * `process()` or to an emitter is *borrowed* for the duration of that call
 * only; whoever needs it longer copies it (weir_record_copy).
 */
#ifndef WEIR_RECORD_H
#define WEIR_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

/** Value types. WEIR_NULL is also the run-time type of a null value. */
typedef enum weir_type {
    WEIR_NULL = 0,
    WEIR_BOOL,
    WEIR_LONG,
    WEIR_DOUBLE,
    WEIR_STRING,
    WEIR_BYTES,
} weir_type_t;

/** @returns "null", "bool", "long", "double", "string" or "bytes". */
const char *weir_type_name(weir_type_t t);

/** One value. `type` is WEIR_NULL when the value is null. */
typedef struct weir_value {
    weir_type_t type;
    union {
        bool b;    /**< WEIR_BOOL */
        int64_t i; /**< WEIR_LONG */
        double d;  /**< WEIR_DOUBLE */
        struct {
            const char *p; /**< not NUL-terminated; borrowed (see file comment) */
            size_t n;
        } s; /**< WEIR_STRING, WEIR_BYTES */
    } u;
} weir_value_t;

static inline weir_value_t weir_v_null(void) {
    weir_value_t v = {.type = WEIR_NULL};
    return v;
}
static inline weir_value_t weir_v_bool(bool b) {
    weir_value_t v = {.type = WEIR_BOOL, .u.b = b};
    return v;
}
static inline weir_value_t weir_v_long(int64_t i) {
    weir_value_t v = {.type = WEIR_LONG, .u.i = i};
    return v;
}
static inline weir_value_t weir_v_double(double d) {
    weir_value_t v = {.type = WEIR_DOUBLE, .u.d = d};
    return v;
}
static inline weir_value_t weir_v_str(const char *p, size_t n) {
    weir_value_t v = {.type = WEIR_STRING, .u.s = {p, n}};
    return v;
}
/* Setters for hot loops: GCC builds a returned weir_value_t on the stack and
 * copies it 16 bytes wide, a store-forwarding stall (~6 ns a field measured in
 * bench/kmeans); these write the two members in place. */
static inline void weir_set_bool(weir_value_t *v, bool b) {
    v->type = WEIR_BOOL;
    v->u.b = b;
}
static inline void weir_set_long(weir_value_t *v, int64_t i) {
    v->type = WEIR_LONG;
    v->u.i = i;
}
static inline void weir_set_double(weir_value_t *v, double d) {
    v->type = WEIR_DOUBLE;
    v->u.d = d;
}
static inline void weir_set_str(weir_value_t *v, weir_type_t t, const char *p, size_t n) {
    v->type = t;
    v->u.s.p = p;
    v->u.s.n = n;
}
/** @returns the numeric value as a double (long converted); 0 for non-numbers. */
static inline double weir_v_num(const weir_value_t *v) {
    return v->type == WEIR_DOUBLE ? v->u.d : v->type == WEIR_LONG ? (double)v->u.i : 0.0;
}

/** A field of a row type. */
typedef struct weir_field {
    char *name;       /**< owned */
    weir_type_t type; /**< static type; never WEIR_NULL except for a literal null column */
    bool nullable;    /**< may hold null */
} weir_field_t;

/** A row type: the ordered fields of the records on one edge of the graph. */
typedef struct weir_rowtype {
    int nfields;
    int cap;
    weir_field_t *fields; /**< owned */
} weir_rowtype_t;

weir_rowtype_t *weir_rowtype_new(void);
weir_rowtype_t *weir_rowtype_clone(const weir_rowtype_t *rt);
void weir_rowtype_destroy(weir_rowtype_t *rt);
/** @brief Append a field. @returns its slot index, or -1 if the name exists. */
int weir_rowtype_add(weir_rowtype_t *rt, const char *name, weir_type_t type, bool nullable);
/** @returns the slot index of a field name, or -1 (compile time only). */
int weir_rowtype_find(const weir_rowtype_t *rt, const char *name);

/** A bump allocator for the bytes a record owns; reset keeps the first chunk. */
typedef struct weir_arena_chunk weir_arena_chunk_t;
typedef struct weir_arena {
    weir_arena_chunk_t *head;
} weir_arena_t;

void *weir_arena_alloc(weir_arena_t *a, size_t n);
char *weir_arena_strndup(weir_arena_t *a, const char *s, size_t n);
void weir_arena_reset(weir_arena_t *a);
/** @brief Make room for n more bytes in one chunk of exactly that size (not the usual 4 KiB) unless the
 *         current chunk has it: for records kept long, thousands of them (weir_record_copy_compact). */
void weir_arena_reserve(weir_arena_t *a, size_t n);
void weir_arena_free(weir_arena_t *a);

#define WEIR_TS_NONE INT64_MIN
/** Event times must lie strictly between -WEIR_TS_LIMIT and WEIR_TS_LIMIT (2^60 ms, some 36 million years):
 *  the source dead-letters anything else before it reaches an operator or the watermark. */
#define WEIR_TS_LIMIT ((int64_t)1 << 60)

/** A record: values in slot order plus metadata. */
typedef struct weir_record {
    const weir_rowtype_t *rt; /**< borrowed from the compiled pipeline */
    weir_value_t *v;          /**< rt->nfields values; owned */
    int cap;                  /**< slots allocated in v */
    weir_arena_t arena;       /**< bytes owned by this record */
    /* metadata */
    const char *key; /**< message key (borrowed) or NULL */
    size_t key_len;
    int64_t ts;        /**< event time, epoch ms, or WEIR_TS_NONE */
    const char *topic; /**< source topic (file mode: input path); borrowed */
    int32_t partition; /**< source partition, -1 if none */
    int64_t offset;    /**< source offset (file mode: line number), -1 if none */
} weir_record_t;

/** @brief Initialise a record for row type rt (all values null). */
void weir_record_init(weir_record_t *r, const weir_rowtype_t *rt);
/** @brief Set every value to null, reset the arena; keep metadata. */
void weir_record_clear(weir_record_t *r);
/** @brief Free what the record owns (not the struct). */
void weir_record_free(weir_record_t *r);
/** @brief weir_record_copy into one arena chunk of exactly the bytes needed (a fresh dst), and own `topic`
 *         too if not NULL: for records held long in numbers (k-means initialisation buffers). */
void weir_record_copy_compact(weir_record_t *dst, const weir_record_t *src, const char *topic);
/** @brief Deep copy src into dst (dst initialised); strings copied into dst's arena. */
void weir_record_copy(weir_record_t *dst, const weir_record_t *src);
/** @brief Copy metadata only (key, ts, topic, partition, offset). */
void weir_record_copy_meta(weir_record_t *dst, const weir_record_t *src);

#endif

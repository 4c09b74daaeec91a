/**
 * @file key.h
 * @brief The one meaning of `key:` in every keyed operator (window, kmeans,
 *        arima): how a record's key bytes are found.
 *
 *  - `key:` is an expression over the node's input (a bare field name is one).
 *  - Without `key:`, the key is the record's own key (the Kafka message key,
 *    or the source's `key:` field); a record without one belongs to one group,
 *    the empty key "".
 *  - The value is rendered to key bytes once, here: strings and bytes as they
 *    are, longs in decimal, doubles in the shortest form that reads back
 *    (weir_fmt_double: 0.1, 20, 1e+21), bools as `true` / `false`.
 *  - A null value is not a key: weir_key_eval returns a reason ("window: node
 *    'w': key 'sensor_id' is null") and the operator dead-letters the record
 *    through em->reject. So is a key longer than WEIR_KEYMAP_MAX_KEY bytes.
 *
 * Evaluation allocates nothing: numbers are rendered into a caller's buffer,
 * strings are borrowed from the record (or from `scratch` when the expression
 * built them) and live as long as those do.
 */
#ifndef WEIR_KEY_H
#define WEIR_KEY_H

#include "expr.h"
#include "keymap.h"
#include "operator.h"

/** Bytes of the buffer a rendered number needs. */
#define WEIR_KEY_BUF 32

/** A compiled `key:`. */
typedef struct weir_key_spec {
    weir_expr_t *expr;    /**< owned; NULL: the record key */
    char *src;            /**< owned copy of the expression text, or NULL */
    weir_type_t type;     /**< static type of expr (WEIR_STRING for the record key) */
    int slot;             /**< expr is a bare input field: its slot (read directly), else -1 */
    char *null_reason;    /**< "OP: node 'N': key 'SRC' is null" */
    char *toolong_reason; /**< "OP: node 'N': key longer than 65536 bytes" */
} weir_key_spec_t;

/**
 * @brief Compile the node's `key:` (absent: the record key) into *ks.
 *        The literal null is refused (it cannot group records).
 * @returns WEIR_OK or WEIR_ERR with a placed message in errstr.
 */
int weir_key_spec_init(weir_key_spec_t *ks, const weir_plan_t *plan, char *errstr, size_t errstr_size);
/** @brief Free what *ks owns (accepts a zeroed or half-built spec). */
void weir_key_spec_free(weir_key_spec_t *ks);

/**
 * @brief The key bytes of rec in *p, *n (see the file comment).
 * @param buf      WEIR_KEY_BUF bytes for a rendered number (must outlive *p)
 * @param scratch  arena for string temporaries of the expression (reset by the caller)
 * @returns NULL, or the reason to reject the record (a static string of ks).
 */
const char *weir_key_eval(const weir_key_spec_t *ks, const weir_record_t *rec, weir_arena_t *scratch,
                          char buf[WEIR_KEY_BUF], const char **p, size_t *n);

/**
 * @brief Render a value to key bytes (strings as they are, longs in decimal,
 *        doubles weir_fmt_double, bools true/false).
 * @returns 0, or -1 for null.
 */
int weir_key_render(const weir_value_t *v, char buf[WEIR_KEY_BUF], const char **p, size_t *n);

#endif

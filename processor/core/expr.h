/**
 * @file expr.h
 * @brief The expression language of `where`, `set` and aggregate arguments.
 *
 * Expressions are parsed and type-checked once, against the row type of the
 * node's input, and then evaluated per record without heap allocation
 * (string results of lower()/upper() go into a caller-provided arena).
 *
 * Grammar (lowest to highest precedence):
 *   or  ·  and  ·  not  ·  comparisons (= == != <> < <= > >=) and `x is [not] null`
 *   ·  + -  ·  * / %  ·  unary -  ·  primary
 * primary: number (123, 1.5, 1e3), 'string' or "string", true, false, null,
 *          field name ([A-Za-z_][A-Za-z0-9_]* or `quoted`), f(args), ( expr ).
 * Functions: abs sqrt ln exp pow min max coalesce lower upper.
 *
 * Semantics (docs/expressions.md):
 *  - long op long -> long for + - * %; `/` always gives double.
 *  - any null operand of arithmetic, a comparison or a function (but
 *    coalesce) gives null; `and`/`or`/`not` use SQL three-valued logic.
 *  - division or modulo by zero gives null; sqrt/ln of a value out of domain
 *    gives null; long overflow wraps (two's complement), never traps.
 *  - a filter keeps a record only when `where` is true (null counts as false).
 */
#ifndef WEIR_EXPR_H
#define WEIR_EXPR_H

#include "record.h"

typedef struct weir_expr weir_expr_t;

/**
 * @brief Compile src against row type rt.
 * @returns the expression, or NULL with errstr set to "column N: message"
 *          (the caller prefixes the file:line of the key that held it).
 */
weir_expr_t *weir_expr_compile(const char *src, const weir_rowtype_t *rt, char *errstr, size_t errstr_size);
/** @returns the static result type (WEIR_NULL only for the literal `null`). */
weir_type_t weir_expr_type(const weir_expr_t *e);
/** @returns true if the result may be null. */
bool weir_expr_nullable(const weir_expr_t *e);
/**
 * @brief Evaluate e on rec into *out. Strings in *out may point into rec, into
 *        the expression's constants, or into arena. Thread-safe: e is read-only.
 */
void weir_expr_eval(const weir_expr_t *e, const weir_record_t *rec, weir_arena_t *arena, weir_value_t *out);
/** @brief Print the compiled form (fully parenthesised, with resolved slots and types). */
void weir_expr_print(const weir_expr_t *e, const weir_rowtype_t *rt, FILE *fp);
void weir_expr_destroy(weir_expr_t *e);

#endif

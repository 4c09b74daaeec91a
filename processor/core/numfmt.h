/**
 * @file numfmt.h
 * @brief Fast shortest-round-trip formatting of doubles (JSON numbers);
 *        used today by the kmeans operator's `centroids` text.
 *
 * weir_fmt_double() writes a JSON number (the text JavaScript's String(x) gives) that strtod() reads back to the
 * same double, bit for bit (Grisu2, Loitsch 2010, after Milo Yip's
 * formulation: always round-trips; the digits are the shortest in about
 * 99.9 % of cases and never more than 17; rarely its 17th digit is not the
 * closest one, e.g. 0.30000000000000007 where JavaScript prints
 * 0.30000000000000004: both read back to the same double). It is 10-20 times faster than
 * printf("%.17g"), which emits up to 17 digits through glibc's multi-precision
 * path. Non-finite values (unreachable here: features are finite) are written
 * as `null`, so the text stays valid JSON.
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
/** @returns INT32_MAX when the integer cached-power index formula equals Grisu's double formula for every binary
 *          exponent in [-1200, 1200], else the first exponent where it does not (unit test). */
int weir_fmt_k_check(void);

#endif

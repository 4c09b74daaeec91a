/* weir_fmt_double (processor/core/numfmt.c): exact text against JavaScript for a table of values, and against an
 * independent reference built from glibc's correctly rounded printf for millions of doubles; every output must
 * read back (strtod) to the same double, bit for bit. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "numfmt.h"

static uint64_t xs64(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Expected text: the output of `node -e 'console.log(String(x))'` (node v20) for each value, pasted; except -0,
 * which JavaScript prints as "0" and weir as "-0". */
Test(numfmt, javascript_table) {
    static const struct {
        double v;
        const char *want;
    } cases[] = {
        {0.0, "0"},
        {-0.0, "-0"},
        {1.0, "1"},
        {0.1, "0.1"},
        {-3.25, "-3.25"},
        {12, "12"},
        {1e21, "1e+21"},
        {1e-7, "1e-7"},
        {123456.789, "123456.789"},
        {0.000123, "0.000123"},
        {5e-324, "5e-324"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {2.0 / 3, "0.6666666666666666"},
        {0.30000000000000004, "0.30000000000000004"},
        {-47.576668116528054, "-47.576668116528054"},
        {1.0 / 3, "0.3333333333333333"},
        {1.0 / 7, "0.14285714285714285"},
        {100, "100"},
        {1e15, "1000000000000000"},
        {1e16, "10000000000000000"},
        {1e17, "100000000000000000"},
        {1e20, "100000000000000000000"},
        {1e22, "1e+22"},
        {1e23, "1e+23"},
        {1e100, "1e+100"},
        {1e300, "1e+300"},
        {1e-5, "0.00001"},
        {1e-6, "0.000001"},
        {1e-300, "1e-300"},
        {123456789012345, "123456789012345"},       /* 15 digits */
        {1234567890123456, "1234567890123456"},     /* 16 */
        {12345678901234567.0, "12345678901234568"}, /* 17 */
        {1234567890123456789.0, "1234567890123456800"},
        {0.0000012345, "0.0000012345"},
        {9007199254740991, "9007199254740991"},
        {9007199254740992, "9007199254740992"},
        {9007199254740994, "9007199254740994"},
        {1.5e-323, "1.5e-323"},
        {2.2250738585072014e-308, "2.2250738585072014e-308"}, /* smallest normal */
        {2.225073858507201e-308, "2.225073858507201e-308"},   /* largest subnormal */
        {77.76859999999999, "77.76859999999999"},
        {5e-7, "5e-7"},
        {4.35, "4.35"},
        {0.3, "0.3"},
        {0x1p-44, "5.684341886080802e-14"},
        {0x1p63, "9223372036854776000"},
        {-1.5e-10, "-1.5e-10"},
        {9.5367431640625e-7, "9.5367431640625e-7"},
        {NAN, "null"},
        {INFINITY, "null"},
        {-INFINITY, "null"},
    };
    char buf[64];
    cr_assert_eq(weir_fmt_log_check(), INT32_MAX, "integer logarithm differs from the real one at e = %d",
                 weir_fmt_log_check());
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = weir_fmt_double(cases[i].v, buf);
        buf[n] = '\0';
        cr_assert_str_eq(buf, cases[i].want, "case %zu", i);
    }
    volatile double a = 0.1, b = 0.2; /* computed, not folded */
    size_t n = weir_fmt_double(a + b, buf);
    buf[n] = '\0';
    cr_assert_str_eq(buf, "0.30000000000000004");
}

/* Does the text s (d.ddd...e[+-]X) read back to exactly a? */
static int reads_back(const char *s, double a) {
    double b = strtod(s, NULL);
    return !memcmp(&a, &b, sizeof(a));
}

/* The p-digit decimal just above the one in s ("d.ddde+X", p digits), as the same form in up. */
static void next_up(const char *s, int p, char *up) {
    char dg[24];
    int e = atoi(strchr(s, 'e') + 1), k = 0;
    for (const char *c = s; *c != 'e'; c++)
        if (*c >= '0' && *c <= '9')
            dg[k++] = *c;
    int i = p - 1;
    while (i >= 0 && dg[i] == '9')
        dg[i--] = '0';
    if (i >= 0) {
        dg[i]++;
    } else { /* 9.99e+X -> 1.00e+(X+1) */
        dg[0] = '1';
        e++;
    }
    char *o = up;
    *o++ = dg[0];
    if (p > 1) {
        *o++ = '.';
        memcpy(o, dg + 1, (size_t)(p - 1));
        o += p - 1;
    }
    sprintf(o, "e%+d", e);
}

/* Is some p-digit decimal inside a's rounding interval? If so, the closest one into s. Only the two p-digit
 * neighbours of a can be inside (the interval is convex around a): glibc's correctly rounded "%.*e" (ties to
 * even) is the closer one; the other one can only be inside when the interval is narrower on the closer one's
 * side, i.e. a is a power of two (significand bits 0), its lower gap half the upper one, and the closer one
 * below a. */
static int p_digits(double a, int p, char *s) {
    snprintf(s, 40, "%.*e", p - 1, a);
    if (reads_back(s, a))
        return 1;
    uint64_t u;
    memcpy(&u, &a, sizeof(u));
    if ((u & ((1ULL << 52) - 1)) == 0 && strtod(s, NULL) < a) {
        char up[40];
        next_up(s, p, up);
        if (reads_back(up, a)) {
            strcpy(s, up);
            return 1;
        }
    }
    return 0;
}

/* Reference formatter, independent of numfmt.c: the shortest p-digit decimal that reads back, the closest to
 * the value among those, in JavaScript's layout (Number::toString, ECMA-262 6.1.6.1.20). "Some p-digit decimal
 * reads back" holds for p + 1 whenever for p (p digits are p + 1 digits with a 0 appended), so the search goes
 * down from 17 (always enough) until p - 1 fails. Slow: 2-4 printf/strtod pairs per value. */
static void ref_fmt(double v, char *out) {
    if (!isfinite(v)) {
        strcpy(out, "null");
        return;
    }
    if (signbit(v))
        *out++ = '-';
    const double a = fabs(v);
    if (a == 0) {
        strcpy(out, "0");
        return;
    }
    char s[40], t[40];
    int p = 17;
    if (!p_digits(a, p, s))
        abort();
    while (p > 1 && p_digits(a, p - 1, t)) {
        strcpy(s, t);
        p--;
    }
    char dg[24];
    int k = 0;
    for (const char *c = s; *c != 'e'; c++)
        if (*c >= '0' && *c <= '9')
            dg[k++] = *c;
    while (k > 1 && dg[k - 1] == '0')
        k--;
    dg[k] = '\0';
    const int n = atoi(strchr(s, 'e') + 1) + 1; /* a = 0.dg * 10^n */
    if (k <= n && n <= 21)
        sprintf(out, "%s%.*s", dg, n - k, "000000000000000000000");
    else if (0 < n && n <= 21)
        sprintf(out, "%.*s.%s", n, dg, dg + n);
    else if (-6 < n && n <= 0)
        sprintf(out, "0.%.*s%s", -n, "000000", dg);
    else
        sprintf(out, "%c%s%.*s%c%+d", dg[0], k > 1 ? "." : "", k - 1, dg + 1, 'e', n - 1);
}

static long checked, wrong;

static void check(double v) {
    char got[64], want[64];
    size_t n = weir_fmt_double(v, got);
    cr_assert_leq(n, WEIR_FMT_DOUBLE_MAX);
    got[n] = '\0';
    ref_fmt(v, want);
    checked++;
    if (strcmp(got, want)) {
        if (wrong++ < 10)
            cr_log_error("%a: got %s, want %s", v, got, want);
    }
    if (isfinite(v))
        cr_assert(reads_back(got, v), "%a -> %s -> %a", v, got, strtod(got, NULL));
}

Test(numfmt, reference_comparison, .timeout = 300) {
    char s[64];
    ref_fmt(0.30000000000000004, s); /* the reference itself, on values of the table above */
    cr_assert_str_eq(s, "0.30000000000000004");
    ref_fmt(-47.576668116528054, s);
    cr_assert_str_eq(s, "-47.576668116528054");
    ref_fmt(1e21, s);
    cr_assert_str_eq(s, "1e+21");
    ref_fmt(0x1p-44, s);
    cr_assert_str_eq(s, "5.684341886080802e-14");
    ref_fmt(9.5367431640625e-7, s);
    cr_assert_str_eq(s, "9.5367431640625e-7");
    ref_fmt(1234567890123456789.0, s);
    cr_assert_str_eq(s, "1234567890123456800");
    uint64_t st = 0x9e3779b97f4a7c15ULL;
    /* 1,000,000 random bit patterns (non-finite ones included: "null") */
    for (int i = 0; i < 1000000; i++) {
        uint64_t u = xs64(&st);
        double v;
        memcpy(&v, &u, sizeof(v));
        check(v);
    }
    /* 1,000,000 values of common ranges: uniform in [0,100), uniform scaled by 10^-20..10^20, short decimals,
     * integers */
    for (int i = 0; i < 1000000; i++) {
        uint64_t u = xs64(&st);
        const double r = (double)(u >> 11) * 0x1p-53;
        const double sg = u & 1 ? -1 : 1;
        switch (i & 3) {
        case 0: check(sg * 100 * r); break;
        case 1: check(sg * r * pow(10, (int)(u % 41) - 20)); break;
        case 2: check(sg * (double)(u % 1000000) / pow(10, (int)(u >> 40) % 12)); break;
        default: check(sg * (double)(u >> (11 + u % 53))); break;
        }
    }
    /* every power of two (the asymmetric interval) and its neighbours, the subnormal edge, powers of ten */
    for (int e = -1074; e <= 1023; e++) {
        const double p2 = ldexp(1, e);
        check(p2);
        check(nextafter(p2, 0));
        check(nextafter(p2, INFINITY));
    }
    for (uint64_t u = 1; u < 2000; u++) {
        double v;
        memcpy(&v, &u, sizeof(v));
        check(v);
    }
    for (int e = -323; e <= 308; e++) {
        char t[16];
        snprintf(t, sizeof(t), "1e%d", e);
        const double p10 = strtod(t, NULL);
        check(p10);
        check(nextafter(p10, 0));
        check(nextafter(p10, INFINITY));
    }
    cr_log_info("numfmt: %ld values compared with the reference, %ld differ", checked, wrong);
    cr_assert_eq(wrong, 0, "%ld of %ld outputs differ from the shortest closest reference", wrong, checked);
}

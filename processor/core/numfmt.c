/* Shortest-round-trip double formatting (Grisu2), see numfmt.h. */
#include "numfmt.h"

#include <stdint.h>
#include <string.h>

typedef struct diyfp {
    uint64_t f;
    int e;
} diyfp_t;

/* 10^k for k = -348, -340, ..., 340: normalised 64-bit significand (rounded
 * to nearest) and binary exponent; generated with exact rational arithmetic. */
static const struct {
    uint64_t f;
    int16_t e;
} cached_powers[87] = {
    {0xfa8fd5a0081c0288ULL, -1220}, /* 1e-348 */
    {0xbaaee17fa23ebf76ULL, -1193}, /* 1e-340 */
    {0x8b16fb203055ac76ULL, -1166}, /* 1e-332 */
    {0xcf42894a5dce35eaULL, -1140}, /* 1e-324 */
    {0x9a6bb0aa55653b2dULL, -1113}, /* 1e-316 */
    {0xe61acf033d1a45dfULL, -1087}, /* 1e-308 */
    {0xab70fe17c79ac6caULL, -1060}, /* 1e-300 */
    {0xff77b1fcbebcdc4fULL, -1034}, /* 1e-292 */
    {0xbe5691ef416bd60cULL, -1007}, /* 1e-284 */
    {0x8dd01fad907ffc3cULL, -980},  /* 1e-276 */
    {0xd3515c2831559a83ULL, -954},  /* 1e-268 */
    {0x9d71ac8fada6c9b5ULL, -927},  /* 1e-260 */
    {0xea9c227723ee8bcbULL, -901},  /* 1e-252 */
    {0xaecc49914078536dULL, -874},  /* 1e-244 */
    {0x823c12795db6ce57ULL, -847},  /* 1e-236 */
    {0xc21094364dfb5637ULL, -821},  /* 1e-228 */
    {0x9096ea6f3848984fULL, -794},  /* 1e-220 */
    {0xd77485cb25823ac7ULL, -768},  /* 1e-212 */
    {0xa086cfcd97bf97f4ULL, -741},  /* 1e-204 */
    {0xef340a98172aace5ULL, -715},  /* 1e-196 */
    {0xb23867fb2a35b28eULL, -688},  /* 1e-188 */
    {0x84c8d4dfd2c63f3bULL, -661},  /* 1e-180 */
    {0xc5dd44271ad3cdbaULL, -635},  /* 1e-172 */
    {0x936b9fcebb25c996ULL, -608},  /* 1e-164 */
    {0xdbac6c247d62a584ULL, -582},  /* 1e-156 */
    {0xa3ab66580d5fdaf6ULL, -555},  /* 1e-148 */
    {0xf3e2f893dec3f126ULL, -529},  /* 1e-140 */
    {0xb5b5ada8aaff80b8ULL, -502},  /* 1e-132 */
    {0x87625f056c7c4a8bULL, -475},  /* 1e-124 */
    {0xc9bcff6034c13053ULL, -449},  /* 1e-116 */
    {0x964e858c91ba2655ULL, -422},  /* 1e-108 */
    {0xdff9772470297ebdULL, -396},  /* 1e-100 */
    {0xa6dfbd9fb8e5b88fULL, -369},  /* 1e-92 */
    {0xf8a95fcf88747d94ULL, -343},  /* 1e-84 */
    {0xb94470938fa89bcfULL, -316},  /* 1e-76 */
    {0x8a08f0f8bf0f156bULL, -289},  /* 1e-68 */
    {0xcdb02555653131b6ULL, -263},  /* 1e-60 */
    {0x993fe2c6d07b7facULL, -236},  /* 1e-52 */
    {0xe45c10c42a2b3b06ULL, -210},  /* 1e-44 */
    {0xaa242499697392d3ULL, -183},  /* 1e-36 */
    {0xfd87b5f28300ca0eULL, -157},  /* 1e-28 */
    {0xbce5086492111aebULL, -130},  /* 1e-20 */
    {0x8cbccc096f5088ccULL, -103},  /* 1e-12 */
    {0xd1b71758e219652cULL, -77},   /* 1e-4 */
    {0x9c40000000000000ULL, -50},   /* 1e4 */
    {0xe8d4a51000000000ULL, -24},   /* 1e12 */
    {0xad78ebc5ac620000ULL, 3},     /* 1e20 */
    {0x813f3978f8940984ULL, 30},    /* 1e28 */
    {0xc097ce7bc90715b3ULL, 56},    /* 1e36 */
    {0x8f7e32ce7bea5c70ULL, 83},    /* 1e44 */
    {0xd5d238a4abe98068ULL, 109},   /* 1e52 */
    {0x9f4f2726179a2245ULL, 136},   /* 1e60 */
    {0xed63a231d4c4fb27ULL, 162},   /* 1e68 */
    {0xb0de65388cc8ada8ULL, 189},   /* 1e76 */
    {0x83c7088e1aab65dbULL, 216},   /* 1e84 */
    {0xc45d1df942711d9aULL, 242},   /* 1e92 */
    {0x924d692ca61be758ULL, 269},   /* 1e100 */
    {0xda01ee641a708deaULL, 295},   /* 1e108 */
    {0xa26da3999aef774aULL, 322},   /* 1e116 */
    {0xf209787bb47d6b85ULL, 348},   /* 1e124 */
    {0xb454e4a179dd1877ULL, 375},   /* 1e132 */
    {0x865b86925b9bc5c2ULL, 402},   /* 1e140 */
    {0xc83553c5c8965d3dULL, 428},   /* 1e148 */
    {0x952ab45cfa97a0b3ULL, 455},   /* 1e156 */
    {0xde469fbd99a05fe3ULL, 481},   /* 1e164 */
    {0xa59bc234db398c25ULL, 508},   /* 1e172 */
    {0xf6c69a72a3989f5cULL, 534},   /* 1e180 */
    {0xb7dcbf5354e9beceULL, 561},   /* 1e188 */
    {0x88fcf317f22241e2ULL, 588},   /* 1e196 */
    {0xcc20ce9bd35c78a5ULL, 614},   /* 1e204 */
    {0x98165af37b2153dfULL, 641},   /* 1e212 */
    {0xe2a0b5dc971f303aULL, 667},   /* 1e220 */
    {0xa8d9d1535ce3b396ULL, 694},   /* 1e228 */
    {0xfb9b7cd9a4a7443cULL, 720},   /* 1e236 */
    {0xbb764c4ca7a44410ULL, 747},   /* 1e244 */
    {0x8bab8eefb6409c1aULL, 774},   /* 1e252 */
    {0xd01fef10a657842cULL, 800},   /* 1e260 */
    {0x9b10a4e5e9913129ULL, 827},   /* 1e268 */
    {0xe7109bfba19c0c9dULL, 853},   /* 1e276 */
    {0xac2820d9623bf429ULL, 880},   /* 1e284 */
    {0x80444b5e7aa7cf85ULL, 907},   /* 1e292 */
    {0xbf21e44003acdd2dULL, 933},   /* 1e300 */
    {0x8e679c2f5e44ff8fULL, 960},   /* 1e308 */
    {0xd433179d9c8cb841ULL, 986},   /* 1e316 */
    {0x9e19db92b4e31ba9ULL, 1013},  /* 1e324 */
    {0xeb96bf6ebadf77d9ULL, 1039},  /* 1e332 */
    {0xaf87023b9bf0ee6bULL, 1066},  /* 1e340 */
};

static const uint32_t pow10_32[10] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000};

/* The high 64 bits of a.f * b.f, rounded half up: floor((a.f b.f + 2^63) / 2^64) (Grisu's four 32-bit
 * partial products give exactly this; one 64x64->128 multiply is cheaper). */
static inline diyfp_t diy_mul(diyfp_t a, diyfp_t b) {
    const unsigned __int128 p = (unsigned __int128)a.f * b.f + (1ULL << 63);
    return (diyfp_t){(uint64_t)(p >> 64), a.e + b.e + 64};
}

static inline diyfp_t diy_normalize(diyfp_t x) {
    const int s = __builtin_clzll(x.f);
    return (diyfp_t){x.f << s, x.e - s};
}

/* ceil(n log10 2) for |n| <= 1650: floor by Ryu's (n 78913) >> 18 (exact in that range), + 1 unless n = 0
 * (n log10 2 is irrational for n != 0). */
static inline int fmt_ceil_log10_pow2(int n) { return ((n * 78913) >> 18) + (n != 0); }

int weir_fmt_k_check(void) {
    for (int e = -1200; e <= 1200; e++) {
        const double dk = (-61 - e) * 0.30102999566398114 + 347;
        int k = (int)dk;
        if (dk - k > 0.0)
            k++;
        if (k != fmt_ceil_log10_pow2(-61 - e) + 347)
            return e;
    }
    return INT32_MAX;
}

static inline int digits32(uint32_t n) {
    int d = 1;
    while (d < 10 && n >= pow10_32[d])
        d++;
    return d;
}

static inline void grisu_round(char *buf, int len, uint64_t delta, uint64_t rest, uint64_t ten_kappa, uint64_t wp_w) {
    while (rest < wp_w && delta - rest >= ten_kappa &&
           (rest + ten_kappa < wp_w || wp_w - rest > rest + ten_kappa - wp_w)) {
        buf[len - 1]--;
        rest += ten_kappa;
    }
}

/* Digits of a positive finite v into buf (no sign, no point): v ~ buf * 10^*K. @returns the digit count. */
static int grisu2(double v, char *buf, int *K) {
    uint64_t u;
    memcpy(&u, &v, sizeof(u));
    const int be = (int)((u >> 52) & 0x7ff);
    const uint64_t sig = u & ((1ULL << 52) - 1);
    const diyfp_t x = be ? (diyfp_t){sig | (1ULL << 52), be - 1075} : (diyfp_t){sig, -1074};
    /* boundaries m- and m+ of the rounding interval, on a common exponent */
    const diyfp_t pl = diy_normalize((diyfp_t){(x.f << 1) + 1, x.e - 1});
    diyfp_t mi = x.f == (1ULL << 52) ? (diyfp_t){(x.f << 2) - 1, x.e - 2} : (diyfp_t){(x.f << 1) - 1, x.e - 1};
    mi.f <<= mi.e - pl.e;
    mi.e = pl.e;
    /* cached power c = 10^-k such that the products' exponents land in [-60, -32]:
     * k = ceil((-61 - e) log10 2) + 347, in integers (weir_fmt_k_check: equal to the double formula
     * ceil((-61 - e) * 0.30102999566398114 + 347) for every e from -1200 to 1200) */
    const int idx = ((fmt_ceil_log10_pow2(-61 - pl.e) + 347) >> 3) + 1;
    *K = -(-348 + (int)(idx << 3));
    const diyfp_t c = {cached_powers[idx].f, cached_powers[idx].e};
    const diyfp_t W = diy_mul(diy_normalize(x), c);
    diyfp_t Wp = diy_mul(pl, c), Wm = diy_mul(mi, c);
    Wm.f++;
    Wp.f--;
    /* digit generation */
    uint64_t delta = Wp.f - Wm.f;
    const int sh = -Wp.e;
    const uint64_t one = 1ULL << sh, wp_w = Wp.f - W.f;
    uint32_t p1 = (uint32_t)(Wp.f >> sh);
    uint64_t p2 = Wp.f & (one - 1);
    int kappa = digits32(p1), len = 0;
    if (delta < one) {
        /* Every normal double: (p1_rest << sh) + p2 <= delta < 2^sh needs p1_rest = 0, so the loop below would
         * write p1's digits and stop after the last non-zero one if p2 <= delta, else after all of them. The
         * same digits without a division per digit: */
        static const char pairs[201] =
            "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
            "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
            "8081828384858687888990919293949596979899";
        uint32_t r = p1;
        int i = kappa;
        while (i >= 2) {
            const uint32_t q = r / 100, two = r - q * 100;
            buf[i - 2] = pairs[2 * two];
            buf[i - 1] = pairs[2 * two + 1];
            r = q;
            i -= 2;
        }
        if (i)
            buf[0] = (char)('0' + r);
        if (p2 <= delta) {
            int tz = 0; /* trailing zeros of p1 (its first digit is not 0) */
            while (buf[kappa - 1 - tz] == '0')
                tz++;
            len = kappa - tz;
            *K += tz;
            grisu_round(buf, len, delta, p2, (uint64_t)pow10_32[tz] << sh, wp_w);
            return len;
        }
        len = kappa;
        kappa = 0;
    }
    while (kappa > 0) {
        uint32_t d;
        switch (kappa) { /* constant divisors: multiplications, not divisions */
        case 10:
            d = p1 / 1000000000;
            p1 %= 1000000000;
            break;
        case 9:
            d = p1 / 100000000;
            p1 %= 100000000;
            break;
        case 8:
            d = p1 / 10000000;
            p1 %= 10000000;
            break;
        case 7:
            d = p1 / 1000000;
            p1 %= 1000000;
            break;
        case 6:
            d = p1 / 100000;
            p1 %= 100000;
            break;
        case 5:
            d = p1 / 10000;
            p1 %= 10000;
            break;
        case 4:
            d = p1 / 1000;
            p1 %= 1000;
            break;
        case 3:
            d = p1 / 100;
            p1 %= 100;
            break;
        case 2:
            d = p1 / 10;
            p1 %= 10;
            break;
        default:
            d = p1;
            p1 = 0;
            break;
        }
        if (d || len)
            buf[len++] = (char)('0' + d);
        kappa--;
        const uint64_t tmp = ((uint64_t)p1 << sh) + p2;
        if (tmp <= delta) {
            *K += kappa;
            grisu_round(buf, len, delta, tmp, (uint64_t)pow10_32[kappa] << sh, wp_w);
            return len;
        }
    }
    /* p1 >= 1 (Wp is normalised and sh <= 60), so its first digit is not 0 and len >= 1 here: every
     * fractional digit is written. */
    for (;;) {
        p2 *= 10;
        delta *= 10;
        const char d = (char)(p2 >> sh);
        buf[len++] = (char)('0' + d);
        p2 &= one - 1;
        kappa--;
        if (p2 < delta) {
            *K += kappa;
            const int i = -kappa;
            grisu_round(buf, len, delta, p2, one, wp_w * (i < 10 ? pow10_32[i] : 0));
            return len;
        }
    }
}

/* digits d[0..n) times 10^K as a JSON number (like %g: plain for 1e-6 <= |v| < 1e21, else exponent). */
static size_t layout(char *out, const char *d, int n, int K) {
    const int kk = n + K; /* position of the decimal point */
    char *o = out;
    if (K >= 0 && kk <= 21) {
        memcpy(o, d, (size_t)n);
        o += n;
        for (int i = 0; i < K; i++)
            *o++ = '0';
    } else if (kk > 0 && kk <= 21) {
        memcpy(o, d, (size_t)kk);
        o += kk;
        *o++ = '.';
        memcpy(o, d + kk, (size_t)(n - kk));
        o += n - kk;
    } else if (kk > -6 && kk <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -kk; i++)
            *o++ = '0';
        memcpy(o, d, (size_t)n);
        o += n;
    } else {
        *o++ = d[0];
        if (n > 1) {
            *o++ = '.';
            memcpy(o, d + 1, (size_t)(n - 1));
            o += n - 1;
        }
        int e = kk - 1;
        *o++ = 'e';
        if (e < 0) {
            *o++ = '-';
            e = -e;
        } else {
            *o++ = '+'; /* as JavaScript and Python print it: 1e+21 */
        }
        if (e >= 100)
            *o++ = (char)('0' + e / 100);
        if (e >= 10)
            *o++ = (char)('0' + e / 10 % 10);
        *o++ = (char)('0' + e % 10);
    }
    return (size_t)(o - out);
}

size_t weir_fmt_double(double v, char *out) {
    uint64_t u;
    memcpy(&u, &v, sizeof(u));
    if (((u >> 52) & 0x7ff) == 0x7ff) {
        memcpy(out, "null", 4);
        return 4;
    }
    /* the sign without a branch (signs of centroid coordinates are unpredictable) */
    const size_t neg = (size_t)(u >> 63);
    *out = '-';
    out += neg;
    u &= ~(1ULL << 63);
    memcpy(&v, &u, sizeof(v));
    if (u == 0) {
        *out = '0';
        return neg + 1;
    }
    char d[24];
    int K;
    const int n = grisu2(v, d, &K);
    return neg + layout(out, d, n, K);
}

size_t weir_fmt_long(int64_t v, char *out) {
    char tmp[WEIR_FMT_LONG_MAX];
    char *e = tmp + sizeof(tmp), *q = e;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--q = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--q = '-';
    memcpy(out, q, (size_t)(e - q));
    return (size_t)(e - q);
}

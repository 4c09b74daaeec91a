/* Shared pieces of the file and Kafka runtimes: signals, event time, summary. */
#include "runtime.h"

#include <ctype.h>
#include <math.h>
#include <string.h>
#include <time.h>

static void on_signal(int sig) {
    (void)sig;
    weir_stop = 1;
}

void weir_install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int digits(const char *s, size_t n, size_t *pos, int count, int *out) {
    int v = 0;
    for (int i = 0; i < count; i++) {
        if (*pos >= n || !isdigit((unsigned char)s[*pos]))
            return -1;
        v = v * 10 + (s[(*pos)++] - '0');
    }
    *out = v;
    return 0;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

int weir_parse_iso8601(const char *s, size_t n, int64_t *ms) {
    size_t p = 0;
    int Y, M, D, h = 0, mi = 0, sec = 0, frac_ms = 0;
    if (digits(s, n, &p, 4, &Y) || p >= n || s[p++] != '-' || digits(s, n, &p, 2, &M) || p >= n || s[p++] != '-' ||
        digits(s, n, &p, 2, &D))
        return WEIR_ERR;
    if (M < 1 || M > 12 || D < 1 || D > 31)
        return WEIR_ERR;
    if (p < n && (s[p] == 'T' || s[p] == 't' || s[p] == ' ')) {
        p++;
        if (digits(s, n, &p, 2, &h) || p >= n || s[p++] != ':' || digits(s, n, &p, 2, &mi))
            return WEIR_ERR;
        if (p < n && s[p] == ':') {
            p++;
            if (digits(s, n, &p, 2, &sec))
                return WEIR_ERR;
            if (p < n && (s[p] == '.' || s[p] == ',')) {
                p++;
                int nd = 0, v = 0;
                while (p < n && isdigit((unsigned char)s[p])) {
                    if (nd < 3)
                        v = v * 10 + (s[p] - '0');
                    nd++;
                    p++;
                }
                if (!nd)
                    return WEIR_ERR;
                for (int k = nd; k < 3; k++)
                    v *= 10;
                frac_ms = v;
            }
        }
        if (h > 23 || mi > 59 || sec > 60)
            return WEIR_ERR;
    }
    int64_t off_min = 0;
    if (p < n) {
        if (s[p] == 'Z' || s[p] == 'z') {
            p++;
        } else if (s[p] == '+' || s[p] == '-') {
            int sign = s[p++] == '-' ? -1 : 1, oh, om = 0;
            if (digits(s, n, &p, 2, &oh))
                return WEIR_ERR;
            if (p < n && s[p] == ':')
                p++;
            if (p < n && digits(s, n, &p, 2, &om))
                return WEIR_ERR;
            off_min = sign * (oh * 60 + om);
        }
    }
    if (p != n)
        return WEIR_ERR;
    int64_t days = days_from_civil(Y, (unsigned)M, (unsigned)D);
    *ms = ((days * 86400 + h * 3600 + mi * 60 + sec) - off_min * 60) * 1000 + frac_ms;
    return WEIR_OK;
}

int weir_source_stamp(const weir_source_spec_t *src, weir_record_t *rec, int64_t fallback_ts, char *reason,
                      size_t reason_size) {
    rec->ts = fallback_ts;
    if (src->event_time_slot >= 0) {
        const weir_value_t *v = &rec->v[src->event_time_slot];
        const char *name = src->rt->fields[src->event_time_slot].name;
        switch (v->type) {
        case WEIR_LONG: rec->ts = v->u.i; break;
        case WEIR_DOUBLE:
            if (!isfinite(v->u.d))
                return weir_err(reason, reason_size, "event time field '%s' is not finite", name);
            /* converted only when in range: the conversion of a double beyond int64 is undefined */
            if (!(fabs(v->u.d) < (double)WEIR_TS_LIMIT))
                return weir_err(reason, reason_size, "event time field '%s': %g ms is out of range (+-2^60 ms)", name,
                                v->u.d);
            rec->ts = (int64_t)v->u.d;
            break;
        case WEIR_STRING:
            if (weir_parse_iso8601(v->u.s.p, v->u.s.n, &rec->ts))
                return weir_err(reason, reason_size, "event time field '%s': '%.*s' is not an ISO-8601 timestamp", name,
                                (int)(v->u.s.n > 64 ? 64 : v->u.s.n), v->u.s.p);
            break;
        default: return weir_err(reason, reason_size, "event time field '%s' is null", name);
        }
        if (rec->ts <= -WEIR_TS_LIMIT || rec->ts >= WEIR_TS_LIMIT)
            return weir_err(reason, reason_size, "event time field '%s': %lld ms is out of range (+-2^60 ms)", name,
                            (long long)rec->ts);
    } else if (rec->ts != WEIR_TS_NONE && (rec->ts <= -WEIR_TS_LIMIT || rec->ts >= WEIR_TS_LIMIT)) {
        return weir_err(reason, reason_size, "message timestamp %lld ms is out of range (+-2^60 ms)",
                        (long long)rec->ts);
    }
    /* Checked here, before the record reaches an operator: a rejected record leaves no trace in state or time. */
    if (rec->ts != WEIR_TS_NONE) {
        if (src->max_future_ms > 0) {
            int64_t ahead = rec->ts - weir_now_ms();
            if (ahead > src->max_future_ms)
                return weir_err(reason, reason_size,
                                "event time %lld is %lld ms ahead of processing time (source.watermark.max_future: "
                                "%lld ms)",
                                (long long)rec->ts, (long long)ahead, (long long)src->max_future_ms);
        }
    }
    if (src->key_slot >= 0) {
        const weir_value_t *v = &rec->v[src->key_slot];
        if (v->type == WEIR_STRING || v->type == WEIR_BYTES) {
            rec->key = v->u.s.p;
            rec->key_len = v->u.s.n;
        } else if (v->type == WEIR_LONG) {
            char *k = weir_arena_alloc(&rec->arena, 24);
            rec->key_len = (size_t)snprintf(k, 24, "%lld", (long long)v->u.i);
            rec->key = k;
        } else {
            rec->key = NULL;
            rec->key_len = 0;
        }
    }
    return WEIR_OK;
}

void weir_print_summary(uint64_t in, uint64_t out, uint64_t dead, double elapsed_s, const char *interval) {
    fprintf(stderr,
            "weir summary: records_in=%llu records_out=%llu dead_lettered=%llu elapsed_s=%.3f records_per_s=%.0f "
            "interval=%s\n",
            (unsigned long long)in, (unsigned long long)out, (unsigned long long)dead, elapsed_s,
            elapsed_s > 0 ? (double)in / elapsed_s : 0.0, interval);
}

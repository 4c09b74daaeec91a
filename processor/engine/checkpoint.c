/*
 * checkpoint.c: the Redis checkpoint store (see checkpoint.h for the layout
 * and the write protocol, docs/checkpoints.md for the reasoning).
 *
 * Every Redis exchange goes through ck_reply(), which turns a dead or slow
 * connection and Redis' transient errors (LOADING, BUSY, OOM...) into
 * WEIR_RETRY. Whenever a call fails half-way the connection is dropped: that
 * discards pending replies, WATCH and MULTI state in one move, and the next
 * call reconnects.
 */
#include "checkpoint.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

/** Chunk commands in flight at once: bounds hiredis' output buffer to ~4 MiB (more gains nothing on loopback). */
#define CK_WINDOW 4
/** A temporary hash left by a dead writer expires after this many seconds. */
#define CK_TMP_TTL_S 3600
/** How many checkpoints below the previous one a write unlinks (catch-up after a failed prune). */
#define CK_PRUNE_DEPTH 16
#define CK_KEY_MAX 1024

struct weir_ckpt {
    char *host; /**< host name or address, owned */
    int port;
    char *user;       /**< ACL user, owned, or NULL */
    char *password;   /**< owned, or NULL (no AUTH) */
    int db;           /**< SELECTed after connecting when non-zero */
    char *pipeline;   /**< key prefix weir:PIPELINE:, owned */
    redisContext *rc; /**< the connection, NULL until needed and after a failure */
    weir_ckpt_stats_t stats;
    weir_ckpt_hook_fn hook; /**< test hook, or NULL */
    void *hook_opaque;
    uint64_t seq; /**< makes temporary key names unique within the process */
};

/* ---- URL ---------------------------------------------------------------- */

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = tolower(ch);
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/** %-decode s[0..n) into a new string, or NULL for a bad escape. */
static char *pct_decode(const char *s, size_t n) {
    char *out = weir_malloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0) {
                free(out);
                return NULL;
            }
            *o++ = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

static int parse_url(weir_ckpt_t *c, const char *url, char *errstr, size_t errstr_size) {
    static const char scheme[] = "redis://";
    if (!url || strncmp(url, scheme, sizeof(scheme) - 1)) {
        if (url && !strncmp(url, "rediss://", 9))
            return weir_err(errstr, errstr_size, "redis URL '%s': TLS (rediss://) is not supported", url);
        return weir_err(errstr, errstr_size, "redis URL '%s': expected redis://[user:password@]host[:port][/db]",
                        url ? url : "(null)");
    }
    const char *p = url + sizeof(scheme) - 1;
    const char *slash = strchr(p, '/');
    const char *end = slash ? slash : p + strlen(p);
    /* userinfo: everything before the last '@' of the authority */
    const char *at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@')
            at = q;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon)
            return weir_err(errstr, errstr_size, "redis URL '%s': expected user:password@ or :password@", url);
        if (colon > p && !(c->user = pct_decode(p, (size_t)(colon - p))))
            return weir_err(errstr, errstr_size, "redis URL '%s': bad %%-escape in the user", url);
        if (!(c->password = pct_decode(colon + 1, (size_t)(at - colon - 1))))
            return weir_err(errstr, errstr_size, "redis URL '%s': bad %%-escape in the password", url);
        p = at + 1;
    }
    const char *hend, *portp = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb)
            return weir_err(errstr, errstr_size, "redis URL '%s': unterminated [address]", url);
        c->host = weir_strndup(p + 1, (size_t)(rb - p - 1));
        hend = rb + 1;
        if (hend < end && *hend != ':')
            return weir_err(errstr, errstr_size, "redis URL '%s': junk after [address]", url);
        if (hend < end)
            portp = hend + 1;
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        hend = colon ? colon : end;
        c->host = weir_strndup(p, (size_t)(hend - p));
        if (colon)
            portp = colon + 1;
    }
    if (!c->host[0])
        return weir_err(errstr, errstr_size, "redis URL '%s': no host", url);
    c->port = 6379;
    if (portp) {
        char *e;
        long v = strtol(portp, &e, 10);
        if (e != end || portp == end || v < 1 || v > 65535)
            return weir_err(errstr, errstr_size, "redis URL '%s': bad port", url);
        c->port = (int)v;
    }
    if (slash && slash[1]) {
        char *e;
        long v = strtol(slash + 1, &e, 10);
        if (*e || v < 0 || v > 1000000)
            return weir_err(errstr, errstr_size, "redis URL '%s': bad database number '%s'", url, slash + 1);
        c->db = (int)v;
    }
    return WEIR_OK;
}

weir_ckpt_t *weir_ckpt_new(const char *url, const char *pipeline, char *errstr, size_t errstr_size) {
    weir_ckpt_t *c = weir_calloc(1, sizeof(*c));
    if (!pipeline || !*pipeline || strpbrk(pipeline, ": {}")) {
        weir_err(errstr, errstr_size, "checkpoint: pipeline name '%s' must be non-empty without spaces, ':' or braces",
                 pipeline ? pipeline : "(null)");
        goto fail;
    }
    c->pipeline = weir_strdup(pipeline);
    if (parse_url(c, url, errstr, errstr_size))
        goto fail;
    return c;
fail:
    weir_ckpt_destroy(c);
    return NULL;
}

void weir_ckpt_destroy(weir_ckpt_t *c) {
    if (!c)
        return;
    if (c->rc)
        redisFree(c->rc);
    free(c->host);
    free(c->user);
    if (c->password) {
        memset(c->password, 0, strlen(c->password));
        free(c->password);
    }
    free(c->pipeline);
    free(c);
}

const weir_ckpt_stats_t *weir_ckpt_stats(const weir_ckpt_t *c) { return &c->stats; }

void weir_ckpt_set_write_hook(weir_ckpt_t *c, weir_ckpt_hook_fn fn, void *opaque) {
    c->hook = fn;
    c->hook_opaque = opaque;
}

/* ---- connection and replies --------------------------------------------- */

/*
 * hiredis writes with write(2): a connection Redis closed raises SIGPIPE, which
 * would kill a process that does not ignore it (the runtime does, `weir state`
 * and tests need not). Every public call blocks SIGPIPE in its thread and
 * swallows the one it caused, as libcurl does.
 */
typedef struct sigpipe_guard {
    sigset_t old;     /**< the thread's mask before */
    bool was_pending; /**< a SIGPIPE was pending before: not ours to swallow */
} sigpipe_guard_t;

static void sigpipe_block(sigpipe_guard_t *g) {
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

static void sigpipe_unblock(sigpipe_guard_t *g) {
    if (!g->was_pending) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        struct timespec zero = {0, 0};
        while (sigtimedwait(&set, NULL, &zero) > 0)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

static void ck_drop(weir_ckpt_t *c) {
    if (c->rc)
        redisFree(c->rc);
    c->rc = NULL;
}

/** Redis error replies that mean "not now" rather than "never". */
static bool transient_error(const char *msg) {
    static const char *const prefixes[] = {"LOADING",     "BUSY",     "OOM",        "MASTERDOWN",  "TRYAGAIN",
                                           "CLUSTERDOWN", "READONLY", "NOREPLICAS", "NOMASTERLINK"};
    for (size_t i = 0; i < WEIR_ARRAY_SIZE(prefixes); i++)
        if (!strncmp(msg, prefixes[i], strlen(prefixes[i])))
            return true;
    return false;
}

/** Result of a failed exchange: drop the connection, classify, fill errstr. */
static int ck_io_fail(weir_ckpt_t *c, const char *what, char *errstr, size_t errstr_size) {
    weir_err(errstr, errstr_size, "redis %s:%d: %s: %s", c->host, c->port, what,
             c->rc && c->rc->errstr[0] ? c->rc->errstr : "connection lost");
    ck_drop(c);
    return WEIR_RETRY;
}

/**
 * @brief Take the next reply. An I/O failure or a transient error reply gives
 *        WEIR_RETRY, another error reply WEIR_ERR; both drop the connection.
 *        On WEIR_OK *out holds the reply (the caller frees it).
 */
static int ck_reply(weir_ckpt_t *c, redisReply **out, const char *what, char *errstr, size_t errstr_size) {
    void *r = NULL;
    *out = NULL;
    if (redisGetReply(c->rc, &r) != REDIS_OK || !r)
        return ck_io_fail(c, what, errstr, errstr_size);
    redisReply *rep = r;
    if (rep->type == REDIS_REPLY_ERROR) {
        bool retry = transient_error(rep->str);
        weir_err(errstr, errstr_size, "redis %s:%d: %s: %s", c->host, c->port, what, rep->str);
        freeReplyObject(rep);
        ck_drop(c);
        return retry ? WEIR_RETRY : WEIR_ERR;
    }
    *out = rep;
    return WEIR_OK;
}

/** Send argv and take its reply (see ck_reply). */
static int ck_cmd(weir_ckpt_t *c, redisReply **out, const char *what, char *errstr, size_t errstr_size, int argc,
                  const char **argv, const size_t *lens) {
    if (redisAppendCommandArgv(c->rc, argc, argv, lens) != REDIS_OK)
        return ck_io_fail(c, what, errstr, errstr_size);
    return ck_reply(c, out, what, errstr, errstr_size);
}

static int ck_connect(weir_ckpt_t *c, char *errstr, size_t errstr_size) {
    if (c->rc)
        return WEIR_OK;
    struct timeval tv = {WEIR_CKPT_TIMEOUT_MS / 1000, (WEIR_CKPT_TIMEOUT_MS % 1000) * 1000};
    c->rc = redisConnectWithTimeout(c->host, c->port, tv);
    if (!c->rc || c->rc->err)
        return ck_io_fail(c, "connect", errstr, errstr_size);
    if (redisSetTimeout(c->rc, tv) != REDIS_OK)
        return ck_io_fail(c, "set timeout", errstr, errstr_size);
    redisEnableKeepAlive(c->rc);
    redisReply *r;
    int rc;
    if (c->password) {
        const char *argv[3] = {"AUTH", c->user ? c->user : c->password, c->password};
        size_t lens[3] = {4, strlen(argv[1]), strlen(c->password)};
        if ((rc = ck_cmd(c, &r, "AUTH", errstr, errstr_size, c->user ? 3 : 2, argv, lens)))
            return rc;
        freeReplyObject(r);
    }
    if (c->db) {
        char db[16];
        snprintf(db, sizeof(db), "%d", c->db);
        const char *argv[2] = {"SELECT", db};
        size_t lens[2] = {6, strlen(db)};
        if ((rc = ck_cmd(c, &r, "SELECT", errstr, errstr_size, 2, argv, lens)))
            return rc;
        freeReplyObject(r);
    }
    return WEIR_OK;
}

int weir_ckpt_connect(weir_ckpt_t *c, char *errstr, size_t errstr_size) {
    sigpipe_guard_t g;
    sigpipe_block(&g);
    int rc = ck_connect(c, errstr, errstr_size);
    sigpipe_unblock(&g);
    return rc;
}

const char *weir_ckpt_url_redact(const char *url, char *buf, size_t size) {
    const char *auth = strstr(url, "://");
    auth = auth ? auth + 3 : url;
    const char *end = auth + strcspn(auth, "/");
    const char *at = NULL;
    for (const char *p = auth; p < end; p++)
        if (*p == '@')
            at = p;
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (!colon)
        snprintf(buf, size, "%s", url);
    else
        snprintf(buf, size, "%.*s***%s", (int)(colon + 1 - url), url, at);
    return buf;
}

/* ---- keys and numbers ---------------------------------------------------- */

void weir_ckpt_key(const weir_ckpt_t *c, const char *topic, int32_t partition, int64_t n, char *buf, size_t size) {
    if (n > 0)
        snprintf(buf, size, "weir:%s:%s:%" PRId32 ":ckpt:%" PRId64, c->pipeline, topic, partition, n);
    else
        snprintf(buf, size, "weir:%s:%s:%" PRId32 ":latest", c->pipeline, topic, partition);
}

static int check_topic(const char *topic, char *errstr, size_t errstr_size) {
    if (!topic || !*topic || strlen(topic) > 512)
        return weir_err(errstr, errstr_size, "checkpoint: bad topic name '%.64s'", topic ? topic : "(null)");
    return WEIR_OK;
}

/** Parse a whole decimal int64 from a reply string (len bytes). */
static bool parse_i64(const char *s, size_t len, int64_t *v) {
    char buf[32];
    if (!s || len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *e;
    errno = 0;
    long long x = strtoll(buf, &e, 10);
    if (*e || errno)
        return false;
    *v = x;
    return true;
}

/* ---- write --------------------------------------------------------------- */

/** Read the replies of `n` pipelined chunk HSETs, starting at chunk `first`. */
static int take_chunk_replies(weir_ckpt_t *c, int first, int n, char *errstr, size_t errstr_size) {
    for (int i = 0; i < n; i++) {
        redisReply *r;
        int rc = ck_reply(c, &r, "HSET chunk", errstr, errstr_size);
        if (rc)
            return rc;
        freeReplyObject(r);
        if (c->hook && c->hook(c->hook_opaque, first + i)) {
            ck_drop(c);
            weir_err(errstr, errstr_size, "checkpoint write abandoned by the test hook after chunk %d", first + i);
            return WEIR_RETRY;
        }
    }
    return WEIR_OK;
}

static int ckpt_write(weir_ckpt_t *c, const char *topic, int32_t partition, int64_t next_offset,
                      const char *fingerprint, const uint8_t *state, size_t len, int64_t *n_out, char *errstr,
                      size_t errstr_size) {
    int rc;
    if ((rc = check_topic(topic, errstr, errstr_size)) || (rc = ck_connect(c, errstr, errstr_size)))
        return rc;
    char latest[CK_KEY_MAX], key[CK_KEY_MAX], tmp[CK_KEY_MAX + 64];
    weir_ckpt_key(c, topic, partition, 0, latest, sizeof(latest));

    /* 1. WATCH latest, read it: the EXEC below fails if anyone moves it meanwhile. */
    const char *w_argv[2] = {"WATCH", latest};
    size_t w_lens[2] = {5, strlen(latest)};
    const char *g_argv[2] = {"GET", latest};
    size_t g_lens[2] = {3, strlen(latest)};
    redisAppendCommandArgv(c->rc, 2, w_argv, w_lens);
    redisAppendCommandArgv(c->rc, 2, g_argv, g_lens);
    redisReply *r;
    if ((rc = ck_reply(c, &r, "WATCH", errstr, errstr_size)))
        return rc;
    freeReplyObject(r);
    if ((rc = ck_reply(c, &r, "GET latest", errstr, errstr_size)))
        return rc;
    int64_t prev = 0;
    if (r->type == REDIS_REPLY_STRING) {
        if (!parse_i64(r->str, r->len, &prev) || prev < 0) {
            weir_err(errstr, errstr_size, "checkpoint: %s holds '%.32s', not a checkpoint number", latest, r->str);
            freeReplyObject(r);
            ck_drop(c);
            return WEIR_ERR;
        }
    } else if (r->type != REDIS_REPLY_NIL) {
        freeReplyObject(r);
        ck_drop(c);
        return weir_err(errstr, errstr_size, "checkpoint: %s is not a string", latest);
    }
    freeReplyObject(r);
    int64_t n = prev + 1;
    weir_ckpt_key(c, topic, partition, n, key, sizeof(key));
    snprintf(tmp, sizeof(tmp), "%s:tmp:%08x%08" PRIx64, key, (unsigned)getpid(), ++c->seq);

    /* 2. The chunks, pipelined CK_WINDOW at a time, each reply confirmed. */
    int nch = (int)((len + WEIR_CKPT_CHUNK_SIZE - 1) / WEIR_CKPT_CHUNK_SIZE);
    int sent = 0, confirmed = 0;
    for (int i = 0; i < nch; i++) {
        char field[32];
        snprintf(field, sizeof(field), "chunk:%d", i);
        size_t off = (size_t)i * WEIR_CKPT_CHUNK_SIZE;
        size_t clen = len - off < WEIR_CKPT_CHUNK_SIZE ? len - off : WEIR_CKPT_CHUNK_SIZE;
        const char *argv[4] = {"HSET", tmp, field, (const char *)state + off};
        size_t lens[4] = {4, strlen(tmp), strlen(field), clen};
        if (redisAppendCommandArgv(c->rc, 4, argv, lens) != REDIS_OK)
            return ck_io_fail(c, "HSET chunk", errstr, errstr_size);
        sent++;
        if (i == 0) {
            /* An abandoned temporary hash must not stay forever. */
            char ttl[16];
            snprintf(ttl, sizeof(ttl), "%d", CK_TMP_TTL_S);
            const char *e_argv[3] = {"EXPIRE", tmp, ttl};
            size_t e_lens[3] = {6, strlen(tmp), strlen(ttl)};
            redisAppendCommandArgv(c->rc, 3, e_argv, e_lens);
            if ((rc = take_chunk_replies(c, 0, 1, errstr, errstr_size)))
                return rc;
            confirmed++;
            if ((rc = ck_reply(c, &r, "EXPIRE", errstr, errstr_size)))
                return rc;
            freeReplyObject(r);
            continue;
        }
        if (sent - confirmed >= CK_WINDOW) {
            if ((rc = take_chunk_replies(c, confirmed, 1, errstr, errstr_size)))
                return rc;
            confirmed++;
        }
    }
    if ((rc = take_chunk_replies(c, confirmed, sent - confirmed, errstr, errstr_size)))
        return rc;
    if (c->hook && c->hook(c->hook_opaque, -1)) {
        ck_drop(c);
        weir_err(errstr, errstr_size, "checkpoint write abandoned by the test hook before EXEC");
        return WEIR_RETRY;
    }

    /* 3. One transaction: meta, rename into place, move latest. */
    char s_ver[16], s_off[32], s_size[32], s_crc[16], s_created[32], s_chunks[16], s_n[32];
    snprintf(s_ver, sizeof(s_ver), "%d", WEIR_CKPT_VERSION);
    snprintf(s_off, sizeof(s_off), "%" PRId64, next_offset);
    snprintf(s_size, sizeof(s_size), "%zu", len);
    snprintf(s_crc, sizeof(s_crc), "%" PRIu32, weir_crc32(0, state, len));
    snprintf(s_created, sizeof(s_created), "%" PRId64, weir_now_ms());
    snprintf(s_chunks, sizeof(s_chunks), "%d", nch);
    snprintf(s_n, sizeof(s_n), "%" PRId64, n);
    const char *fp = fingerprint ? fingerprint : "";
    const char *m_argv[] = {"MULTI"};
    const char *h_argv[] = {"HSET",  tmp,   "version",    s_ver,     "next_offset",       s_off, "size",   s_size,
                            "crc32", s_crc, "created_ms", s_created, "graph_fingerprint", fp,    "chunks", s_chunks};
    const char *p_argv[] = {"PERSIST", tmp};
    const char *r_argv[] = {"RENAME", tmp, key};
    const char *s_argv[] = {"SET", latest, s_n};
    const char *x_argv[] = {"EXEC"};
    struct {
        int argc;
        const char **argv;
    } tx[] = {{1, m_argv}, {(int)WEIR_ARRAY_SIZE(h_argv), h_argv}, {2, p_argv}, {3, r_argv}, {3, s_argv}, {1, x_argv}};
    for (size_t i = 0; i < WEIR_ARRAY_SIZE(tx); i++)
        if (redisAppendCommandArgv(c->rc, tx[i].argc, tx[i].argv, NULL) != REDIS_OK)
            return ck_io_fail(c, "MULTI", errstr, errstr_size);
    for (size_t i = 0; i + 1 < WEIR_ARRAY_SIZE(tx); i++) {
        if ((rc = ck_reply(c, &r, i ? "queue" : "MULTI", errstr, errstr_size)))
            return rc;
        freeReplyObject(r);
    }
    if ((rc = ck_reply(c, &r, "EXEC", errstr, errstr_size)))
        return rc;
    if (r->type == REDIS_REPLY_NIL) {
        /* WATCH fired: someone else moved latest. Our hash is left to expire; try to remove it now. */
        freeReplyObject(r);
        const char *u_argv[] = {"UNLINK", tmp};
        if (ck_cmd(c, &r, "UNLINK", errstr, errstr_size, 2, u_argv, NULL) == WEIR_OK)
            freeReplyObject(r);
        return weir_err(errstr, errstr_size,
                        "checkpoint: %s moved during the write of checkpoint %" PRId64
                        ": another process is checkpointing partition %s:%" PRId32,
                        latest, n, topic, partition);
    }
    bool ok = r->type == REDIS_REPLY_ARRAY && r->elements == 4;
    for (size_t i = 0; ok && i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_ERROR) {
            weir_err(errstr, errstr_size, "redis %s:%d: EXEC: %s", c->host, c->port, r->element[i]->str);
            ok = false;
        }
    if (!ok && r->type != REDIS_REPLY_ARRAY)
        weir_err(errstr, errstr_size, "redis %s:%d: EXEC: unexpected reply", c->host, c->port);
    freeReplyObject(r);
    if (!ok) {
        ck_drop(c);
        return WEIR_ERR;
    }
    *n_out = n;

    /* 4. Checkpoint n is in place and n-1 is kept: unlink n-2 and a few below (earlier failed prunes). */
    if (n >= 3) {
        int nk = 0;
        char keys[CK_PRUNE_DEPTH][CK_KEY_MAX];
        const char *u_argv[CK_PRUNE_DEPTH + 1] = {"UNLINK"};
        for (int64_t k = n - 2; k >= 1 && nk < CK_PRUNE_DEPTH; k--, nk++) {
            weir_ckpt_key(c, topic, partition, k, keys[nk], sizeof(keys[nk]));
            u_argv[nk + 1] = keys[nk];
        }
        char perr[WEIR_ERRSTR_SIZE];
        if (ck_cmd(c, &r, "UNLINK", perr, sizeof(perr), nk + 1, u_argv, NULL) == WEIR_OK)
            freeReplyObject(r);
        else
            weir_log(WEIR_LOG_WARN, "checkpoint", "pruning old checkpoints of %s: %s (retried on the next write)",
                     latest, perr);
    }
    return WEIR_OK;
}

int weir_ckpt_write(weir_ckpt_t *c, const char *topic, int32_t partition, int64_t next_offset, const char *fingerprint,
                    const void *state, size_t len, int64_t *n_out, char *errstr, size_t errstr_size) {
    int64_t t0 = weir_now_ns();
    sigpipe_guard_t g;
    sigpipe_block(&g);
    int rc = ckpt_write(c, topic, partition, next_offset, fingerprint, state, len, n_out, errstr, errstr_size);
    sigpipe_unblock(&g);
    if (rc == WEIR_OK) {
        c->stats.writes++;
        c->stats.last_write_bytes = (int64_t)len;
        c->stats.last_write_us = (weir_now_ns() - t0) / 1000;
    } else if (rc == WEIR_RETRY) {
        c->stats.retries++;
    } else {
        c->stats.errors++;
    }
    return rc;
}

/* ---- read ---------------------------------------------------------------- */

enum { M_VERSION, M_OFFSET, M_SIZE, M_CRC, M_CREATED, M_FP, M_CHUNKS, M_COUNT };
static const char *const meta_fields[M_COUNT] = {"version",    "next_offset",       "size",  "crc32",
                                                 "created_ms", "graph_fingerprint", "chunks"};

/** GET latest into *n: WEIR_OK, WEIR_CKPT_NONE (absent), WEIR_RETRY or WEIR_ERR. */
static int get_latest(weir_ckpt_t *c, const char *latest, int64_t *n, char *errstr, size_t errstr_size) {
    const char *argv[2] = {"GET", latest};
    redisReply *r;
    int rc = ck_cmd(c, &r, "GET latest", errstr, errstr_size, 2, argv, NULL);
    if (rc || !r)
        return rc ? rc : WEIR_ERR;
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        weir_err(errstr, errstr_size, "no checkpoint (%s does not exist)", latest);
        return WEIR_CKPT_NONE;
    }
    rc = WEIR_OK;
    if (r->type != REDIS_REPLY_STRING)
        rc = weir_err(errstr, errstr_size, "checkpoint: %s is not a string", latest);
    else if (!parse_i64(r->str, r->len, n) || *n < 1)
        rc = weir_err(errstr, errstr_size, "checkpoint: %s holds '%.32s', not a checkpoint number", latest, r->str);
    freeReplyObject(r);
    return rc;
}

static int ckpt_read(weir_ckpt_t *c, const char *topic, int32_t partition, int64_t n_want, int64_t *n_out,
                     int64_t *next_offset, char **fingerprint, weir_buf_t *state, char *errstr, size_t errstr_size) {
    int rc;
    if ((rc = check_topic(topic, errstr, errstr_size)) || (rc = ck_connect(c, errstr, errstr_size)))
        return rc;
    char latest[CK_KEY_MAX], key[CK_KEY_MAX];
    weir_ckpt_key(c, topic, partition, 0, latest, sizeof(latest));
    redisReply *meta = NULL;
    int64_t n = n_want;
    for (int attempt = 0;; attempt++) {
        if (n_want <= 0 && (rc = get_latest(c, latest, &n, errstr, errstr_size)))
            return rc;
        weir_ckpt_key(c, topic, partition, n, key, sizeof(key));
        const char *argv[2 + M_COUNT] = {"HMGET", key};
        for (int i = 0; i < M_COUNT; i++)
            argv[2 + i] = meta_fields[i];
        if ((rc = ck_cmd(c, &meta, "HMGET", errstr, errstr_size, 2 + M_COUNT, argv, NULL)))
            return rc;
        if (meta->type != REDIS_REPLY_ARRAY || meta->elements != M_COUNT) {
            freeReplyObject(meta);
            return weir_err(errstr, errstr_size, "checkpoint: %s: unexpected reply to HMGET", key);
        }
        bool empty = true;
        for (int i = 0; i < M_COUNT; i++)
            if (meta->element[i]->type != REDIS_REPLY_NIL)
                empty = false;
        if (!empty)
            break;
        freeReplyObject(meta);
        if (n_want > 0) {
            weir_err(errstr, errstr_size, "no checkpoint %s", key);
            return WEIR_CKPT_NONE;
        }
        if (attempt == 2) /* not a race with a writer pruning under us: latest is dangling */
            return weir_err(errstr, errstr_size, "checkpoint: %s = %" PRId64 " but %s does not exist", latest, n, key);
    }

    /* Meta: every field present and well-formed, version known. */
    int64_t v[M_COUNT] = {0};
    redisReply **e = meta->element;
    if (e[M_VERSION]->type != REDIS_REPLY_STRING) {
        freeReplyObject(meta);
        return weir_err(errstr, errstr_size, "checkpoint %s: no version field (incomplete or not a weir checkpoint)",
                        key);
    }
    if (!parse_i64(e[M_VERSION]->str, e[M_VERSION]->len, &v[M_VERSION]) || v[M_VERSION] != WEIR_CKPT_VERSION) {
        weir_err(errstr, errstr_size, "checkpoint %s: unknown checkpoint version '%.32s' (this weir reads version %d)",
                 key, e[M_VERSION]->str, WEIR_CKPT_VERSION);
        freeReplyObject(meta);
        return WEIR_ERR;
    }
    for (int i = 0; i < M_COUNT; i++) {
        if (i == M_FP)
            continue;
        if (e[i]->type != REDIS_REPLY_STRING || !parse_i64(e[i]->str, e[i]->len, &v[i]) || v[i] < 0 ||
            (i == M_CRC && v[i] > UINT32_MAX) || (i == M_CHUNKS && v[i] > INT32_MAX)) {
            freeReplyObject(meta);
            return weir_err(errstr, errstr_size, "checkpoint %s: field %s is missing or malformed", key,
                            meta_fields[i]);
        }
    }
    if (e[M_FP]->type != REDIS_REPLY_STRING) {
        freeReplyObject(meta);
        return weir_err(errstr, errstr_size, "checkpoint %s: field graph_fingerprint is missing", key);
    }
    char *fp = weir_strndup(e[M_FP]->str, e[M_FP]->len);
    freeReplyObject(meta);

    /* Chunks, pipelined CK_WINDOW at a time; never trust the size for more than a bounded reservation. */
    int nch = (int)v[M_CHUNKS];
    int64_t size = v[M_SIZE];
    weir_buf_reset(state);
    weir_buf_reserve(state, (size_t)(size < ((int64_t)256 << 20) ? size : ((int64_t)256 << 20)));
    int sent = 0;
    rc = WEIR_OK;
    for (int got = 0; got < nch && rc == WEIR_OK; got++) {
        while (sent < nch && sent - got < CK_WINDOW) {
            char field[32];
            snprintf(field, sizeof(field), "chunk:%d", sent);
            const char *argv[3] = {"HGET", key, field};
            if (redisAppendCommandArgv(c->rc, 3, argv, NULL) != REDIS_OK) {
                rc = ck_io_fail(c, "HGET chunk", errstr, errstr_size);
                break;
            }
            sent++;
        }
        redisReply *r;
        if (rc || (rc = ck_reply(c, &r, "HGET chunk", errstr, errstr_size)))
            break;
        if (r->type != REDIS_REPLY_STRING)
            rc = weir_err(errstr, errstr_size, "checkpoint %s: chunk:%d of %d is missing (truncated checkpoint)", key,
                          got, nch);
        else if ((int64_t)(state->len + r->len) > size)
            rc = weir_err(errstr, errstr_size,
                          "checkpoint %s: its chunks hold more than the %" PRId64 " bytes its meta says", key, size);
        else
            weir_buf_append(state, r->str, r->len);
        freeReplyObject(r);
        if (rc)
            ck_drop(c); /* replies of the chunks still in flight */
    }
    if (rc == WEIR_OK && (int64_t)state->len != size)
        rc = weir_err(errstr, errstr_size,
                      "checkpoint %s: state is %zu bytes, its meta says %" PRId64 " (truncated checkpoint)", key,
                      state->len, size);
    uint32_t crc;
    if (rc == WEIR_OK && (crc = weir_crc32(0, state->p, state->len)) != (uint32_t)v[M_CRC])
        rc = weir_err(errstr, errstr_size,
                      "checkpoint %s: CRC-32 mismatch (meta %08" PRIx32 ", data %08" PRIx32 "): corrupt checkpoint",
                      key, (uint32_t)v[M_CRC], crc);
    if (rc) {
        free(fp);
        weir_buf_reset(state);
        return rc;
    }
    *n_out = n;
    *next_offset = v[M_OFFSET];
    if (fingerprint)
        *fingerprint = fp;
    else
        free(fp);
    return WEIR_OK;
}

int weir_ckpt_read(weir_ckpt_t *c, const char *topic, int32_t partition, int64_t n_want, int64_t *n_out,
                   int64_t *next_offset, char **fingerprint, weir_buf_t *state, char *errstr, size_t errstr_size) {
    int64_t t0 = weir_now_ns();
    sigpipe_guard_t g;
    sigpipe_block(&g);
    int rc = ckpt_read(c, topic, partition, n_want, n_out, next_offset, fingerprint, state, errstr, errstr_size);
    sigpipe_unblock(&g);
    if (rc == WEIR_OK) {
        c->stats.last_read_bytes = (int64_t)state->len;
        c->stats.last_read_us = (weir_now_ns() - t0) / 1000;
    } else if (rc == WEIR_RETRY) {
        c->stats.retries++;
    } else if (rc == WEIR_ERR) {
        c->stats.errors++;
    }
    return rc;
}

static int ckpt_meta(weir_ckpt_t *c, const char *topic, int32_t partition, int64_t n_want, int64_t *n_out,
                     weir_ckpt_field_t **fields, int *count, char *errstr, size_t errstr_size) {
    int rc;
    *fields = NULL;
    *count = 0;
    if ((rc = check_topic(topic, errstr, errstr_size)) || (rc = ck_connect(c, errstr, errstr_size)))
        return rc;
    char latest[CK_KEY_MAX], key[CK_KEY_MAX];
    weir_ckpt_key(c, topic, partition, 0, latest, sizeof(latest));
    int64_t n = n_want;
    if (n_want <= 0 && (rc = get_latest(c, latest, &n, errstr, errstr_size)))
        return rc;
    weir_ckpt_key(c, topic, partition, n, key, sizeof(key));
    const char *argv[2] = {"HKEYS", key};
    redisReply *names, *vals;
    if ((rc = ck_cmd(c, &names, "HKEYS", errstr, errstr_size, 2, argv, NULL)))
        return rc;
    if (names->type != REDIS_REPLY_ARRAY || names->elements == 0) {
        freeReplyObject(names);
        weir_err(errstr, errstr_size, "no checkpoint %s", key);
        return WEIR_CKPT_NONE;
    }
    const char **hargv = weir_calloc(names->elements + 2, sizeof(*hargv));
    size_t *hlens = weir_calloc(names->elements + 2, sizeof(*hlens));
    int nf = 0;
    hargv[0] = "HMGET";
    hlens[0] = 5;
    hargv[1] = key;
    hlens[1] = strlen(key);
    for (size_t i = 0; i < names->elements; i++) {
        redisReply *f = names->element[i];
        if (f->type != REDIS_REPLY_STRING || (f->len > 6 && !memcmp(f->str, "chunk:", 6)))
            continue;
        hargv[2 + nf] = f->str;
        hlens[2 + nf++] = f->len;
    }
    if (nf == 0) {
        rc = weir_err(errstr, errstr_size, "checkpoint %s has chunks but no meta fields", key);
    } else if ((rc = ck_cmd(c, &vals, "HMGET", errstr, errstr_size, nf + 2, hargv, hlens)) == WEIR_OK) {
        weir_ckpt_field_t *out = weir_calloc((size_t)nf, sizeof(*out));
        for (int i = 0; i < nf; i++) {
            out[i].name = weir_strndup(hargv[2 + i], hlens[2 + i]);
            redisReply *x = vals->type == REDIS_REPLY_ARRAY && (size_t)i < vals->elements ? vals->element[i] : NULL;
            out[i].value = x && x->type == REDIS_REPLY_STRING ? weir_strndup(x->str, x->len) : NULL;
        }
        freeReplyObject(vals);
        *fields = out;
        *count = nf;
        *n_out = n;
    }
    free(hargv);
    free(hlens);
    freeReplyObject(names);
    return rc;
}

void weir_ckpt_fields_free(weir_ckpt_field_t *fields, int count) {
    for (int i = 0; i < count; i++) {
        free(fields[i].name);
        free(fields[i].value);
    }
    free(fields);
}

/* ---- list and delete ----------------------------------------------------- */

/** SCAN pattern for every key of the pipeline, glob characters escaped. */
static void scan_pattern(const weir_ckpt_t *c, char *buf, size_t size) {
    size_t o = 0;
    o += (size_t)snprintf(buf, size, "weir:");
    for (const char *p = c->pipeline; *p && o + 4 < size; p++) {
        if (strchr("*?[]\\", *p))
            buf[o++] = '\\';
        buf[o++] = *p;
    }
    snprintf(buf + o, size - o, ":*");
}

/** A SCAN page: *cursor updated, the page's keys in a reply owned by the caller. */
static int scan_page(weir_ckpt_t *c, const char *pattern, char *cursor, size_t cursor_size, redisReply **keys,
                     char *errstr, size_t errstr_size) {
    const char *argv[6] = {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"};
    redisReply *r;
    *keys = NULL;
    int rc = ck_cmd(c, &r, "SCAN", errstr, errstr_size, 6, argv, NULL);
    if (rc || !r)
        return rc ? rc : WEIR_ERR;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_ARRAY || r->element[0]->len >= cursor_size) {
        freeReplyObject(r);
        ck_drop(c);
        return weir_err(errstr, errstr_size, "redis %s:%d: SCAN: unexpected reply", c->host, c->port);
    }
    snprintf(cursor, cursor_size, "%s", r->element[0]->str);
    *keys = r;
    return WEIR_OK;
}

static bool all_digits(const char *s, size_t n) {
    if (n == 0 || n > 18)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

/**
 * Split "weir:P:TOPIC:PART:ckpt:N" (*n = N) or "weir:P:TOPIC:PART:latest"
 * (*n = 0). @returns false for any other key (temporary hashes included).
 */
static bool parse_key(const weir_ckpt_t *c, const char *key, size_t len, char **topic, int32_t *partition, int64_t *n) {
    size_t plen = 5 + strlen(c->pipeline) + 1;
    if (len <= plen)
        return false;
    const char *rest = key + plen, *end = key + len;
    const char *tail;
    static const char lat[] = ":latest";
    if ((size_t)(end - rest) > sizeof(lat) - 1 && !memcmp(end - (sizeof(lat) - 1), lat, sizeof(lat) - 1)) {
        tail = end - (sizeof(lat) - 1);
        *n = 0;
    } else {
        const char *colon = NULL;
        for (const char *p = end - 1; p > rest; p--)
            if (*p == ':') {
                colon = p;
                break;
            }
        if (!colon || !all_digits(colon + 1, (size_t)(end - colon - 1)) || colon - rest < 6 ||
            memcmp(colon - 5, ":ckpt", 5))
            return false;
        *n = strtoll(colon + 1, NULL, 10);
        tail = colon - 5;
    }
    const char *pc = NULL;
    for (const char *p = tail - 1; p > rest; p--)
        if (*p == ':') {
            pc = p;
            break;
        }
    if (!pc || !all_digits(pc + 1, (size_t)(tail - pc - 1)))
        return false;
    long long part = strtoll(pc + 1, NULL, 10);
    if (part > INT32_MAX)
        return false;
    *partition = (int32_t)part;
    *topic = weir_strndup(rest, (size_t)(pc - rest));
    return true;
}

static int info_cmp(const void *a, const void *b) {
    const weir_ckpt_info_t *x = a, *y = b;
    int t = strcmp(x->topic, y->topic);
    if (t)
        return t;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    return x->n < y->n ? -1 : x->n > y->n;
}

static int ckpt_list(weir_ckpt_t *c, weir_ckpt_info_t **out, int *count, char *errstr, size_t errstr_size) {
    *out = NULL;
    *count = 0;
    int rc = ck_connect(c, errstr, errstr_size);
    if (rc)
        return rc;
    char pattern[CK_KEY_MAX], cursor[64] = "0";
    scan_pattern(c, pattern, sizeof(pattern));
    weir_ckpt_info_t *ck = NULL, *lat = NULL; /* checkpoints, and latest pointers (n = its value) */
    int nck = 0, nlat = 0, cap_ck = 0, cap_lat = 0;
    do {
        redisReply *page = NULL;
        if ((rc = scan_page(c, pattern, cursor, sizeof(cursor), &page, errstr, errstr_size)) || !page)
            goto fail;
        redisReply *keys = page->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            weir_ckpt_info_t in = {0};
            if (keys->element[i]->type != REDIS_REPLY_STRING ||
                !parse_key(c, keys->element[i]->str, keys->element[i]->len, &in.topic, &in.partition, &in.n))
                continue;
            weir_ckpt_info_t **arr = in.n ? &ck : &lat;
            int *num = in.n ? &nck : &nlat, *cap = in.n ? &cap_ck : &cap_lat;
            if (*num == *cap) {
                *cap = *cap ? 2 * *cap : 64;
                *arr = weir_realloc(*arr, (size_t)*cap * sizeof(**arr));
            }
            (*arr)[(*num)++] = in;
        }
        freeReplyObject(page);
    } while (strcmp(cursor, "0"));

    /* SCAN may return a key twice: sort and drop duplicates. */
    if (nck > 1)
        qsort(ck, (size_t)nck, sizeof(*ck), info_cmp);
    int k = 0;
    for (int i = 0; i < nck; i++) {
        if (k && !info_cmp(&ck[k - 1], &ck[i])) {
            free(ck[i].topic);
            continue;
        }
        ck[k++] = ck[i];
    }
    nck = k;

    /* Meta of every checkpoint and the value of every latest, pipelined. */
    for (int i = 0; i < nck; i++) {
        char key[CK_KEY_MAX];
        weir_ckpt_key(c, ck[i].topic, ck[i].partition, ck[i].n, key, sizeof(key));
        const char *argv[] = {"HMGET", key, "version", "next_offset", "size", "created_ms"};
        redisAppendCommandArgv(c->rc, 6, argv, NULL);
    }
    for (int i = 0; i < nlat; i++) {
        char key[CK_KEY_MAX];
        weir_ckpt_key(c, lat[i].topic, lat[i].partition, 0, key, sizeof(key));
        const char *argv[] = {"GET", key};
        redisAppendCommandArgv(c->rc, 2, argv, NULL);
    }
    k = 0;
    for (int i = 0; i < nck; i++) {
        redisReply *r;
        if ((rc = ck_reply(c, &r, "HMGET", errstr, errstr_size))) {
            for (int j = i; j < nck; j++)
                free(ck[j].topic);
            nck = k;
            goto fail;
        }
        int64_t v[4];
        bool ok = r->type == REDIS_REPLY_ARRAY && r->elements == 4;
        for (size_t j = 0; ok && j < 4; j++)
            ok = r->element[j]->type == REDIS_REPLY_STRING && parse_i64(r->element[j]->str, r->element[j]->len, &v[j]);
        freeReplyObject(r);
        if (!ok) { /* vanished meanwhile, or not a checkpoint we understand */
            free(ck[i].topic);
            continue;
        }
        ck[i].next_offset = v[1];
        ck[i].size = v[2];
        ck[i].created_ms = v[3];
        ck[k++] = ck[i];
    }
    nck = k;
    for (int i = 0; i < nlat; i++) {
        redisReply *r;
        if ((rc = ck_reply(c, &r, "GET latest", errstr, errstr_size)))
            goto fail;
        int64_t n;
        if (r->type == REDIS_REPLY_STRING && parse_i64(r->str, r->len, &n))
            for (int j = 0; j < nck; j++)
                if (ck[j].n == n && ck[j].partition == lat[i].partition && !strcmp(ck[j].topic, lat[i].topic))
                    ck[j].latest = true;
        freeReplyObject(r);
    }
    weir_ckpt_info_free(lat, nlat);
    *out = ck;
    *count = nck;
    return WEIR_OK;
fail:
    weir_ckpt_info_free(ck, nck);
    weir_ckpt_info_free(lat, nlat);
    return rc;
}

void weir_ckpt_info_free(weir_ckpt_info_t *infos, int count) {
    for (int i = 0; i < count; i++)
        free(infos[i].topic);
    free(infos);
}

static int ckpt_delete_all(weir_ckpt_t *c, int64_t *deleted, char *errstr, size_t errstr_size) {
    *deleted = 0;
    int rc = ck_connect(c, errstr, errstr_size);
    if (rc)
        return rc;
    char pattern[CK_KEY_MAX], cursor[64] = "0";
    scan_pattern(c, pattern, sizeof(pattern));
    do {
        redisReply *page = NULL;
        if ((rc = scan_page(c, pattern, cursor, sizeof(cursor), &page, errstr, errstr_size)) || !page)
            return rc;
        redisReply *keys = page->element[1];
        if (keys->elements) {
            const char **argv = weir_calloc(keys->elements + 1, sizeof(*argv));
            size_t *lens = weir_calloc(keys->elements + 1, sizeof(*lens));
            argv[0] = "UNLINK";
            lens[0] = 6;
            for (size_t i = 0; i < keys->elements; i++) {
                argv[i + 1] = keys->element[i]->str ? keys->element[i]->str : "";
                lens[i + 1] = keys->element[i]->str ? keys->element[i]->len : 0;
            }
            redisReply *r;
            rc = ck_cmd(c, &r, "UNLINK", errstr, errstr_size, (int)keys->elements + 1, argv, lens);
            free(argv);
            free(lens);
            if (rc == WEIR_OK) {
                if (r->type == REDIS_REPLY_INTEGER)
                    *deleted += r->integer;
                freeReplyObject(r);
            }
        }
        freeReplyObject(page);
        if (rc)
            return rc;
    } while (strcmp(cursor, "0"));
    return WEIR_OK;
}

int weir_ckpt_meta(weir_ckpt_t *c, const char *topic, int32_t partition, int64_t n_want, int64_t *n_out,
                   weir_ckpt_field_t **fields, int *count, char *errstr, size_t errstr_size) {
    sigpipe_guard_t g;
    sigpipe_block(&g);
    int rc = ckpt_meta(c, topic, partition, n_want, n_out, fields, count, errstr, errstr_size);
    sigpipe_unblock(&g);
    return rc;
}

int weir_ckpt_list(weir_ckpt_t *c, weir_ckpt_info_t **out, int *count, char *errstr, size_t errstr_size) {
    sigpipe_guard_t g;
    sigpipe_block(&g);
    int rc = ckpt_list(c, out, count, errstr, errstr_size);
    sigpipe_unblock(&g);
    return rc;
}

int weir_ckpt_delete_all(weir_ckpt_t *c, int64_t *deleted, char *errstr, size_t errstr_size) {
    sigpipe_guard_t g;
    sigpipe_block(&g);
    int rc = ckpt_delete_all(c, deleted, errstr, errstr_size);
    sigpipe_unblock(&g);
    return rc;
}

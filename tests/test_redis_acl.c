/*
 * Authenticated Redis (issue 13): checkpoints under an ACL user limited to
 * weir's key prefix and to the commands weir sends (the line docs/checkpoints.md
 * gives), and a refused password or user as a start-up error (exit 2, at once,
 * no retry loop, the password not in the log).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"
#include "redis_harness.h"

/* docs/checkpoints.md, "Authenticated Redis": keep the two in step. */
#define ACL_RULES                                                                                                      \
    "on resetkeys ~weir:* resetchannels -@all +select +get +set +hset +hget +hmget +hkeys +expire +persist "           \
    "+rename +unlink +watch +multi +exec +scan"

static void acl_user(const h_redis_t *r, const char *user, const char *password) {
    char line[512];
    snprintf(line, sizeof(line), "ACL SETUSER %s reset >%s " ACL_RULES, user, password);
    redisContext *c = h_redis_connect(r);
    /* Split the line into argv for hiredis (no quoting needed: no spaces inside words). */
    const char *argv[64];
    size_t lens[64];
    int argc = 0;
    for (char *tok = strtok(line, " "); tok && argc < 64; tok = strtok(NULL, " ")) {
        argv[argc] = tok;
        lens[argc++] = strlen(tok);
    }
    redisReply *rep = redisCommandArgv(c, argc, argv, lens);
    cr_assert(rep && rep->type == REDIS_REPLY_STATUS, "ACL SETUSER: %s", rep ? rep->str : c->errstr);
    freeReplyObject(rep);
    redisFree(c);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

static const char *pipeline_file(void) {
    const char *path = h_path("acl.yaml");
    write_file(path, "pipeline: acl\n"
                     "source:\n"
                     "  kafka: {topics: [acl.in]}\n"
                     "  format: json\n"
                     "  fields: {sensor_id: string, ts: long, temperature: double}\n"
                     "  event_time: ts\n"
                     "  partitioned_by: sensor_id\n"
                     "nodes:\n"
                     "  - {name: w, op: window, key: sensor_id, type: tumbling, size: 10s,\n"
                     "     aggregate: {n: count(), mean_t: mean(temperature)}}\n"
                     "sinks:\n"
                     "  - {input: w, kafka: {topic: acl.out}}\n");
    return path;
}

static void produce(const h_broker_t *b, int count, long start_ts) {
    char n[32], ts[32];
    snprintf(n, sizeof(n), "%d", count);
    snprintf(ts, sizeof(ts), "%ld", start_ts);
    char *argv[] = {(char *)h_weir_bin(),
                    "produce",
                    "--brokers",
                    (char *)b->bootstrap,
                    "--topic",
                    "acl.in",
                    "--format",
                    "json",
                    "--count",
                    n,
                    "--sensors",
                    "5",
                    "--start-ts",
                    ts,
                    "--step",
                    "100",
                    NULL};
    pid_t p = h_spawn(argv, NULL, h_path("produce.err"));
    cr_assert_eq(h_wait(p, 30000), 0, "weir produce failed");
}

/* weir run --until-end with this Redis URL; @returns its exit status (-1: still running after timeout_ms). */
static int run_until_end(const h_broker_t *b, const char *url, const char *log, int timeout_ms) {
    char *argv[] = {(char *)h_weir_bin(),
                    "run",
                    (char *)pipeline_file(),
                    "--brokers",
                    (char *)b->bootstrap,
                    "--until-end",
                    "--redis",
                    (char *)url,
                    "--checkpoint-interval",
                    "200ms",
                    "-X",
                    "session.timeout.ms=6000",
                    NULL};
    pid_t p = h_spawn(argv, h_path("run.out"), log);
    return h_wait(p, timeout_ms);
}

static void state_list(const char *url, const char *out) {
    char *argv[] = {(char *)h_weir_bin(), "state", "--redis", (char *)url, "--pipeline", "acl", "list", NULL};
    pid_t p = h_spawn(argv, out, h_path("state.err"));
    cr_assert_eq(h_wait(p, 30000), 0, "weir state list failed under the ACL user (see %s)", h_path("state.err"));
}

Test(redis_acl, checkpoints_under_a_limited_user, .timeout = 240) {
    h_redis_t r;
    h_redis_start(&r);
    acl_user(&r, "weir", "s3cret-pw");
    h_broker_t b;
    const char *topics[] = {"--topic", "acl.in:2", "--topic", "acl.out:2", NULL};
    h_broker_start(&b, topics);
    char url[128];
    snprintf(url, sizeof(url), "redis://weir:s3cret-pw@127.0.0.1:%d/0", r.port);

    produce(&b, 200, 1700000000000L);
    cr_assert_eq(run_until_end(&b, url, h_path("run1.err"), 120000), 0, "first run failed (see %s)",
                 h_path("run1.err"));
    cr_assert_eq(h_count_text(h_path("run1.err"), "s3cret-pw"), 0, "the password is in the log");
    cr_assert_geq(h_count_text(h_path("run1.err"), "checkpoint acl.in["), 1, "no checkpoint written");
    redisReply *keys = h_redis_cmd(&r, "KEYS weir:acl:acl.in:*:latest");
    cr_assert_eq(keys->elements, 2, "one latest checkpoint per partition");
    freeReplyObject(keys);

    /* A second run restores from those checkpoints under the same user (reads: WATCH, GET, HMGET, HGET...). */
    produce(&b, 100, 1700000020000L);
    cr_assert_eq(run_until_end(&b, url, h_path("run2.err"), 120000), 0, "second run failed (see %s)",
                 h_path("run2.err"));
    cr_assert_eq(h_count_text(h_path("run2.err"), "ERR "), 0, "an error in the restoring run");
    cr_assert_eq(h_count_text(h_path("run2.err"), "NOPERM"), 0, "a command the ACL line does not allow");
    /* weir state (SCAN, HMGET, HKEYS) works with the same URL. */
    state_list(url, h_path("state.out"));
    cr_assert_geq(h_count_text(h_path("state.out"), "acl.in"), 2, "weir state list shows nothing");

    /* The user cannot touch other keys: the ACL line really limits it. */
    redisContext *c = h_redis_connect(&r);
    redisReply *rep = redisCommand(c, "AUTH weir s3cret-pw");
    cr_assert(rep && rep->type == REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    rep = redisCommand(c, "SET other:key 1");
    cr_assert(rep && rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "NOPERM"), "SET outside weir:* allowed");
    freeReplyObject(rep);
    rep = redisCommand(c, "FLUSHALL");
    cr_assert(rep && rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "NOPERM"), "FLUSHALL allowed");
    freeReplyObject(rep);
    redisFree(c);
    h_broker_stop(&b);
    h_redis_stop(&r);
}

/* A wrong password, or an unknown user, is a configuration error at start-up: exit 2 within seconds, with
 * Redis's reason and without the password. */
Test(redis_acl, refused_password_is_a_startup_error, .timeout = 120) {
    h_redis_t r;
    h_redis_start(&r);
    acl_user(&r, "weir", "s3cret-pw");
    h_broker_t b;
    const char *topics[] = {"--topic", "acl.in:2", "--topic", "acl.out:2", NULL};
    h_broker_start(&b, topics);
    produce(&b, 20, 1700000000000L);
    static const char *const bad[] = {"weir:wrong-pw", "nobody:wrong-pw"};
    for (size_t i = 0; i < 2; i++) {
        char url[128], log[64];
        snprintf(url, sizeof(url), "redis://%s@127.0.0.1:%d/0", bad[i], r.port);
        snprintf(log, sizeof(log), "bad%zu.err", i);
        int64_t t0 = h_now_ms();
        int rc = run_until_end(&b, url, h_path(log), 20000);
        cr_assert_eq(rc, 2, "%s: exit status %d, want 2 (see %s)", bad[i], rc, h_path(log));
        cr_assert_lt(h_now_ms() - t0, 15000, "took too long: a retry loop?");
        cr_assert_geq(h_count_text(h_path(log), "WRONGPASS"), 1, "Redis's reason is not in the log");
        cr_assert_eq(h_count_text(h_path(log), "wrong-pw"), 0, "the password is in the log");
    }
    h_broker_stop(&b);
    h_redis_stop(&r);
}

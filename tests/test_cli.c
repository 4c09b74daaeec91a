/* The `weir` binary from the outside (issue 13): exit codes, strict flags, file limits, file-mode time and
 * dead letters, and a stop that takes effect during a long window firing. Each test runs $WEIR_BIN (the
 * build's weir; point it at build-asan/weir to run them under the sanitizers) in a temporary directory. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[256];
static char out[1 << 16]; /* stdout + stderr of the last run */

static void setup(void) {
    snprintf(dir, sizeof(dir), "/tmp/weir-test-cli-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
    const char *keep = getenv("WEIR_KEEP_TMP");
    if (!keep || strcmp(keep, "1")) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        cr_expect_eq(system(cmd), 0);
    }
}

static const char *path(const char *name) {
    static char p[4][512];
    static int i;
    i = (i + 1) % 4;
    snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
    return p[i];
}

static void write_file(const char *name, const char *text) {
    FILE *fp = fopen(path(name), "w");
    cr_assert_not_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static char *read_all(const char *name) {
    static char buf[1 << 16];
    buf[0] = '\0';
    FILE *fp = fopen(path(name), "r");
    if (!fp)
        return buf;
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

/* Run `weir ARGS` (a shell word list) in dir; returns the exit code; output in `out`. */
static int weir(const char *fmt, ...) {
    char args[2048], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    const char *bin = getenv("WEIR_BIN");
    cr_assert_not_null(bin, "WEIR_BIN is not set");
    snprintf(cmd, sizeof(cmd), "cd '%s' && timeout 60 '%s' %s > cli.out 2>&1", dir, bin, args);
    int st = system(cmd);
    strcpy(out, read_all("cli.out"));
    cr_assert(WIFEXITED(st), "weir %s: killed", args);
    return WEXITSTATUS(st);
}

#define PIPE_HEAD                                                                                                      \
    "pipeline: p\n"                                                                                                    \
    "source:\n"                                                                                                        \
    "  fields: {dev: string?, ts: long, v: double}\n"                                                                  \
    "  event_time: ts\n"

static const char window_pipeline[] = PIPE_HEAD "nodes:\n"
                                                "  - {name: w, op: window, key: dev, type: tumbling, size: 10s,\n"
                                                "     aggregate: {n: count()}}\n"
                                                "sinks:\n"
                                                "  - {input: w, kafka: {topic: out}}\n"
                                                "  - {late: w, kafka: {topic: late}}\n";

TestSuite(cli, .init = setup, .fini = teardown);

/* ---- item 6: exit codes and strict flags ---- */

Test(cli, validate_exits_2_on_a_configuration_error) {
    write_file("bad.yaml", "pipeline: p\nsource: {fields: {a: long}}\nnodes: [{name: a, op: nope}]\n");
    cr_assert_eq(weir("validate bad.yaml"), 2, "%s", out);
    cr_assert(strstr(out, "bad.yaml:3:"), "%s", out);
    cr_assert_eq(weir("run bad.yaml --input /dev/null"), 2, "%s", out);
}

Test(cli, map_set_null_is_a_clean_configuration_error) {
    /* Under build-asan the leak on this path made the exit code LeakSanitizer's instead of 2. */
    write_file("m.yaml", "pipeline: p\nsource: {fields: {a: long}}\nnodes: [{name: m, op: map, set: {u: null}}]\n");
    cr_assert_eq(weir("validate m.yaml"), 2, "%s", out);
    cr_assert(strstr(out, "m.yaml:3:37: node 'm': set.u: the literal null has no type"), "%s", out);
    cr_assert_null(strstr(out, "Sanitizer"), "%s", out);
}

Test(cli, numeric_flags_are_parsed_strictly) {
    static const struct {
        const char *args, *want;
    } rows[] = {
        {"produce --brokers 127.0.0.1:1 --topic t --count -1", "weir produce: --count: expected an integer"},
        {"produce --brokers 127.0.0.1:1 --topic t --count abc", "weir produce: --count: expected an integer"},
        {"produce --brokers 127.0.0.1:1 --topic t --count 10x", "weir produce: --count:"},
        {"produce --brokers 127.0.0.1:1 --topic t --rate -5", "weir produce: --rate: expected a positive number"},
        {"produce --brokers 127.0.0.1:1 --topic t --rate abc", "weir produce: --rate:"},
        {"produce --brokers 127.0.0.1:1 --topic t --sensors 0", "weir produce: --sensors:"},
        {"produce --brokers 127.0.0.1:1 --topic t --step 1s", "weir produce: --step:"},
        {"produce --brokers 127.0.0.1:1 --topic t --start-ts 99999999999999999999", "weir produce: --start-ts:"},
        {"run p.yaml --metrics-port abc", "weir run: --metrics-port: expected an integer in 0..65535"},
        {"run p.yaml --metrics-port 70000", "weir run: --metrics-port:"},
        {"run p.yaml --input in.json --reset-state nosuch", "weir run: --reset-state: no node 'nosuch'"},
        {"run p.yaml --input in.json --reset-state w,,w", "weir run: --reset-state: expected all or NODE"},
        {"broker --brokers x", "weir broker: --brokers:"},
        {"demo --rate -1", "weir demo: --rate:"},
    };
    write_file("p.yaml", window_pipeline);
    write_file("in.json", "");
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        cr_assert_eq(weir("%s", rows[i].args), 2, "weir %s: %s", rows[i].args, out);
        cr_assert(strstr(out, rows[i].want), "weir %s:\n%s\nwant: %s", rows[i].args, out, rows[i].want);
    }
    /* A valid node name is accepted. */
    cr_assert_eq(weir("run p.yaml --input in.json --reset-state w --quiet"), 0, "%s", out);
}

Test(cli, produce_refuses_an_event_time_that_overflows) {
    /* Record 3 would have event time INT64_MIN - 1 (UBSan: signed overflow). */
    cr_assert_eq(weir("produce --brokers 127.0.0.1:1 --topic t --count 3 --start-ts -9223372036854775807 --step -1"), 2,
                 "%s", out);
    cr_assert(strstr(out, "overflows"), "%s", out);
}

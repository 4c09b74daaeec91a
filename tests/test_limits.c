/* Limits of the Kafka runtime (issue 13): an output larger than the producer's message.max.bytes goes to
 * the dead-letter topic (truncated, with its original size) instead of stopping the pipeline; a checkpoint
 * whose offset lies outside the partition's log is refused, naming the key, unless --reset-state. */
#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "redis_harness.h"

static const char *write_text(const char *name, const char *text) {
    const char *p = h_path(name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

/* weir produce --format json --file F to topic. */
static void produce_file(const char *bootstrap, const char *topic, const char *file) {
    char *argv[] = {(char *)h_weir_bin(), "produce", "--brokers", (char *)bootstrap, "--topic", (char *)topic,
                    "--format",           "json",    "--file",    (char *)file,      "--quiet", NULL};
    cr_assert_eq(h_wait(h_spawn(argv, NULL, h_path("produce.log")), 30000), 0, "%s",
                 h_read_file(h_path("produce.log")));
}

typedef struct seen {
    int n, truncated;
    char reason[512], original_size[32], first[256];
    size_t max_len;
} seen_t;

static void on_msg(const rd_kafka_message_t *m, void *arg) {
    seen_t *s = arg;
    s->n++;
    if (m->len > s->max_len)
        s->max_len = m->len;
    if (s->n == 1 && m->payload)
        snprintf(s->first, sizeof(s->first), "%.*s", (int)(m->len < 200 ? m->len : 200), (const char *)m->payload);
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(m, &h) || !h)
        return;
    const void *v;
    size_t n;
    if (!rd_kafka_header_get_last(h, "weir.error.reason", &v, &n) && memmem(v, n, "output to", 9))
        snprintf(s->reason, sizeof(s->reason), "%.*s", (int)n, (const char *)v);
    if (!rd_kafka_header_get_last(h, "weir.truncated", &v, &n))
        s->truncated++;
    if (!rd_kafka_header_get_last(h, "weir.original.size", &v, &n))
        snprintf(s->original_size, sizeof(s->original_size), "%.*s", (int)n, (const char *)v);
}

/* A map repeats a field into a 4 KB string for one record; the producer allows 2000 bytes. */
static const char big_pipeline[] = "pipeline: big\n"
                                   "source:\n"
                                   "  kafka: {topics: [big.in]}\n"
                                   "  format: json\n"
                                   "  fields: {dev: string, ts: long, s: string}\n"
                                   "  event_time: ts\n"
                                   "nodes:\n"
                                   "  - {name: m, op: map, set: {s: s}}\n"
                                   "sinks:\n"
                                   "  - {input: m, kafka: {topic: big.out, properties: {message.max.bytes: 2000}},"
                                   " format: json}\n"
                                   "dead_letter: {kafka: {topic: big.dlq}}\n";

Test(limits, an_output_larger_than_message_max_bytes_is_dead_lettered, .timeout = 180) {
    h_broker_t b;
    const char *topics[] = {"--topic", "big.in:1", "--topic", "big.out:1", "--topic", "big.dlq:1", NULL};
    h_broker_start(&b, topics);
    /* Records 0, 1 and 3 are small; record 2 carries 4000 bytes, so its output is too large; record 4 is
     * undecodable and 5000 bytes long: its dead letter is too large too, and is truncated. */
    char *big = malloc(6000);
    memset(big, 'x', 5999);
    big[5999] = '\0';
    FILE *f = fopen(h_path("in.json"), "w");
    fprintf(f, "{\"dev\":\"a\",\"ts\":1000,\"s\":\"small\"}\n{\"dev\":\"a\",\"ts\":2000,\"s\":\"small\"}\n");
    fprintf(f, "{\"dev\":\"a\",\"ts\":3000,\"s\":\"%.4000s\"}\n", big);
    fprintf(f, "{\"dev\":\"a\",\"ts\":4000,\"s\":\"small\"}\n");
    fprintf(f, "not json %.5000s\n", big);
    fclose(f);
    free(big);
    produce_file(b.bootstrap, "big.in", h_path("in.json"));
    const char *yaml = write_text("big.yaml", big_pipeline);
    char *argv[] = {(char *)h_weir_bin(), "run", (char *)yaml, "--brokers", b.bootstrap, "--until-end", NULL};
    int rc = h_wait(h_spawn(argv, h_path("run.out"), h_path("run.log")), 90000);
    cr_assert_eq(rc, 0, "weir run exited %d:\n%s", rc, h_read_file(h_path("run.log")));
    cr_assert(h_count_text(h_path("run.log"), "records_in=5 records_out=4 dead_lettered=2"), "%s",
              h_read_file(h_path("run.log")));
    seen_t out = {0}, dlq = {0};
    cr_assert_eq(h_consume_topic(b.bootstrap, "big.out", 1, 3, 20000, on_msg, &out), 3, "outputs");
    cr_assert(out.max_len < 200, "only the small outputs reach big.out");
    cr_assert_eq(h_consume_topic(b.bootstrap, "big.dlq", 1, 2, 20000, on_msg, &dlq), 2, "dead letters");
    /* The first dead letter: the undecodable line (consumed in offset order: it was produced first). Both
     * were larger than 2000 bytes and carry weir.truncated and the original size. */
    cr_assert_eq(dlq.truncated, 2, "both dead letters were cut to fit");
    cr_assert(dlq.max_len <= 2000, "a dead letter of %zu bytes", dlq.max_len);
    cr_assert(strstr(dlq.reason, "output to big.out") && strstr(dlq.reason, "larger than the producer's "
                                                                            "message.max.bytes (2000)"),
              "reason: %s", dlq.reason);
    h_broker_stop(&b);
}

/* A window with a checkpoint store: a first bounded run writes a checkpoint at offset 3. */
static const char ckpt_pipeline[] = "pipeline: ck\n"
                                    "source:\n"
                                    "  kafka: {topics: [ck.in]}\n"
                                    "  format: json\n"
                                    "  fields: {dev: string, ts: long, s: string}\n"
                                    "  event_time: ts\n"
                                    "  partitioned_by: dev  # one partition\n"
                                    "nodes:\n"
                                    "  - {name: w, op: window, key: dev, type: tumbling, size: 10s,\n"
                                    "     aggregate: {n: count()}}\n"
                                    "sinks:\n"
                                    "  - {input: w, kafka: {topic: ck.out}, format: json}\n"
                                    "dead_letter: {kafka: {topic: ck.dlq}}\n";

static int run_ck(const char *bootstrap, const h_redis_t *r, const char *log, const char *reset) {
    const char *yaml = h_path("ck.yaml");
    char *argv[] = {(char *)h_weir_bin(),
                    "run",
                    (char *)yaml,
                    "--brokers",
                    (char *)bootstrap,
                    "--redis",
                    (char *)r->url,
                    "--until-end",
                    reset ? "--reset-state" : NULL,
                    (char *)reset,
                    NULL};
    return h_wait(h_spawn(argv, NULL, log), 90000);
}

Test(limits, a_checkpoint_offset_outside_the_log_is_refused, .timeout = 240) {
    h_broker_t b;
    const char *topics[] = {"--topic", "ck.in:1", "--topic", "ck.out:1", "--topic", "ck.dlq:1", NULL};
    h_broker_start(&b, topics);
    h_redis_t r;
    h_redis_start(&r);
    write_text("ck.yaml", ckpt_pipeline);
    write_text("in1.json", "{\"dev\":\"a\",\"ts\":1000,\"s\":\"x\"}\n{\"dev\":\"a\",\"ts\":2000,\"s\":\"x\"}\n"
                           "{\"dev\":\"a\",\"ts\":3000,\"s\":\"x\"}\n");
    produce_file(b.bootstrap, "ck.in", h_path("in1.json"));
    int rc = run_ck(b.bootstrap, &r, h_path("run1.log"), NULL);
    cr_assert_eq(rc, 0, "first run: %s", h_read_file(h_path("run1.log")));
    redisReply *latest = h_redis_cmd(&r, "GET weir:ck:ck.in:0:latest");
    cr_assert_eq(latest->type, REDIS_REPLY_STRING, "no checkpoint written");
    char key[128];
    snprintf(key, sizeof(key), "weir:ck:ck.in:0:ckpt:%s", latest->str);
    freeReplyObject(latest);
    redisReply *off = h_redis_cmd(&r, "HGET %s next_offset", key);
    cr_assert(off->type == REDIS_REPLY_STRING && !strcmp(off->str, "3"), "next_offset %s", off->str);
    freeReplyObject(off);
    /* Point the checkpoint past the log's end (a topic recreated, a log truncated, a wrong Redis). */
    freeReplyObject(h_redis_cmd(&r, "HSET %s next_offset 1000", key));
    write_text("in2.json", "{\"dev\":\"a\",\"ts\":4000,\"s\":\"x\"}\n{\"dev\":\"a\",\"ts\":5000,\"s\":\"x\"}\n");
    produce_file(b.bootstrap, "ck.in", h_path("in2.json"));
    rc = run_ck(b.bootstrap, &r, h_path("run2.log"), NULL);
    char want[256];
    snprintf(want, sizeof(want), "%s: offset 1000 lies outside the log of ck.in[0] (offsets 0..5): refusing to start",
             key);
    cr_assert_eq(rc, 1, "exit %d: %s", rc, h_read_file(h_path("run2.log")));
    cr_assert(h_count_text(h_path("run2.log"), want) == 1, "want '%s' in:\n%s", want, h_read_file(h_path("run2.log")));
    /* --reset-state all: the partition starts empty at the committed offset (3): records 4 and 5 only. */
    rc = run_ck(b.bootstrap, &r, h_path("run3.log"), "all");
    cr_assert_eq(rc, 0, "exit %d: %s", rc, h_read_file(h_path("run3.log")));
    cr_assert(
        h_count_text(h_path("run3.log"), "--reset-state all: this partition starts empty at the committed offset"),
        "%s", h_read_file(h_path("run3.log")));
    cr_assert(h_count_text(h_path("run3.log"), "records_in=2 "), "%s", h_read_file(h_path("run3.log")));
    h_redis_stop(&r);
    h_broker_stop(&b);
}

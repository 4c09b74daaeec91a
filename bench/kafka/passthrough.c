/*
 * bench/kafka/passthrough: the least a one-thread Kafka-to-Kafka processor
 * built on librdkafka can do per record, as a second baseline beside kcat's
 * raw consume. One thread: the high-level consumer (assigned all partitions,
 * weir's consumer settings) hands each message to the idempotent producer
 * (weir's producer settings) unchanged, with one 'weir.id' header
 * ("passthrough/TOPIC/PARTITION/OFFSET", built without printf, as weir does);
 * no decoding, no operators, no encoding. Timed from the first message
 * consumed to the last one acknowledged, like weir's --until-end summary.
 *
 *   passthrough BROKERS IN_TOPIC PARTITIONS OUT_TOPIC N [--no-header]
 * prints: passthrough records=N elapsed_s=S records_per_s=R
 */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void set(rd_kafka_conf_t *c, const char *k, const char *v) {
    char e[512];
    if (rd_kafka_conf_set(c, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "passthrough: %s=%s: %s\n", k, v, e);
        exit(2);
    }
}

/* A client of the given type from "key=value" pairs (NULL-terminated). */
static rd_kafka_t *client(rd_kafka_type_t type, const char *const *kv) {
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    for (; kv[0]; kv += 2)
        set(c, kv[0], kv[1]);
    char e[512];
    rd_kafka_t *rk = rd_kafka_new(type, c, e, sizeof(e));
    if (!rk) {
        fprintf(stderr, "passthrough: %s\n", e);
        exit(1);
    }
    return rk;
}

/* Decimal digits of v at p; @returns the length. */
static size_t put_u64(char *p, unsigned long long v) {
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: passthrough BROKERS IN_TOPIC PARTITIONS OUT_TOPIC N [--no-header]\n");
        return 2;
    }
    const char *brokers = argv[1], *in = argv[2], *out = argv[4];
    int nparts = atoi(argv[3]);
    long n_want = atol(argv[5]);
    int header = !(argc > 6 && !strcmp(argv[6], "--no-header"));
    char group[64];
    snprintf(group, sizeof(group), "passthrough-%d", (int)getpid());

    const char *consumer_conf[] = {"bootstrap.servers",
                                   brokers,
                                   "group.id",
                                   group,
                                   "auto.offset.reset",
                                   "earliest",
                                   "enable.auto.commit",
                                   "false",
                                   "enable.auto.offset.store",
                                   "false",
                                   "queued.min.messages",
                                   "1000000",
                                   NULL};
    rd_kafka_t *consumer = client(RD_KAFKA_CONSUMER, consumer_conf);
    rd_kafka_poll_set_consumer(consumer);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(nparts);
    for (int p = 0; p < nparts; p++)
        rd_kafka_topic_partition_list_add(parts, in, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(consumer, parts);
    rd_kafka_topic_partition_list_destroy(parts);

    const char *producer_conf[] = {
        "bootstrap.servers",          brokers, "enable.idempotence",           "true",    "linger.ms", "5",
        "delivery.report.only.error", "true",  "queue.buffering.max.messages", "1000000", NULL};
    rd_kafka_t *producer = client(RD_KAFKA_PRODUCER, producer_conf);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(producer, out, NULL);

    /* From malloc, which (linked as the weir binary is) is jemalloc's: a
     * program that never called malloc itself would have jemalloc dropped by
     * the linker's --as-needed, and librdkafka would get glibc's. */
    char *id = malloc(256);
    size_t prefix = (size_t)snprintf(id, 256, "passthrough/%s/", in);
    long n = 0;
    double t0 = 0;
    while (n < n_want) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 0);
        if (!m)
            m = rd_kafka_consumer_poll(consumer, 100);
        if (!m)
            continue;
        if (t0 == 0)
            t0 = now_s();
        if (!m->err) {
            n++;
            rd_kafka_headers_t *h = NULL;
            if (header) {
                size_t len = prefix + put_u64(id + prefix, (unsigned long long)m->partition);
                id[len++] = '/';
                len += put_u64(id + len, (unsigned long long)m->offset);
                h = rd_kafka_headers_new(1);
                rd_kafka_header_add(h, "weir.id", 7, id, (ssize_t)len);
            }
            rd_kafka_timestamp_type_t tt;
            int64_t ts = rd_kafka_message_timestamp(m, &tt);
            while (rd_kafka_producev(producer, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_KEY(m->key, m->key_len),
                                     RD_KAFKA_V_VALUE(m->payload, m->len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                     RD_KAFKA_V_TIMESTAMP(ts > 0 ? ts : 0), RD_KAFKA_V_HEADERS(h),
                                     RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(producer, 10);
            if ((n & 255) == 0)
                rd_kafka_poll(producer, 0);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_flush(producer, 60000);
    double el = now_s() - t0;
    printf("passthrough records=%ld elapsed_s=%.3f records_per_s=%.0f\n", n, el, (double)n / el);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(producer);
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
    free(id);
    return 0;
}

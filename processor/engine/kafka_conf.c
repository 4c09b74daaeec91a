/* librdkafka configuration of the Kafka runtime's consumer and producer, and
 * the callbacks they share (errors, delivery reports, log lines). Properties
 * apply in this order, later ones winning: weir's defaults, the source's
 * `properties`, (producer) the sinks' `properties`, then -X key=value. */
#include <stdlib.h>
#include <string.h>

#include "kafka_int.h"

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk;
    krun_t *kr = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        kr->fatal = true;
        weir_log(WEIR_LOG_ERR, LOG, "fatal Kafka error: %s", reason);
        return;
    }
    weir_log(err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ? WEIR_LOG_ERR : WEIR_LOG_WARN, LOG, "%s: %s",
             rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    krun_t *kr = opaque;
    if (m->err) {
        kr->produce_errors++;
        kr->fatal = true; /* idempotent producer: a failed delivery is not retried silently */
        weir_log(WEIR_LOG_ERR, LOG, "delivery to %s failed: %s", rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
    }
}

/* librdkafka's own log lines, in weir's format (level: syslog numbers). */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk;
    weir_log(level <= 3   ? WEIR_LOG_ERR
             : level == 4 ? WEIR_LOG_WARN
             : level <= 6 ? WEIR_LOG_INFO
                          : WEIR_LOG_DEBUG,
             "librdkafka", "%s: %s", fac, buf);
}

static int set_prop(rd_kafka_conf_t *conf, const char *k, const char *v, char *errstr, size_t errstr_size) {
    char e[512];
    if (rd_kafka_conf_set(conf, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK)
        return weir_err(errstr, errstr_size, "librdkafka property %s=%s: %s", k, v, e);
    return WEIR_OK;
}

static int apply_props(rd_kafka_conf_t *conf, const weir_cfg_t *props, char *errstr, size_t errstr_size) {
    for (size_t i = 0; props && i < props->n; i++) {
        char msg[600];
        if (set_prop(conf, props->keys[i], props->items[i]->scalar, msg, sizeof(msg)))
            return weir_cfg_error(props->items[i], errstr, errstr_size, "%s", msg);
    }
    return WEIR_OK;
}

const char *kafka_brokers(const weir_run_opts_t *o) {
    if (o->brokers)
        return o->brokers;
    const char *env = getenv("WEIR_BROKERS");
    return env && *env ? env : NULL;
}

rd_kafka_t *kafka_consumer_new(krun_t *kr, char *errstr, size_t errstr_size) {
    const weir_pipeline_t *pl = kr->pl;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *b = kafka_brokers(kr->o);
    char client_id[300];
    snprintf(client_id, sizeof(client_id), "weir-%s", pl->name);
    if ((b && set_prop(conf, "bootstrap.servers", b, errstr, errstr_size)) ||
        set_prop(conf, "group.id", kr->o->group_id ? kr->o->group_id : pl->source.group_id, errstr, errstr_size) ||
        set_prop(conf, "client.id", client_id, errstr, errstr_size) ||
        set_prop(conf, "partition.assignment.strategy", "cooperative-sticky", errstr, errstr_size) ||
        set_prop(conf, "enable.auto.commit", "false", errstr, errstr_size) ||
        set_prop(conf, "enable.auto.offset.store", "false", errstr, errstr_size) ||
        set_prop(conf, "auto.offset.reset", "earliest", errstr, errstr_size) ||
        set_prop(conf, "enable.partition.eof", "false", errstr, errstr_size) ||
        /* With the high-level consumer every partition's fetch queue forwards
         * to the one consumer queue, so queued.min.messages (default 100000)
         * is compared with the total over all partitions. Once it is reached
         * the broker thread stops fetching and looks again only 1 s later
         * (fixed in librdkafka < 2.2, fetch.queue.backoff.ms from 2.2), even
         * when we drained the queue long before: ~0.9 s idle per 100k
         * records. queued.max.messages.kbytes (64 MB) still bounds memory. */
        set_prop(conf, "queued.min.messages", "1000000", errstr, errstr_size) ||
        apply_props(conf, pl->source.properties, errstr, errstr_size)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    for (int i = 0; i < kr->o->nprops; i++) {
        char key[256];
        const char *eq = strchr(kr->o->props[i], '=');
        snprintf(key, sizeof(key), "%.*s", (int)(eq - kr->o->props[i]), kr->o->props[i]);
        if (set_prop(conf, key, eq + 1, errstr, errstr_size)) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rd_kafka_conf_set_opaque(conf, kr);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_rebalance_cb(conf, kafka_rebalance_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    char e[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        weir_err(errstr, errstr_size, "consumer: %s", e);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

rd_kafka_t *kafka_producer_new(krun_t *kr, char *errstr, size_t errstr_size) {
    const weir_pipeline_t *pl = kr->pl;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *b = kafka_brokers(kr->o);
    if ((b && set_prop(conf, "bootstrap.servers", b, errstr, errstr_size)) ||
        set_prop(conf, "enable.idempotence", "true", errstr, errstr_size) ||
        set_prop(conf, "linger.ms", "5", errstr, errstr_size) ||
        set_prop(conf, "delivery.report.only.error", "true", errstr, errstr_size) ||
        set_prop(conf, "queue.buffering.max.messages", "1000000", errstr, errstr_size) ||
        /* (not murmur2_random yet, although Java clients place keys with it: on the local broker it
         * halves bench/kafka/filter_map.sh's throughput, 1.3 M -> 0.65 M records/s, measured; issue 12) */
        apply_props(conf, pl->source.properties, errstr, errstr_size)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    /* Consumer-only properties of the source would be refused by a producer:
     * apply_props above only passes what the user gave for the source, which
     * normally is the connection and security settings shared by both. */
    if (pl->delivery == WEIR_EXACTLY_ONCE) {
        char tid[512];
        snprintf(tid, sizeof(tid), "weir-%s-%s", pl->name, kr->instance);
        if (set_prop(conf, "transactional.id", tid, errstr, errstr_size) ||
            set_prop(conf, "transaction.timeout.ms", KAFKA_TXN_TIMEOUT_MS, errstr, errstr_size)) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    for (int i = 0; i < pl->nsinks; i++)
        if (apply_props(conf, pl->sinks[i].properties, errstr, errstr_size)) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    char mmb[32];
    size_t mmb_size = sizeof(mmb);
    kr->max_message = 1000000; /* librdkafka's default */
    if (rd_kafka_conf_get(conf, "message.max.bytes", mmb, &mmb_size) == RD_KAFKA_CONF_OK)
        kr->max_message = (size_t)strtoull(mmb, NULL, 10);
    rd_kafka_conf_set_opaque(conf, kr);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    char e[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        weir_err(errstr, errstr_size, "producer: %s", e);
        return NULL;
    }
    return rk;
}

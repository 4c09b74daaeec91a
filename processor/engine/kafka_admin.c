/* Internal topics: partition counts and creation (kafka_admin.h). */
#include "kafka_admin.h"

#include <string.h>
#include <unistd.h>

#include "common.h"

int weir_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, char *errstr, size_t errstr_size) {
    /* All topics, not this one: a metadata request naming an unknown topic
     * makes a broker with auto-creation (the local one does) create it with
     * its default partition count. */
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
    if (err)
        return weir_err(errstr, errstr_size, "metadata of topic '%s': %s", topic, rd_kafka_err2str(err)), -1;
    int n = 0;
    for (int i = 0; i < md->topic_cnt; i++) {
        const struct rd_kafka_metadata_topic *mt = &md->topics[i];
        if (strcmp(mt->topic, topic))
            continue;
        if (mt->err == RD_KAFKA_RESP_ERR_NO_ERROR)
            n = mt->partition_cnt;
        else if (mt->err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART &&
                 mt->err != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE) {
            weir_err(errstr, errstr_size, "metadata of topic '%s': %s", topic, rd_kafka_err2str(mt->err));
            n = -1;
        }
    }
    rd_kafka_metadata_destroy(md);
    return n;
}

/* CreateTopics; @returns WEIR_OK when created or already there. */
static int create_topic(rd_kafka_t *rk, const char *topic, int partitions, int timeout_ms, char *errstr,
                        size_t errstr_size) {
    char msg[256];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, -1, msg, sizeof(msg));
    if (!nt)
        return weir_err(errstr, errstr_size, "internal topic '%s': %s", topic, msg);
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, msg, sizeof(msg));
    rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, msg, sizeof(msg));
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, opts, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
    int rc = WEIR_OK;
    if (!ev) {
        rc = weir_err(errstr, errstr_size, "no answer to CreateTopics within %d ms", timeout_ms);
    } else if (rd_kafka_event_error(ev)) {
        rc = weir_err(errstr, errstr_size, "%s", rd_kafka_event_error_string(ev));
    } else {
        size_t n = 0;
        const rd_kafka_topic_result_t **tr =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        for (size_t i = 0; i < n; i++) {
            rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
            if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                const char *s = rd_kafka_topic_result_error_string(tr[i]);
                rc = weir_err(errstr, errstr_size, "%s", s && *s ? s : rd_kafka_err2str(e));
            }
        }
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

int weir_kafka_ensure_topic(rd_kafka_t *rk, const char *topic, int partitions, int timeout_ms, char *errstr,
                            size_t errstr_size) {
    char msg[WEIR_ERRSTR_SIZE];
    int have = weir_kafka_partition_count(rk, topic, timeout_ms, msg, sizeof(msg));
    if (have < 0)
        return weir_err(errstr, errstr_size, "internal topic '%s': %s", topic, msg);
    if (have == 0) {
        if (create_topic(rk, topic, partitions, timeout_ms, msg, sizeof(msg)))
            return weir_err(errstr, errstr_size,
                            "internal topic '%s' does not exist and could not be created (%s): create it with %d "
                            "partitions",
                            topic, msg, partitions);
        /* wait until the metadata shows it */
        for (int waited = 0; have == 0 && waited < timeout_ms; waited += 100) {
            have = weir_kafka_partition_count(rk, topic, timeout_ms, msg, sizeof(msg));
            if (have == 0)
                usleep(100 * 1000);
        }
        if (have <= 0)
            return weir_err(errstr, errstr_size, "internal topic '%s': created but not in the metadata after %d ms",
                            topic, timeout_ms);
    }
    if (have != partitions)
        return weir_err(errstr, errstr_size,
                        "internal topic '%s' has %d partitions, the pipeline needs %d (repartition_partitions): "
                        "weir never changes an existing topic's partitioning; delete it or set "
                        "repartition_partitions: %d",
                        topic, have, partitions, have);
    return WEIR_OK;
}

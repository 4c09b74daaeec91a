/* Integration-test helpers: processes started here are stopped by pid at exit. */
#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHILDREN 64
static pid_t children[MAX_CHILDREN];
static int nchildren;
static char tmpdir[256];

static void cleanup(void) {
    for (int i = 0; i < nchildren; i++)
        if (children[i] > 0) {
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
        }
    if (tmpdir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (!getenv("WEIR_KEEP_TMP") && system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmpdir);
    }
}

const char *h_weir_bin(void) {
    const char *b = getenv("WEIR_BIN");
    cr_assert(b && *b, "WEIR_BIN is not set (run the tests through meson test)");
    return b;
}

const char *h_src(void) {
    const char *s = getenv("WEIR_SRC");
    return s && *s ? s : ".";
}

const char *h_tmpdir(void) {
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/weir-test-XXXXXX");
        cr_assert_not_null(mkdtemp(tmpdir));
        atexit(cleanup);
    }
    return tmpdir;
}

const char *h_path(const char *name) {
    static char bufs[8][512];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, 512, "%s/%s", h_tmpdir(), name);
    return b;
}

pid_t h_spawn(char *const argv[], const char *out_path, const char *err_path) {
    h_tmpdir();
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int o = open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = err_path && out_path && !strcmp(err_path, out_path)
                    ? dup(o)
                    : open(err_path ? err_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(o, 1);
        dup2(e, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    cr_assert(nchildren < MAX_CHILDREN);
    children[nchildren++] = pid;
    return pid;
}

static void forget(pid_t pid) {
    for (int i = 0; i < nchildren; i++)
        if (children[i] == pid)
            children[i] = 0;
}

int64_t h_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int h_wait(pid_t pid, int timeout_ms) {
    int64_t end = h_now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            forget(pid);
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        if (h_now_ms() > end)
            return -1;
        usleep(20000);
    }
}

int h_stop(pid_t pid, int sig, int timeout_ms) {
    kill(pid, sig);
    int rc = h_wait(pid, timeout_ms);
    if (rc == -1) {
        kill(pid, SIGKILL);
        h_wait(pid, 5000);
    }
    return rc;
}

char *h_read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    buf[n] = '\0';
    return buf;
}

bool h_wait_for_text(const char *path, const char *needle, int timeout_ms) {
    int64_t end = h_now_ms() + timeout_ms;
    do {
        char *s = h_read_file(path);
        bool found = s && strstr(s, needle);
        free(s);
        if (found)
            return true;
        usleep(50000);
    } while (h_now_ms() < end);
    return false;
}

int h_count_text(const char *path, const char *needle) {
    char *s = h_read_file(path);
    int n = 0;
    for (char *p = s; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    free(s);
    return n;
}

void h_broker_start(h_broker_t *b, const char *const extra[]) {
    char *argv[64];
    int n = 0;
    argv[n++] = (char *)h_weir_bin();
    argv[n++] = "broker";
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    static int seq;
    char out[64], err[64];
    snprintf(out, sizeof(out), "broker%d.out", seq);
    snprintf(err, sizeof(err), "broker%d.err", seq++);
    char outp[512], errp[512];
    snprintf(outp, sizeof(outp), "%s", h_path(out));
    snprintf(errp, sizeof(errp), "%s", h_path(err));
    b->pid = h_spawn(argv, outp, errp);
    cr_assert(h_wait_for_text(outp, "\n", 15000), "weir broker printed no bootstrap line");
    char *s = h_read_file(outp);
    s[strcspn(s, "\r\n")] = '\0';
    snprintf(b->bootstrap, sizeof(b->bootstrap), "%s", s);
    free(s);
    cr_assert(strchr(b->bootstrap, ':'), "bad bootstrap '%s'", b->bootstrap);
}

void h_broker_stop(h_broker_t *b) {
    if (b->pid > 0)
        cr_assert_eq(h_stop(b->pid, SIGTERM, 10000), 0, "weir broker did not stop cleanly");
    b->pid = 0;
}

int h_consume_topic(const char *bootstrap, const char *topic, int partitions, int want, int timeout_ms, h_msg_fn fn,
                    void *arg) {
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof(err));
    rd_kafka_conf_set(c, "group.id", "test-reader", err, sizeof(err));
    rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    cr_assert_not_null(rk, "%s", err);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    int got = 0;
    int64_t end = h_now_ms() + timeout_ms;
    while (h_now_ms() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 300);
        if (!m) {
            if (got >= want)
                break; /* nothing more arrived for a while after the expected count */
            continue;
        }
        if (!m->err) {
            fn(m, arg);
            got++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return got;
}

/* A real redis-server for integration tests (see redis_harness.h). */
#include "redis_harness.h"

#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

/** A loopback port nobody listens on right now (the kernel's pick for bind(0)). */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

bool h_redis_ping(int port, int timeout_ms) {
    int64_t end = h_now_ms() + timeout_ms;
    do {
        struct timeval tv = {0, 200000};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
        if (c && !c->err) {
            redisSetTimeout(c, tv);
            redisReply *r = redisCommand(c, "PING");
            bool ok = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG");
            if (r)
                freeReplyObject(r);
            redisFree(c);
            if (ok)
                return true;
        } else if (c) {
            redisFree(c);
        }
        usleep(10000);
    } while (h_now_ms() < end);
    return false;
}

/** Spawn redis-server on r->port; @returns true once it answers PING. */
static bool spawn(h_redis_t *r) {
    static int seq;
    char port[16];
    snprintf(port, sizeof(port), "%d", r->port);
    snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%d", r->port);
    if (!r->dir[0]) {
        snprintf(r->dir, sizeof(r->dir), "%s/redis%d", h_tmpdir(), seq++);
        mkdir(r->dir, 0755);
        snprintf(r->log, sizeof(r->log), "%s/redis.log", r->dir);
    }
    char *argv[] = {"/usr/bin/redis-server", "--port", port,    "--bind", "127.0.0.1",   "--save", "",
                    "--appendonly",          "no",     "--dir", r->dir,   "--daemonize", "no",     NULL};
    const char *bin = getenv("REDIS_SERVER");
    if (bin && *bin)
        argv[0] = (char *)bin;
    r->pid = h_spawn(argv, r->log, r->log);
    /* Wait for PING, but give up early if it died (port taken by someone else). */
    int64_t end = h_now_ms() + 10000;
    while (h_now_ms() < end) {
        if (h_redis_ping(r->port, 100))
            return true;
        if (h_wait(r->pid, 0) != -1) {
            r->pid = 0;
            return false;
        }
    }
    return false;
}

void h_redis_start(h_redis_t *r) {
    memset(r, 0, sizeof(*r));
    cr_assert_eq(access("/usr/bin/redis-server", X_OK) == 0 || getenv("REDIS_SERVER"), true,
                 "redis-server is not installed");
    for (int attempt = 0; attempt < 5; attempt++) {
        r->port = free_port();
        if (spawn(r))
            return;
        if (r->pid)
            h_redis_kill(r);
    }
    cr_assert_fail("redis-server did not start (log: %s)", r->log);
}

void h_redis_restart(h_redis_t *r) {
    cr_assert_eq(r->pid, 0, "redis-server is still running");
    /* The old listening socket is gone at once (SO_REUSEADDR), but retry a little. */
    for (int attempt = 0; attempt < 20; attempt++) {
        if (spawn(r))
            return;
        usleep(100000);
    }
    cr_assert_fail("redis-server did not restart on port %d (log: %s)", r->port, r->log);
}

void h_redis_stop(h_redis_t *r) {
    if (r->pid > 0)
        cr_assert_eq(h_stop(r->pid, SIGTERM, 10000), 0, "redis-server did not stop cleanly");
    r->pid = 0;
}

void h_redis_kill(h_redis_t *r) {
    if (r->pid > 0)
        h_stop(r->pid, SIGKILL, 10000);
    r->pid = 0;
}

void h_redis_pause(h_redis_t *r) { cr_assert_eq(kill(r->pid, SIGSTOP), 0); }
void h_redis_resume(h_redis_t *r) { cr_assert_eq(kill(r->pid, SIGCONT), 0); }

redisContext *h_redis_connect(const h_redis_t *r) {
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    cr_assert(c && !c->err, "connect to redis on port %d: %s", r->port, c ? c->errstr : "out of memory");
    redisSetTimeout(c, tv);
    return c;
}

redisReply *h_redis_cmd(const h_redis_t *r, const char *fmt, ...) {
    redisContext *c = h_redis_connect(r);
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    cr_assert_not_null(rep, "redis %s: %s", fmt, c->errstr);
    cr_assert_neq(rep->type, REDIS_REPLY_ERROR, "redis %s: %s", fmt, rep->str);
    redisFree(c);
    return rep;
}

long long h_redis_info(const h_redis_t *r, const char *field) {
    redisReply *rep = h_redis_cmd(r, "INFO");
    long long v = -1;
    char needle[128];
    snprintf(needle, sizeof(needle), "\n%s:", field);
    const char *p = rep->type == REDIS_REPLY_STRING ? strstr(rep->str, needle) : NULL;
    if (p)
        v = atoll(p + strlen(needle));
    freeReplyObject(rep);
    return v;
}

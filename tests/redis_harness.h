/**
 * @file redis_harness.h
 * @brief Integration-test helpers for a real redis-server: started on a free
 *        loopback port in the test's temporary directory, with persistence off
 *        (`--save '' --appendonly no`), and stopped, killed, paused or
 *        restarted on the same port by pid. Built on harness.h, so every
 *        server is killed at exit even if a test fails.
 */
#ifndef WEIR_TEST_REDIS_HARNESS_H
#define WEIR_TEST_REDIS_HARNESS_H

#include <stdbool.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

/** A redis-server process. */
typedef struct h_redis {
    pid_t pid;     /**< 0 when not running */
    int port;      /**< loopback port (kept across restarts) */
    char url[64];  /**< redis://127.0.0.1:PORT */
    char dir[512]; /**< its working directory (under h_tmpdir()) */
    char log[600]; /**< its stdout + stderr */
} h_redis_t;

/** @brief Start redis-server on a free loopback port; asserts it answers PING within 10 s. */
void h_redis_start(h_redis_t *r);
/** @brief Start it again on r->port (after h_redis_kill/h_redis_stop). Data is gone: nothing persists. */
void h_redis_restart(h_redis_t *r);
/** @brief SIGTERM and wait (asserts a clean exit). */
void h_redis_stop(h_redis_t *r);
/** @brief SIGKILL and reap. */
void h_redis_kill(h_redis_t *r);
/** @brief SIGSTOP (the server stops answering but keeps its port) / SIGCONT. */
void h_redis_pause(h_redis_t *r);
void h_redis_resume(h_redis_t *r);
/** @returns true once a PING on port gets PONG, within timeout_ms. */
bool h_redis_ping(int port, int timeout_ms);

/** @brief A fresh connection to the server for test-side commands (asserts). Free with redisFree. */
redisContext *h_redis_connect(const h_redis_t *r);
/** @brief Run one command on a fresh connection (hiredis format); asserts a non-error reply. Free with freeReplyObject.
 */
redisReply *h_redis_cmd(const h_redis_t *r, const char *fmt, ...);
/** @returns a numeric field of INFO (e.g. "used_memory"), or -1. */
long long h_redis_info(const h_redis_t *r, const char *field);

#endif

/* Helpers of the operator SDK that operators call at configure time (operator.h). */
#include "operator.h"

#include "expr.h"

weir_expr_t *weir_plan_expr(const weir_plan_t *plan, const weir_cfg_t *at, const char *key, const weir_rowtype_t *rt,
                            char *errstr, size_t errstr_size) {
    const char *src;
    if (!at) {
        weir_cfg_error(plan->cfg, errstr, errstr_size, "node '%s': missing key '%s'", plan->name, key);
        return NULL;
    }
    if (weir_cfg_as_str(at, &src, errstr, errstr_size))
        return NULL;
    char msg[WEIR_ERRSTR_SIZE];
    weir_expr_t *e = weir_expr_compile(src, rt, msg, sizeof(msg));
    if (!e)
        weir_cfg_error(at, errstr, errstr_size, "node '%s': %s: %s (in \"%s\")", plan->name, key, msg, src);
    return e;
}

bool weir_plan_count_evicted(const weir_plan_t *plan, uint64_t n, uint64_t *task_count) {
    bool first_in_task = *task_count == 0;
    *task_count += n;
    if (!plan->stats)
        return first_in_task;
    atomic_fetch_add_explicit(&plan->stats->evicted_keys, n, memory_order_relaxed);
    uint32_t zero = 0;
    return atomic_compare_exchange_strong(&plan->stats->evict_reported, &zero, 1);
}

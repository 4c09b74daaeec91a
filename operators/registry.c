/* The operator registry: adding an operator touches its own folder and one line here.
 * weir_operator_check() is the contract the pipeline compiler enforces on every class it uses. */
#include <string.h>

#include "operator.h"

extern const weir_operator_class_t weir_filter_class;
extern const weir_operator_class_t weir_map_class;
extern const weir_operator_class_t weir_window_class;
extern const weir_operator_class_t weir_kmeans_class;
extern const weir_operator_class_t weir_arima_class;

static const weir_operator_class_t *const registry[] = {
    &weir_filter_class, &weir_map_class, &weir_window_class, &weir_kmeans_class, &weir_arima_class, NULL,
};

const weir_operator_class_t *weir_operator_find(const char *name) {
    for (int i = 0; registry[i]; i++)
        if (!strcmp(registry[i]->name, name))
            return registry[i];
    return NULL;
}

const weir_operator_class_t *const *weir_operator_list(void) { return registry; }

/* Bytes a typed config map entry writes at its offset. */
static size_t cm_field_size(weir_cm_type_t type) {
    switch (type) {
    case WEIR_CM_STR: return sizeof(const char *);
    case WEIR_CM_LONG:
    case WEIR_CM_DURATION: return sizeof(int64_t);
    case WEIR_CM_DOUBLE: return sizeof(double);
    case WEIR_CM_BOOL: return sizeof(bool);
    case WEIR_CM_CUSTOM: return 0;
    }
    return 0;
}

int weir_operator_check(const weir_operator_class_t *cls, char *errstr, size_t errstr_size) {
    const char *name = cls->name ? cls->name : "?";
    if (cls->abi != WEIR_OPERATOR_ABI)
        return weir_err(errstr, errstr_size, "operator '%s' was built for operator ABI %d, this weir has ABI %d", name,
                        cls->abi, WEIR_OPERATOR_ABI);
    if (!cls->name || !cls->configure || !cls->init || !cls->process || !cls->destroy)
        return weir_err(errstr, errstr_size, "operator '%s': name, configure, init, process and destroy are required",
                        name);
    if (!cls->snapshot != !cls->restore)
        return weir_err(errstr, errstr_size,
                        "operator '%s': snapshot and restore are both set (stateful) or both NULL (stateless)", name);
    for (const weir_config_map_t *e = cls->config_map; e && e->name; e++)
        if (e->type != WEIR_CM_CUSTOM && e->offset + cm_field_size(e->type) > cls->conf_size)
            return weir_err(errstr, errstr_size, "operator '%s': config key '%s' lies outside conf_size (%zu bytes)",
                            name, e->name, cls->conf_size);
    return WEIR_OK;
}

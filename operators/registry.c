/* The operator registry: adding an operator touches its own folder and one line here. */
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

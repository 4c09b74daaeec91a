/*
 * libFuzzer harness: the expression language (processor/core/expr.c).
 *
 * The input is an expression's source text. It is compiled against a row
 * type with a field of every type, plain and nullable, plus the names the
 * examples in docs/expressions.md use; when it compiles, its compiled form is
 * printed and it is evaluated on records holding awkward values (extremes,
 * NaN, infinities, non-UTF-8 strings, nulls), checking what expr.h promises:
 * the result has the static type or is null, and is null only when
 * weir_expr_nullable() said it could be. Last, one record that breaks its
 * row type (docs/expressions.md: "cannot crash an expression").
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"
#include "fuzz_util.h"

#define NVARIANTS 8

static weir_rowtype_t *rt;
static weir_record_t rec[NVARIANTS], broken;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    static const struct {
        const char *name;
        weir_type_t type;
        bool nullable;
    } f[] = {
        {"b", WEIR_BOOL, false},
        {"l", WEIR_LONG, false},
        {"d", WEIR_DOUBLE, false},
        {"s", WEIR_STRING, false},
        {"y", WEIR_BYTES, false},
        {"nb", WEIR_BOOL, true},
        {"nl", WEIR_LONG, true},
        {"nd", WEIR_DOUBLE, true},
        {"ns", WEIR_STRING, true},
        {"ny", WEIR_BYTES, true},
        {"z", WEIR_NULL, true},
        {"temperature", WEIR_DOUBLE, false},
        {"humidity", WEIR_DOUBLE, true},
        {"site", WEIR_STRING, true},
        {"sensor_id", WEIR_STRING, false},
        {"ts", WEIR_LONG, false},
        {"x", WEIR_DOUBLE, false},
        {"n", WEIR_LONG, true},
        {"i", WEIR_LONG, false},
        {"j", WEIR_LONG, false},
        {"p", WEIR_BOOL, false},
        {"q", WEIR_BOOL, true},
        {"location.lat", WEIR_DOUBLE, false},
        {"weird name", WEIR_STRING, false},
        {"and", WEIR_LONG, false},
        {"a`b", WEIR_LONG, true},
    };
    rt = weir_rowtype_new();
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
        weir_rowtype_add(rt, f[i].name, f[i].type, f[i].nullable);
    for (int k = 0; k < NVARIANTS; k++) {
        weir_record_init(&rec[k], rt);
        fuzz_fill_record(&rec[k], k);
    }
    /* Wrong types everywhere: a long in every slot, a string where a bool
     * goes, nulls in non-nullable slots. */
    weir_record_init(&broken, rt);
    for (int i = 0; i < rt->nfields; i++) {
        if (i % 3 == 0)
            broken.v[i] = weir_v_long(i);
        else if (i % 3 == 1)
            broken.v[i] = weir_v_str("x", 1);
        else
            broken.v[i] = weir_v_null();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *src = malloc(size + 1);
    memcpy(src, data, size);
    src[size] = '\0';
    char err[WEIR_ERRSTR_SIZE];
    weir_expr_t *e = weir_expr_compile(src, rt, err, sizeof(err));
    if (e == NULL) {
        FUZZ_CHECK(strncmp(err, "column ", 7) == 0, "error '%s' does not start with 'column N:'", err);
        free(src);
        return 0;
    }
    weir_expr_print(e, rt, fuzz_devnull());
    weir_type_t type = weir_expr_type(e);
    bool nullable = weir_expr_nullable(e);
    weir_arena_t arena = {0};
    for (int k = 0; k < NVARIANTS; k++) {
        weir_value_t out;
        weir_expr_eval(e, &rec[k], &arena, &out);
        if (out.type == WEIR_NULL)
            FUZZ_CHECK(nullable || type == WEIR_NULL, "'%s' gave null on record %d but is not nullable", src, k);
        else
            FUZZ_CHECK(out.type == type, "'%s' gave a %s on record %d, its type is %s", src, weir_type_name(out.type),
                       k, weir_type_name(type));
        weir_arena_reset(&arena);
    }
    weir_value_t out;
    weir_expr_eval(e, &broken, &arena, &out);
    weir_expr_eval(e, &broken, NULL, &out); /* no arena: lower()/upper() give null */
    weir_arena_free(&arena);
    weir_expr_destroy(e);
    free(src);
    return 0;
}

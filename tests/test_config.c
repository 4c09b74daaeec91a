/* The YAML loader and config maps: values, positions and every error path. */
#include <criterion/criterion.h>
#include <string.h>

#include "config.h"

static char err[WEIR_ERRSTR_SIZE];

Test(config, positions_and_kinds) {
    const char *y = "pipeline: p\n"
                    "source:\n"
                    "  format: avro\n"
                    "nodes:\n"
                    "  - {name: a, op: filter}\n"
                    "  - name: b\n"
                    "    where: 'x > 1'\n";
    weir_cfg_t *c = weir_cfg_load_string("t.yaml", y, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    cr_assert_eq(c->kind, WEIR_CFG_MAP);
    const weir_cfg_t *src = weir_cfg_get(c, "source");
    cr_assert_eq(src->kind, WEIR_CFG_MAP);
    const weir_cfg_t *fmt = weir_cfg_get(src, "format");
    cr_assert_str_eq(fmt->scalar, "avro");
    cr_assert_eq(fmt->line, 3);
    cr_assert_eq(fmt->col, 11);
    const weir_cfg_t *nodes = weir_cfg_get(c, "nodes");
    cr_assert_eq(nodes->kind, WEIR_CFG_SEQ);
    cr_assert_eq(nodes->n, 2);
    cr_assert_eq(nodes->items[0]->line, 5);
    const weir_cfg_t *where = weir_cfg_get(nodes->items[1], "where");
    cr_assert(where->quoted);
    cr_assert_eq(where->line, 7);
    cr_assert_str_eq(where->file, "t.yaml");
    weir_cfg_destroy(c);
}

Test(config, syntax_error_names_file_and_line) {
    weir_cfg_t *c = weir_cfg_load_string("bad.yaml", "a: 1\nb: [1, 2\nc: 3\n", err, sizeof(err));
    cr_assert_null(c);
    cr_assert(strncmp(err, "bad.yaml:", 9) == 0, "%s", err);
    cr_assert(strstr(err, "YAML syntax error"), "%s", err);
}

Test(config, duplicate_key) {
    weir_cfg_t *c = weir_cfg_load_string("d.yaml", "a: 1\nb: 2\na: 3\n", err, sizeof(err));
    cr_assert_null(c);
    cr_assert(strstr(err, "d.yaml:3:1: duplicate key 'a' (first at line 1)"), "%s", err);
}

Test(config, top_level_must_be_a_map) {
    cr_assert_null(weir_cfg_load_string("l.yaml", "- a\n- b\n", err, sizeof(err)));
    cr_assert(strstr(err, "l.yaml:1:1: the top level must be a map"), "%s", err);
    cr_assert_null(weir_cfg_load_string("e.yaml", "", err, sizeof(err)));
    cr_assert(strstr(err, "e.yaml:1: the file is empty"), "%s", err);
    cr_assert_null(weir_cfg_load_string("m.yaml", "a: 1\n---\nb: 2\n", err, sizeof(err)));
    cr_assert(strstr(err, "only one YAML document"), "%s", err);
}

Test(config, missing_file) {
    cr_assert_null(weir_cfg_load_file("/nonexistent/p.yaml", err, sizeof(err)));
    cr_assert(strstr(err, "/nonexistent/p.yaml: cannot open"), "%s", err);
}

Test(config, unknown_key_is_reported_with_its_line) {
    weir_cfg_t *c = weir_cfg_load_string("u.yaml", "known: 1\n\nwhere_typo: x\n", err, sizeof(err));
    cr_assert_not_null(c);
    cr_assert_not_null(weir_cfg_get(c, "known"));
    cr_assert_eq(weir_cfg_check_unused(c, "node 'n'", err, sizeof(err)), WEIR_ERR);
    cr_assert_str_eq(err, "u.yaml:3:1: node 'n': unknown key 'where_typo'");
    weir_cfg_destroy(c);
    /* In a flow mapping several keys share a line: the column tells which one (issue 13). */
    c = weir_cfg_load_string("u.yaml", "n: {known: 1, typo: 2}\n", err, sizeof(err));
    cr_assert_not_null(c);
    cr_assert_not_null(weir_cfg_get(weir_cfg_get(c, "n"), "known"));
    cr_assert_eq(weir_cfg_check_unused(weir_cfg_get(c, "n"), "node 'n'", err, sizeof(err)), WEIR_ERR);
    cr_assert_str_eq(err, "u.yaml:1:15: node 'n': unknown key 'typo'");
    weir_cfg_destroy(c);
}

typedef struct conf {
    const char *name;
    int64_t k;
    double decay;
    bool on;
    int64_t size_ms;
} conf_t;

static const weir_config_map_t cm[] = {
    {WEIR_CM_STR, "name", "anon", false, offsetof(conf_t, name), "a name"},
    {WEIR_CM_LONG, "k", NULL, true, offsetof(conf_t, k), "clusters"},
    {WEIR_CM_DOUBLE, "decay", "1.0", false, offsetof(conf_t, decay), "forgetfulness"},
    {WEIR_CM_BOOL, "on", "false", false, offsetof(conf_t, on), "switch"},
    {WEIR_CM_DURATION, "size", "10s", false, offsetof(conf_t, size_ms), "window size"},
    {0},
};

Test(config, config_map_values_and_defaults) {
    weir_cfg_t *c = weir_cfg_load_string("m.yaml", "k: 4\non: yes\nsize: 1.5m\n", err, sizeof(err));
    cr_assert_not_null(c);
    conf_t v = {0};
    cr_assert_eq(weir_config_map_apply(cm, c, &v, err, sizeof(err)), WEIR_OK, "%s", err);
    cr_assert_str_eq(v.name, "anon");
    cr_assert_eq(v.k, 4);
    cr_assert_eq(v.decay, 1.0);
    cr_assert(v.on);
    cr_assert_eq(v.size_ms, 90000);
    cr_assert_eq(weir_cfg_check_unused(c, "x", err, sizeof(err)), WEIR_OK);
    weir_cfg_destroy(c);
}

static void expect_cm_error(const char *yaml, const char *want) {
    weir_cfg_t *c = weir_cfg_load_string("m.yaml", yaml, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    conf_t v = {0};
    cr_assert_eq(weir_config_map_apply(cm, c, &v, err, sizeof(err)), WEIR_ERR, "accepted: %s", yaml);
    cr_assert(strstr(err, want), "got '%s', want '%s'", err, want);
    weir_cfg_destroy(c);
}

Test(config, config_map_errors) {
    expect_cm_error("name: x\n", "m.yaml:1:1: missing required key 'k'");
    expect_cm_error("k: four\n", "m.yaml:1:4: expected an integer, got 'four'");
    expect_cm_error("k: '4'\n", "expected an integer, got '4'");
    expect_cm_error("k: 1\ndecay: lots\n", "m.yaml:2:8: expected a number, got 'lots'");
    expect_cm_error("k: 1\non: maybe\n", "m.yaml:2:5: expected true or false, got 'maybe'");
    expect_cm_error("k: 1\nsize: 10 parsecs\n", "m.yaml:2:7: expected a duration");
    /* A bare number is no duration in a pipeline file (10 ms? 10 s?): a unit is required, except for 0. */
    expect_cm_error("k: 1\nsize: 10\n", "m.yaml:2:7: expected a duration with a unit such as 500ms");
    expect_cm_error("k: 1\nsize: 1.5\n", "m.yaml:2:7: expected a duration with a unit");
    expect_cm_error("k: [1, 2]\n", "m.yaml:1:4: expected an integer, got a list");
}

Test(config, durations) {
    int64_t ms;
    cr_assert_eq(weir_parse_duration("250ms", &ms), WEIR_OK);
    cr_assert_eq(ms, 250);
    cr_assert_eq(weir_parse_duration("10s", &ms), WEIR_OK);
    cr_assert_eq(ms, 10000);
    cr_assert_eq(weir_parse_duration("2h", &ms), WEIR_OK);
    cr_assert_eq(ms, 7200000);
    cr_assert_eq(weir_parse_duration("1d", &ms), WEIR_OK);
    cr_assert_eq(ms, 86400000);
    cr_assert_eq(weir_parse_duration("1500", &ms), WEIR_OK);
    cr_assert_eq(ms, 1500);
    cr_assert_eq(weir_parse_duration("-1s", &ms), WEIR_ERR);
    cr_assert_eq(weir_parse_duration("s", &ms), WEIR_ERR);
    cr_assert_eq(weir_parse_duration("5 weeks", &ms), WEIR_ERR);
    /* Not numbers or out of range: refused, never converted (a NaN used to
     * reach (int64_t)NaN, undefined behaviour). */
    cr_assert_eq(weir_parse_duration("nan s", &ms), WEIR_ERR);
    cr_assert_eq(weir_parse_duration("-nan", &ms), WEIR_ERR);
    cr_assert_eq(weir_parse_duration("inf", &ms), WEIR_ERR);
    cr_assert_eq(weir_parse_duration("1e300ms", &ms), WEIR_ERR);
}

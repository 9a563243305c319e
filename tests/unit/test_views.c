/*
 * test_views.c — flame trees and merged views (src/server/views.c): a
 * profile's tree says what `sonde collapse` and `sonde top` say about it,
 * merging adds samples up exactly, the label filter and the sample type
 * choose what is added, a diff is zero against itself and covers frames of
 * either side, and a corrupt blob of any kind is refused with a message —
 * never a crash (run under ASan too).
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/pprof.h"
#include "server/views.h"

/* ------------------------------------------------------------------ */
/* Profiles                                                            */

static struct pprof_profile *decode_builder(struct pprof_builder *b)
{
    uint8_t *gz;
    size_t len;
    assert_int_equal(pprof_builder_encode(b, &gz, &len), 0);
    struct pprof_profile *p = NULL;
    char err[256];
    if (pprof_decode(gz, len, &p, err, sizeof err) != 0)
        fail_msg("decode: %s", err);
    free(gz);
    pprof_builder_free(b);
    return p;
}

/* A profile of every kind of frame:
 *   main -> work[compute inlined]          (inline frames: one location)
 *   main -> work -> work -> leaf            (direct recursion)
 *   main -> work -> leaf -> work -> leaf    (recursion through another)
 *   main -> libfoo.so+0x1abc                (no symbol, mapped)
 *   main -> 0xdead -> _Z3sysv               (no mapping; system name only)
 * with thread and endpoint labels, sample types samples/count and
 * cpu/nanoseconds (the default). */
static struct pprof_profile *rich_profile(void)
{
    struct pprof_builder *b = pprof_builder_new();
    assert_non_null(b);
    assert_int_equal(pprof_builder_sample_type(b, "samples", "count"), 0);
    assert_int_equal(pprof_builder_sample_type(b, "cpu", "nanoseconds"), 0);
    assert_int_equal(pprof_builder_default_sample_type(b, "cpu"), 0);
    uint64_t exe = pprof_builder_mapping(b, 0x400000, 0x500000, 0, "/usr/bin/demo", "");
    uint64_t lib = pprof_builder_mapping(b, 0x7f0000000000, 0x7f0000100000, 0x1000,
                                         "/usr/lib/libfoo.so", "");
    uint64_t f_main = pprof_builder_function(b, "main", "main", "demo.c", 1);
    uint64_t f_work = pprof_builder_function(b, "ns::work(int)", "_ZN2ns4workEi", "demo.cc", 2);
    uint64_t f_compute = pprof_builder_function(b, "compute", "compute", "demo.c", 3);
    uint64_t f_leaf = pprof_builder_function(b, "leaf", "leaf", "demo.c", 4);
    uint64_t f_sys = pprof_builder_function(b, "", "_Z3sysv", "", 0);
    struct pprof_line lm = {f_main, 10}, lw = {f_work, 20}, ll = {f_leaf, 40}, ls = {f_sys, 0};
    struct pprof_line lwc[2] = {{f_compute, 30}, {f_work, 21}};
    uint64_t l_main = pprof_builder_location(b, exe, 0x401000, &lm, 1);
    uint64_t l_wc = pprof_builder_location(b, exe, 0x402000, lwc, 2);
    uint64_t l_work = pprof_builder_location(b, exe, 0x402100, &lw, 1);
    uint64_t l_leaf = pprof_builder_location(b, exe, 0x403000, &ll, 1);
    uint64_t l_lib = pprof_builder_location(b, lib, 0x7f0000000abc, NULL, 0);
    uint64_t l_raw = pprof_builder_location(b, 0, 0xdead, NULL, 0);
    uint64_t l_sys = pprof_builder_location(b, exe, 0x404000, &ls, 1);
    struct pprof_label w1 = {.key = "thread", .str = "worker-1"};
    struct pprof_label w2 = {.key = "thread", .str = "worker-2"};
    struct pprof_label w1pay[3] = {{.key = "thread", .str = "worker-1"},
                                   {.key = "thread_id", .num = 7},
                                   {.key = "endpoint", .str = "/api/pay"}};
    struct {
        uint64_t locs[5];
        size_t n;
        int64_t v[2];
        const struct pprof_label *labels;
        size_t nlabels;
    } s[] = {
        {{l_wc, l_main}, 2, {1, 10}, &w1, 1},
        {{l_leaf, l_work, l_work, l_main}, 4, {2, 20}, &w2, 1},
        {{l_lib, l_main}, 2, {3, 30}, w1pay, 3},
        {{l_sys, l_raw, l_main}, 3, {4, 40}, NULL, 0},
        {{l_work, l_main}, 2, {5, 50}, &w2, 1},
        {{l_wc, l_main}, 2, {1, 10}, &w2, 1},
        {{l_leaf, l_main}, 2, {1, 0}, &w1, 1}, /* no cpu: only in "samples" */
        {{l_leaf, l_work, l_leaf, l_work, l_main}, 5, {1, 7}, w1pay, 3},
    };
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        assert_int_equal(pprof_builder_sample(b, s[i].locs, s[i].n, s[i].v, s[i].labels,
                                              s[i].nlabels),
                         0);
    return decode_builder(b);
}
#define RICH_CPU_TOTAL 167
#define RICH_SAMPLES_TOTAL 18

/* A profile of stacks written root first ("main;a;b"), one location per
 * function (so that samples share location ids, as real ones do); sample
 * types samples/count and type2/unit2 (the default). */
struct stack_spec {
    const char *stack;
    int64_t count, value;
    const char *thread; /* label, or NULL */
};

static struct pprof_profile *stacks_profile(const struct stack_spec *spec, size_t n,
                                            const char *type2, const char *unit2)
{
    struct pprof_builder *b = pprof_builder_new();
    assert_non_null(b);
    assert_int_equal(pprof_builder_sample_type(b, "samples", "count"), 0);
    assert_int_equal(pprof_builder_sample_type(b, type2, unit2), 0);
    assert_int_equal(pprof_builder_default_sample_type(b, type2), 0);
    uint64_t loc_of[256] = {0}; /* by function id */
    for (size_t i = 0; i < n; i++) {
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", spec[i].stack);
        uint64_t locs[64];
        size_t depth = 0;
        for (char *save, *f = strtok_r(buf, ";", &save); f; f = strtok_r(NULL, ";", &save)) {
            struct pprof_line line = {pprof_builder_function(b, f, f, "", 0), 0};
            assert_true(depth < 64 && line.function_id < 256);
            if (!loc_of[line.function_id])
                loc_of[line.function_id] =
                    pprof_builder_location(b, 0, 0x1000 + 16 * line.function_id, &line, 1);
            locs[depth++] = loc_of[line.function_id];
        }
        for (size_t j = 0; j < depth / 2; j++) { /* leaf first */
            uint64_t t = locs[j];
            locs[j] = locs[depth - 1 - j];
            locs[depth - 1 - j] = t;
        }
        int64_t v[2] = {spec[i].count, spec[i].value};
        struct pprof_label l = {.key = "thread", .str = spec[i].thread};
        assert_int_equal(pprof_builder_sample(b, locs, depth, v, &l, spec[i].thread ? 1 : 0), 0);
    }
    return decode_builder(b);
}

/* ------------------------------------------------------------------ */
/* Views                                                               */

static void blob_of(const struct pprof_profile *p, uint8_t **blob, size_t *len)
{
    char err[256];
    if (flame_tree_build(p, blob, len, err, sizeof err) != 0)
        fail_msg("flame_tree_build: %s", err);
}

static void add_blob_ok(struct flame_merge *m, const uint8_t *blob, size_t len)
{
    char err[256] = "";
    int rc = flame_merge_add_blob(m, blob, len, err, sizeof err);
    if (rc != 0)
        fail_msg("add_blob: %d %s", rc, err);
}

/* A merge of type over the blobs of profiles[0..n). */
static struct flame_merge *merge_blobs(const char *type, struct pprof_profile *const *profiles,
                                       size_t n)
{
    struct flame_merge *m = flame_merge_new(type);
    assert_non_null(m);
    for (size_t i = 0; i < n; i++) {
        uint8_t *blob;
        size_t len;
        blob_of(profiles[i], &blob, &len);
        add_blob_ok(m, blob, len);
        free(blob);
    }
    return m;
}

static struct flame_merge *merge_one(const char *type, struct pprof_profile *p)
{
    return merge_blobs(type, &p, 1);
}

static char *collapsed_of_merge(const struct flame_merge *m)
{
    char *text;
    size_t len;
    assert_int_equal(flame_merge_collapsed(m, &text, &len), 0);
    assert_int_equal(strlen(text), len);
    return text;
}

static char *collapsed_of_pprof(const struct pprof_profile *p, int si)
{
    struct pprof_collapsed *c;
    assert_int_equal(pprof_collapse(p, si, &c), 0);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    assert_int_equal(pprof_collapsed_write(c, f), 0);
    fclose(f);
    pprof_collapsed_free(c);
    return text;
}

/* Appends "stack VALUE\n" for every node of a flame graph JSON subtree
 * with self != 0, checking on the way that value = self + the children's
 * values, children are sorted by name and no node has value 0. */
static void tree_lines(const json_t *node, const char *prefix, char **out, size_t *len)
{
    const json_t *kids = json_object_get(node, "children");
    assert_true(json_is_array(kids));
    json_int_t value = json_integer_value(json_object_get(node, "value"));
    json_int_t self = json_integer_value(json_object_get(node, "self"));
    json_int_t sum = self;
    const char *prev = NULL;
    size_t i;
    const json_t *kid;
    json_array_foreach (kids, i, kid) {
        const char *name = json_string_value(json_object_get(kid, "name"));
        assert_non_null(name);
        if (prev)
            assert_true(strcmp(prev, name) < 0);
        prev = name;
        assert_int_not_equal(json_integer_value(json_object_get(kid, "value")), 0);
        sum += json_integer_value(json_object_get(kid, "value"));
    }
    assert_int_equal(value, sum);
    if (self != 0) {
        char line[4096];
        snprintf(line, sizeof line, "%s %lld\n", prefix, (long long)self);
        *out = realloc(*out, *len + strlen(line) + 1);
        strcpy(*out + *len, line);
        *len += strlen(line);
    }
    json_array_foreach (kids, i, kid) {
        char path[4096];
        const char *name = json_string_value(json_object_get(kid, "name"));
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? ";" : "", name);
        tree_lines(kid, path, out, len);
    }
}

static int cmp_line(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The collapsed lines of a flame graph JSON tree, sorted like
 * pprof_collapsed_finish sorts them. */
static char *collapsed_of_tree(const json_t *tree)
{
    char *text = calloc(1, 1);
    size_t len = 0;
    assert_string_equal(json_string_value(json_object_get(tree, "name")), "root");
    assert_int_equal(json_integer_value(json_object_get(tree, "self")), 0);
    tree_lines(tree, "", &text, &len);
    char *lines[256];
    size_t n = 0;
    for (char *save, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        assert_true(n < 256);
        lines[n++] = l;
    }
    /* Compare stacks, not "stack value" strings: ' ' sorts before ';'. */
    for (size_t i = 0; i < n; i++)
        *strrchr(lines[i], ' ') = '\0';
    qsort(lines, n, sizeof *lines, cmp_line);
    char *out = calloc(1, len + 1);
    for (size_t i = 0; i < n; i++) {
        strcat(out, lines[i]);
        strcat(out, " ");
        strcat(out, lines[i] + strlen(lines[i]) + 1);
        strcat(out, "\n");
    }
    free(text);
    return out;
}

static void stats_of(const struct flame_merge *m, struct flame_merge_stats *st)
{
    flame_merge_stats(m, st);
}

/* ------------------------------------------------------------------ */
/* Trees, top and collapsed agree with pprof's                         */

static void test_merged_totals_equal_the_sum_of_samples(void **state)
{
    (void)state;
    struct stack_spec a[] = {{"main;serve;parse", 1, 100, NULL}, {"main;serve", 1, 50, NULL}};
    struct stack_spec b[] = {{"main;serve;parse", 1, 7, NULL}, {"main;idle", 1, 3, NULL}};
    struct pprof_profile *ps[3] = {stacks_profile(a, 2, "cpu", "nanoseconds"),
                                   stacks_profile(b, 2, "cpu", "nanoseconds"), rich_profile()};
    struct flame_merge *m = merge_blobs(NULL, ps, 3);
    struct flame_merge_stats st;
    stats_of(m, &st);
    assert_int_equal(st.profiles, 3);
    assert_int_equal(st.skipped, 0);
    assert_int_equal(st.total, 150 + 10 + RICH_CPU_TOTAL);
    assert_string_equal(st.type, "cpu");
    assert_string_equal(st.unit, "nanoseconds");
    json_t *tree = flame_merge_tree_json(m);
    assert_non_null(tree);
    assert_int_equal(json_integer_value(json_object_get(tree, "value")), st.total);
    /* main;serve;parse merged across profiles: 100 + 7. */
    json_t *main_ = json_array_get(json_object_get(tree, "children"), 0);
    assert_string_equal(json_string_value(json_object_get(main_, "name")), "main");
    char *got = collapsed_of_merge(m);
    assert_non_null(strstr(got, "\nmain;serve;parse 107\n"));
    assert_non_null(strstr(got, "\nmain;serve 50\n"));
    free(got);
    json_decref(tree);
    flame_merge_free(m);
    for (int i = 0; i < 3; i++)
        pprof_profile_free(ps[i]);
}

static void test_tree_of_one_profile_equals_its_collapsed_stacks(void **state)
{
    (void)state;
    struct pprof_profile *p = rich_profile();
    for (int si = 0; si < 2; si++) {
        struct flame_merge *m = merge_one(si ? "cpu" : "samples", p);
        char *want = collapsed_of_pprof(p, si);
        char *got = collapsed_of_merge(m);
        assert_string_equal(got, want);
        json_t *tree = flame_merge_tree_json(m);
        assert_non_null(tree);
        char *from_tree = collapsed_of_tree(tree);
        assert_string_equal(from_tree, want);
        free(from_tree);
        json_decref(tree);
        free(want);
        free(got);
        flame_merge_free(m);
    }
    /* The frames as sonde names them. */
    struct flame_merge *m = merge_one(NULL, p);
    char *got = collapsed_of_merge(m);
    assert_non_null(strstr(got, "main;ns::work(int);compute 20\n"));
    assert_non_null(strstr(got, "main;libfoo.so+0x1abc 30\n"));
    assert_non_null(strstr(got, "main;0xdead;_Z3sysv 40\n"));
    free(got);
    flame_merge_free(m);
    pprof_profile_free(p);
}

static void test_stacks_sharing_prefixes_give_pprofs_stacks_in_any_order(void **state)
{
    (void)state;
    /* Consecutive samples that share a start, repeat, end where another
     * continues, or recurse: the walk resumes where the previous one
     * stopped, so order must not matter. */
    struct stack_spec s[] = {
        {"main;a;b;c", 1, 1, "t1"}, {"main;a;b;c", 1, 2, "t2"}, {"main;a;b", 1, 4, NULL},
        {"main;a;b;c;d", 1, 8, NULL}, {"main;a", 1, 16, NULL},  {"main;x;b;c", 1, 32, NULL},
        {"main;a;a;a", 1, 64, NULL},  {"main;a;a", 1, 128, NULL}, {"main", 1, 256, NULL},
        {"main;a;b;c", 1, 512, "t3"},
    };
    size_t n = sizeof s / sizeof s[0];
    struct stack_spec order[sizeof s / sizeof s[0]];
    for (int o = 0; o < 3; o++) {
        for (size_t i = 0; i < n; i++) /* as is, reversed, odd ones first */
            order[i] = s[o == 0 ? i : o == 1 ? n - 1 - i : (2 * i + 1) % (n + (n % 2 == 0))];
        struct pprof_profile *p = stacks_profile(order, n, "cpu", "nanoseconds");
        struct flame_merge *m = merge_one(NULL, p);
        char *want = collapsed_of_pprof(p, 1), *got = collapsed_of_merge(m);
        assert_string_equal(got, want);
        assert_string_equal(got, "main 256\n"
                                 "main;a 16\n"
                                 "main;a;a 128\n"
                                 "main;a;a;a 64\n"
                                 "main;a;b 4\n"
                                 "main;a;b;c 515\n"
                                 "main;a;b;c;d 8\n"
                                 "main;x;b;c 32\n");
        free(want);
        free(got);
        flame_merge_free(m);
        pprof_profile_free(p);
    }
}

static void test_collapsed_sanitizes_names_like_pprof_collapse(void **state)
{
    (void)state;
    struct pprof_builder *b = pprof_builder_new();
    assert_int_equal(pprof_builder_sample_type(b, "cpu", "nanoseconds"), 0);
    struct pprof_line l1 = {pprof_builder_function(b, "operator;()", "", "", 0), 0};
    struct pprof_line l2 = {pprof_builder_function(b, "two\nlines", "", "", 0), 0};
    struct pprof_line l3 = {pprof_builder_function(b, "bad\xff\xfe utf8", "", "", 0), 0};
    uint64_t locs[3] = {pprof_builder_location(b, 0, 3, &l3, 1),
                        pprof_builder_location(b, 0, 2, &l2, 1),
                        pprof_builder_location(b, 0, 1, &l1, 1)};
    int64_t v = 5;
    assert_int_equal(pprof_builder_sample(b, locs, 3, &v, NULL, 0), 0);
    struct pprof_profile *p = decode_builder(b);
    struct flame_merge *m = merge_one(NULL, p);
    char *want = collapsed_of_pprof(p, 0), *got = collapsed_of_merge(m);
    assert_string_equal(got, "operator_();two_lines;bad\xff\xfe utf8 5\n");
    assert_string_equal(got, want);
    /* JSON is UTF-8: the bytes that are not show as '?'. */
    json_t *tree = flame_merge_tree_json(m);
    assert_non_null(tree);
    char *dump = json_dumps(tree, JSON_COMPACT);
    assert_non_null(dump);
    assert_non_null(strstr(dump, "\"bad?? utf8\""));
    assert_non_null(strstr(dump, "\"operator;()\""));
    free(dump);
    json_decref(tree);
    json_t *top = flame_merge_top_json(m, 0);
    assert_non_null(top);
    assert_int_equal(json_array_size(top), 3);
    json_decref(top);
    free(want);
    free(got);
    flame_merge_free(m);
    pprof_profile_free(p);
}

static void test_top_equals_pprof_top_with_recursion(void **state)
{
    (void)state;
    struct pprof_profile *p = rich_profile();
    for (int si = 0; si < 2; si++) {
        struct flame_merge *m = merge_one(si ? "cpu" : "samples", p);
        struct pprof_top *t;
        assert_int_equal(pprof_top_compute(p, si, &t), 0);
        json_t *top = flame_merge_top_json(m, 0);
        assert_non_null(top);
        size_t k = 0;
        for (size_t i = 0; i < t->n; i++) {
            if (t->rows[i].flat == 0 && t->rows[i].cum == 0)
                continue; /* pprof lists every function; a view what has a value */
            json_t *r = json_array_get(top, k++);
            assert_non_null(r);
            assert_string_equal(json_string_value(json_object_get(r, "name")), t->rows[i].name);
            assert_int_equal(json_integer_value(json_object_get(r, "self")), t->rows[i].flat);
            assert_int_equal(json_integer_value(json_object_get(r, "total")), t->rows[i].cum);
        }
        assert_int_equal(json_array_size(top), k);
        json_decref(top);
        pprof_top_free(t);
        flame_merge_free(m);
    }
    /* Recursion counts once per stack: ns::work is on every cpu stack but
     * the three through libfoo, 0xdead and main alone. */
    struct flame_merge *m = merge_one("cpu", p);
    json_t *top = flame_merge_top_json(m, 2);
    assert_int_equal(json_array_size(top), 2);
    size_t i;
    json_t *r;
    bool seen = false;
    json_decref(top);
    top = flame_merge_top_json(m, 0);
    json_array_foreach (top, i, r) {
        if (!strcmp(json_string_value(json_object_get(r, "name")), "ns::work(int)")) {
            assert_int_equal(json_integer_value(json_object_get(r, "total")), 10 + 20 + 50 + 10 + 7);
            assert_int_equal(json_integer_value(json_object_get(r, "self")), 50);
            seen = true;
        }
        if (!strcmp(json_string_value(json_object_get(r, "name")), "main"))
            assert_int_equal(json_integer_value(json_object_get(r, "total")), RICH_CPU_TOTAL);
    }
    assert_true(seen);
    json_decref(top);
    flame_merge_free(m);
    pprof_profile_free(p);
}

/* ------------------------------------------------------------------ */
/* Differences                                                         */

/* Every node of a diff tree: delta = comparison - base, and (when equal
 * is set) base == comparison. */
static void check_diff_node(const json_t *n, bool equal)
{
    json_int_t b = json_integer_value(json_object_get(n, "base"));
    json_int_t c = json_integer_value(json_object_get(n, "comparison"));
    assert_int_equal(json_integer_value(json_object_get(n, "delta")), c - b);
    if (equal) {
        assert_int_equal(b, c);
        assert_int_equal(json_integer_value(json_object_get(n, "base_self")),
                         json_integer_value(json_object_get(n, "comparison_self")));
    }
    size_t i;
    json_t *kid;
    json_array_foreach (json_object_get(n, "children"), i, kid)
        check_diff_node(kid, equal);
}

static size_t count_nodes(const json_t *n)
{
    size_t k = 1, i;
    json_t *kid;
    json_array_foreach (json_object_get(n, "children"), i, kid)
        k += count_nodes(kid);
    return k;
}

static void test_diff_of_a_profile_with_itself_is_zero_everywhere(void **state)
{
    (void)state;
    struct pprof_profile *p = rich_profile();
    struct flame_merge *a = merge_one(NULL, p), *b = merge_one(NULL, p);
    json_t *d = flame_diff_tree_json(a, b);
    assert_non_null(d);
    assert_int_equal(json_integer_value(json_object_get(d, "base")), RICH_CPU_TOTAL);
    check_diff_node(d, true);
    json_t *tree = flame_merge_tree_json(a);
    assert_int_equal(count_nodes(d), count_nodes(tree));
    json_decref(tree);
    json_decref(d);
    json_t *top = flame_diff_top_json(a, b, 0);
    assert_non_null(top);
    assert_true(json_array_size(top) > 0);
    size_t i;
    json_t *r;
    json_array_foreach (top, i, r) {
        assert_int_equal(json_integer_value(json_object_get(r, "delta_self")), 0);
        assert_int_equal(json_integer_value(json_object_get(r, "delta_total")), 0);
    }
    json_decref(top);
    flame_merge_free(a);
    flame_merge_free(b);
    pprof_profile_free(p);
}

static void test_diff_tree_covers_nodes_present_on_one_side(void **state)
{
    (void)state;
    struct stack_spec base[] = {{"main;a;gone", 1, 70, NULL}, {"main;a", 1, 30, NULL}};
    struct stack_spec cmp[] = {{"main;a;new", 1, 100, NULL}, {"main;a", 1, 30, NULL}};
    struct pprof_profile *pb = stacks_profile(base, 2, "cpu", "nanoseconds");
    struct pprof_profile *pc = stacks_profile(cmp, 2, "cpu", "nanoseconds");
    struct flame_merge *mb = merge_one(NULL, pb), *mc = merge_one(NULL, pc);
    json_t *d = flame_diff_tree_json(mb, mc);
    assert_non_null(d);
    check_diff_node(d, false);
    assert_int_equal(json_integer_value(json_object_get(d, "delta")), 30);
    json_t *a = json_array_get(json_object_get(json_array_get(json_object_get(d, "children"), 0),
                                               "children"),
                               0);
    assert_string_equal(json_string_value(json_object_get(a, "name")), "a");
    assert_int_equal(json_integer_value(json_object_get(a, "base_self")), 30);
    assert_int_equal(json_integer_value(json_object_get(a, "comparison_self")), 30);
    json_t *kids = json_object_get(a, "children");
    assert_int_equal(json_array_size(kids), 2);
    json_t *gone = json_array_get(kids, 0), *nw = json_array_get(kids, 1);
    assert_string_equal(json_string_value(json_object_get(gone, "name")), "gone");
    assert_int_equal(json_integer_value(json_object_get(gone, "base")), 70);
    assert_int_equal(json_integer_value(json_object_get(gone, "comparison")), 0);
    assert_int_equal(json_integer_value(json_object_get(gone, "delta")), -70);
    assert_string_equal(json_string_value(json_object_get(nw, "name")), "new");
    assert_int_equal(json_integer_value(json_object_get(nw, "base")), 0);
    assert_int_equal(json_integer_value(json_object_get(nw, "comparison")), 100);
    assert_int_equal(json_integer_value(json_object_get(nw, "delta")), 100);
    json_decref(d);

    /* Top: sorted by |delta_self|, functions of either side. */
    json_t *top = flame_diff_top_json(mb, mc, 0);
    assert_non_null(top);
    assert_int_equal(json_array_size(top), 4); /* new, gone, a, main */
    json_t *r0 = json_array_get(top, 0), *r1 = json_array_get(top, 1);
    assert_string_equal(json_string_value(json_object_get(r0, "name")), "new");
    assert_int_equal(json_integer_value(json_object_get(r0, "delta_self")), 100);
    assert_int_equal(json_integer_value(json_object_get(r0, "base_total")), 0);
    assert_string_equal(json_string_value(json_object_get(r1, "name")), "gone");
    assert_int_equal(json_integer_value(json_object_get(r1, "delta_self")), -70);
    assert_int_equal(json_integer_value(json_object_get(r1, "comparison_total")), 0);
    json_t *r3 = json_array_get(top, 3);
    assert_string_equal(json_string_value(json_object_get(r3, "name")), "main");
    assert_int_equal(json_integer_value(json_object_get(r3, "delta_total")), 30);
    json_decref(top);
    top = flame_diff_top_json(mb, mc, 1);
    assert_int_equal(json_array_size(top), 1);
    json_decref(top);
    flame_merge_free(mb);
    flame_merge_free(mc);
    pprof_profile_free(pb);
    pprof_profile_free(pc);
}

static void test_diff_of_two_sample_types_is_refused(void **state)
{
    (void)state;
    struct stack_spec s[] = {{"main", 1, 5, NULL}};
    struct pprof_profile *cpu = stacks_profile(s, 1, "cpu", "nanoseconds");
    struct pprof_profile *wall = stacks_profile(s, 1, "wall", "nanoseconds");
    struct flame_merge *a = merge_one(NULL, cpu), *b = merge_one(NULL, wall);
    errno = 0;
    assert_null(flame_diff_tree_json(a, b));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(flame_diff_top_json(a, b, 0));
    assert_int_equal(errno, EINVAL);
    flame_merge_free(a);
    flame_merge_free(b);
    pprof_profile_free(cpu);
    pprof_profile_free(wall);
}

/* ------------------------------------------------------------------ */
/* What is added                                                       */

static void test_label_filter_keeps_only_matching_samples(void **state)
{
    (void)state;
    struct pprof_profile *p = rich_profile();
    char err[256];
    struct flame_label w1 = {"thread", "worker-1"};
    struct flame_label w1pay[2] = {{"thread", "worker-1"}, {"endpoint", "/api/pay"}};
    struct flame_label none = {"thread", "worker-9"};
    struct flame_label numeric = {"thread_id", "7"}; /* numeric labels never match */
    struct {
        const struct flame_label *l;
        size_t n;
        int64_t total;
        const char *stacks;
    } cases[] = {
        {&w1, 1, 10 + 30 + 7,
         "main;libfoo.so+0x1abc 30\n"
         "main;ns::work(int);compute 10\n"
         "main;ns::work(int);leaf;ns::work(int);leaf 7\n"},
        {w1pay, 2, 30 + 7,
         "main;libfoo.so+0x1abc 30\n"
         "main;ns::work(int);leaf;ns::work(int);leaf 7\n"},
        {&none, 1, 0, ""},
        {&numeric, 1, 0, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct flame_merge *m = flame_merge_new("cpu");
        assert_int_equal(flame_merge_add_pprof(m, p, cases[i].l, cases[i].n, err, sizeof err), 0);
        struct flame_merge_stats st;
        stats_of(m, &st);
        assert_int_equal(st.total, cases[i].total);
        assert_int_equal(st.profiles, 1);
        char *got = collapsed_of_merge(m);
        assert_string_equal(got, cases[i].stacks);
        free(got);
        flame_merge_free(m);
    }
    pprof_profile_free(p);
}

static void test_add_pprof_without_labels_equals_add_blob(void **state)
{
    (void)state;
    struct pprof_profile *p = rich_profile();
    char err[256];
    for (int si = 0; si < 3; si++) {
        const char *type = si == 0 ? NULL : si == 1 ? "samples" : "cpu";
        struct flame_merge *a = merge_one(type, p), *b = flame_merge_new(type);
        assert_int_equal(flame_merge_add_pprof(b, p, NULL, 0, err, sizeof err), 0);
        json_t *ta = flame_merge_tree_json(a), *tb = flame_merge_tree_json(b);
        assert_true(json_equal(ta, tb));
        struct flame_merge_stats sa, sb;
        stats_of(a, &sa);
        stats_of(b, &sb);
        assert_int_equal(sa.total, sb.total);
        assert_string_equal(sa.type, sb.type);
        json_decref(ta);
        json_decref(tb);
        flame_merge_free(a);
        flame_merge_free(b);
    }
    pprof_profile_free(p);
}

static void test_sample_type_is_chosen_and_profiles_without_it_skipped(void **state)
{
    (void)state;
    struct stack_spec s[] = {{"main;run", 3, 300, NULL}, {"main", 1, 100, NULL}};
    struct pprof_profile *cpu = stacks_profile(s, 2, "cpu", "nanoseconds");
    struct pprof_profile *wall = stacks_profile(s, 2, "wall", "nanoseconds");
    struct pprof_profile *cpu_count = stacks_profile(s, 2, "cpu", "count");
    struct pprof_profile *all[3] = {wall, cpu, cpu_count};
    char err[256];
    struct {
        const char *type;
        size_t profiles, skipped;
        int64_t total;
        const char *chosen, *unit;
    } cases[] = {
        /* The first profile's default type (wall) decides. */
        {NULL, 1, 2, 400, "wall", "nanoseconds"},
        {"", 1, 2, 400, "wall", "nanoseconds"},
        {"samples", 3, 0, 12, "samples", "count"},
        /* cpu in count is another type than cpu in nanoseconds. */
        {"cpu", 1, 2, 400, "cpu", "nanoseconds"},
        {"alloc", 0, 3, 0, "alloc", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int pprof = 0; pprof <= 1; pprof++) {
            struct flame_merge *m = flame_merge_new(cases[i].type);
            for (int k = 0; k < 3; k++) {
                if (pprof) {
                    assert_int_equal(flame_merge_add_pprof(m, all[k], NULL, 0, err, sizeof err), 0);
                } else {
                    uint8_t *blob;
                    size_t len;
                    blob_of(all[k], &blob, &len);
                    add_blob_ok(m, blob, len);
                    free(blob);
                }
            }
            struct flame_merge_stats st;
            stats_of(m, &st);
            assert_int_equal(st.profiles, cases[i].profiles);
            assert_int_equal(st.skipped, cases[i].skipped);
            assert_int_equal(st.total, cases[i].total);
            assert_string_equal(st.type, cases[i].chosen);
            assert_string_equal(st.unit, cases[i].unit);
            flame_merge_free(m);
        }
    }
    struct flame_merge *m = flame_merge_new(NULL);
    struct flame_merge_stats st;
    stats_of(m, &st);
    assert_string_equal(st.type, "");
    assert_int_equal(st.nodes, 1);
    json_t *tree = flame_merge_tree_json(m);
    assert_int_equal(json_integer_value(json_object_get(tree, "value")), 0);
    assert_int_equal(json_array_size(json_object_get(tree, "children")), 0);
    json_decref(tree);
    char *text;
    size_t len;
    assert_int_equal(flame_merge_collapsed(m, &text, &len), 0);
    assert_int_equal(len, 0);
    free(text);
    flame_merge_free(m);
    pprof_profile_free(cpu);
    pprof_profile_free(wall);
    pprof_profile_free(cpu_count);
}

static void test_profiles_without_samples_or_types_merge_as_empty(void **state)
{
    (void)state;
    struct pprof_builder *b = pprof_builder_new();
    struct pprof_profile *none = decode_builder(b); /* no sample types at all */
    b = pprof_builder_new();
    assert_int_equal(pprof_builder_sample_type(b, "cpu", "nanoseconds"), 0);
    struct pprof_profile *empty = decode_builder(b); /* a type, no samples */
    char err[256];
    struct flame_merge *m = flame_merge_new(NULL);
    uint8_t *blob;
    size_t len;
    blob_of(none, &blob, &len);
    add_blob_ok(m, blob, len);
    free(blob);
    assert_int_equal(flame_merge_add_pprof(m, none, NULL, 0, err, sizeof err), 0);
    blob_of(empty, &blob, &len);
    add_blob_ok(m, blob, len);
    free(blob);
    assert_int_equal(flame_merge_add_pprof(m, empty, NULL, 0, err, sizeof err), 0);
    struct flame_merge_stats st;
    stats_of(m, &st);
    assert_int_equal(st.skipped, 2);
    assert_int_equal(st.profiles, 2);
    assert_int_equal(st.total, 0);
    assert_int_equal(st.nodes, 1);
    assert_string_equal(st.type, "cpu");
    flame_merge_free(m);
    pprof_profile_free(none);
    pprof_profile_free(empty);
}

static void test_deep_stacks_are_cut_with_a_truncated_frame(void **state)
{
    (void)state;
    size_t depth = 1500;
    struct pprof_builder *b = pprof_builder_new();
    assert_int_equal(pprof_builder_sample_type(b, "cpu", "nanoseconds"), 0);
    uint64_t *locs = malloc(depth * sizeof *locs);
    for (size_t i = 0; i < depth; i++) {
        char name[32];
        snprintf(name, sizeof name, "f%zu", depth - 1 - i); /* leaf first: f0 is the root */
        struct pprof_line l = {pprof_builder_function(b, name, "", "", 0), 0};
        locs[i] = pprof_builder_location(b, 0, 0x1000 + i, &l, 1);
    }
    /* The deep stack twice (the second walk resumes from the first's
     * cache, which must stop before the cut), then its 500 outermost
     * frames. */
    int64_t v = 9, v5 = 5;
    assert_int_equal(pprof_builder_sample(b, locs, depth, &v, NULL, 0), 0);
    assert_int_equal(pprof_builder_sample(b, locs, depth, &v, NULL, 0), 0);
    assert_int_equal(pprof_builder_sample(b, locs + depth - 500, 500, &v5, NULL, 0), 0);
    free(locs);
    struct pprof_profile *p = decode_builder(b);
    struct flame_merge *m = merge_one(NULL, p);
    struct flame_merge_stats st;
    stats_of(m, &st);
    assert_int_equal(st.total, 23);
    assert_int_equal(st.nodes, 1 + 1000); /* 999 frames + [truncated] */
    char *text = collapsed_of_merge(m);
    assert_non_null(strstr(text, ";f998;[truncated] 18\n"));
    assert_non_null(strstr(text, ";f498;f499 5\n"));
    free(text);
    json_t *tree = flame_merge_tree_json(m);
    assert_non_null(tree);
    char *dump = json_dumps(tree, JSON_COMPACT);
    assert_non_null(dump);
    json_t *back = json_loads(dump, 0, NULL); /* within jansson's depth */
    assert_non_null(back);
    json_decref(back);
    free(dump);
    json_decref(tree);
    flame_merge_free(m);
    pprof_profile_free(p);
}

/* ------------------------------------------------------------------ */
/* Corrupt blobs                                                       */

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Adds a blob that must be refused with code want and a message; the
 * merge must not change. */
static void refused(struct flame_merge *m, const uint8_t *blob, size_t len, int want)
{
    char err[256] = "";
    struct flame_merge_stats before, after;
    stats_of(m, &before);
    int rc = flame_merge_add_blob(m, blob, len, err, sizeof err);
    if (rc != want)
        fail_msg("blob of %zu bytes: expected %d, got %d (%s)", len, want, rc, err);
    assert_true(err[0] != '\0');
    stats_of(m, &after);
    assert_int_equal(before.profiles, after.profiles);
    assert_int_equal(before.skipped, after.skipped);
    assert_int_equal(before.nodes, after.nodes);
    assert_int_equal(before.total, after.total);
}

static void test_truncated_blobs_are_refused_at_every_length(void **state)
{
    (void)state;
    struct pprof_profile *p = rich_profile();
    uint8_t *blob;
    size_t len;
    blob_of(p, &blob, &len);
    struct flame_merge *m = merge_one(NULL, p);
    char *before = collapsed_of_merge(m);
    for (size_t n = 0; n < len; n++) {
        /* A copy of exactly n bytes, so ASan sees any read past it. */
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, blob, n);
        refused(m, cut, n, -EINVAL);
        free(cut);
    }
    /* Longer than it says. */
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, blob, len);
    longer[len] = 0;
    refused(m, longer, len + 1, -EINVAL);
    free(longer);
    char *after = collapsed_of_merge(m);
    assert_string_equal(before, after);
    free(before);
    free(after);
    flame_merge_free(m);
    free(blob);
    pprof_profile_free(p);
}

static void test_random_and_mutated_blobs_never_crash(void **state)
{
    (void)state;
    struct pprof_profile *p = rich_profile();
    uint8_t *blob;
    size_t len;
    blob_of(p, &blob, &len);
    struct flame_merge *m = flame_merge_new(NULL);
    unsigned seed = 12345;
    /* Random bytes, with and without a valid magic and version. */
    for (int i = 0; i < 2000; i++) {
        size_t n = (size_t)rand_r(&seed) % 300;
        uint8_t *r = malloc(n ? n : 1);
        for (size_t k = 0; k < n; k++)
            r[k] = (uint8_t)rand_r(&seed);
        if (i % 2 && n >= 8)
            memcpy(r, blob, 8);
        refused(m, r, n, -EINVAL);
        free(r);
    }
    /* Valid blobs with bytes changed: refused or accepted, never a crash
     * (a changed value or name index may still be a valid blob). */
    char err[256];
    for (int i = 0; i < 5000; i++) {
        uint8_t *r = malloc(len);
        memcpy(r, blob, len);
        int flips = 1 + rand_r(&seed) % 4;
        for (int k = 0; k < flips; k++)
            r[(size_t)rand_r(&seed) % len] = (uint8_t)rand_r(&seed);
        int rc = flame_merge_add_blob(m, r, len, err, sizeof err);
        assert_true(rc == 0 || rc == -EINVAL);
        free(r);
    }
    json_t *tree = flame_merge_tree_json(m);
    assert_non_null(tree);
    json_decref(tree);
    char *text = collapsed_of_merge(m);
    free(text);
    json_t *top = flame_merge_top_json(m, 10);
    assert_non_null(top);
    json_decref(top);
    flame_merge_free(m);
    free(blob);
    pprof_profile_free(p);
}

/* A blob of nnodes nodes at depth 1, one type, one name "f". */
static uint8_t *flat_blob(uint32_t nnodes, size_t *len)
{
    *len = 32 + 8 + 4 + 1 + 3 * (size_t)nnodes;
    uint8_t *b = calloc(1, *len);
    put32(b, 0x544c4653u);
    put32(b + 4, 1);
    put32(b + 8, 1);     /* types */
    put32(b + 12, 0);    /* default */
    put32(b + 16, 1);    /* names */
    put32(b + 20, 1);    /* name bytes */
    put32(b + 24, nnodes);
    put32(b + 28, 3 * nnodes);
    put32(b + 32, 0); /* type "f", unit "f" */
    put32(b + 36, 0);
    put32(b + 40, 1);
    b[44] = 'f';
    for (size_t i = 0; i < nnodes; i++) {
        b[45 + 3 * i] = 1;     /* depth */
        b[45 + 3 * i + 1] = 0; /* name */
        b[45 + 3 * i + 2] = 2; /* value 1 */
    }
    return b;
}

static void test_blobs_with_bad_counts_or_indexes_are_refused(void **state)
{
    (void)state;
    struct flame_merge *m = flame_merge_new(NULL);
    size_t len;
    uint8_t *b = flat_blob(3, &len);
    add_blob_ok(m, b, len); /* the well-formed one merges: 3 × "f" = 3 */
    struct flame_merge_stats st;
    stats_of(m, &st);
    assert_int_equal(st.total, 3);
    assert_int_equal(st.nodes, 2);
    struct {
        size_t off;
        uint32_t v;
    } bad[] = {
        {0, 0xdeadbeef},  /* magic */
        {4, 2},           /* version */
        {8, 0xffffffff},  /* huge type count */
        {12, 1},          /* default type out of range */
        {16, 0xffffffff}, /* huge name count */
        {20, 0xfffffff0}, /* huge name bytes */
        {24, 0xffffffff}, /* huge node count */
        {24, 4},          /* more nodes than records */
        {24, 2},          /* fewer nodes than records */
        {28, 0xffffff00}, /* huge node bytes */
        {32, 1},          /* type name out of range */
        {36, 7},          /* unit name out of range */
        {40, 2},          /* name overruns the table */
        {40, 0},          /* name shorter than its bytes */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t *c = malloc(len);
        memcpy(c, b, len);
        put32(c + bad[i].off, bad[i].v);
        refused(m, c, len, -EINVAL);
        free(c);
    }
    struct {
        size_t off;
        uint8_t v;
    } badbyte[] = {
        {44, 0},   /* NUL in a name */
        {45, 0},   /* depth 0 */
        {45, 2},   /* depth jumps by two */
        {46, 1},   /* name index out of range */
        {47, 0x80}, /* value varint runs into the next record, then off the end */
    };
    for (size_t i = 0; i < sizeof badbyte / sizeof badbyte[0]; i++) {
        uint8_t *c = malloc(len);
        memcpy(c, b, len);
        c[badbyte[i].off] = badbyte[i].v;
        refused(m, c, len, -EINVAL);
        free(c);
    }
    /* An 11-byte varint. */
    uint8_t *c = flat_blob(4, &len);
    put32(c + 24, 1);
    memset(c + 47, 0xff, 10);
    refused(m, c, len, -EINVAL);
    free(c);
    free(b);
    /* More nodes than a merge may hold: -E2BIG before any work. */
    b = flat_blob((uint32_t)FLAME_MERGE_MAX_NODES, &len);
    refused(m, b, len, -E2BIG);
    free(b);
    stats_of(m, &st);
    assert_int_equal(st.total, 3);
    flame_merge_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merged_totals_equal_the_sum_of_samples),
        cmocka_unit_test(test_tree_of_one_profile_equals_its_collapsed_stacks),
        cmocka_unit_test(test_stacks_sharing_prefixes_give_pprofs_stacks_in_any_order),
        cmocka_unit_test(test_collapsed_sanitizes_names_like_pprof_collapse),
        cmocka_unit_test(test_top_equals_pprof_top_with_recursion),
        cmocka_unit_test(test_diff_of_a_profile_with_itself_is_zero_everywhere),
        cmocka_unit_test(test_diff_tree_covers_nodes_present_on_one_side),
        cmocka_unit_test(test_diff_of_two_sample_types_is_refused),
        cmocka_unit_test(test_label_filter_keeps_only_matching_samples),
        cmocka_unit_test(test_add_pprof_without_labels_equals_add_blob),
        cmocka_unit_test(test_sample_type_is_chosen_and_profiles_without_it_skipped),
        cmocka_unit_test(test_profiles_without_samples_or_types_merge_as_empty),
        cmocka_unit_test(test_deep_stacks_are_cut_with_a_truncated_frame),
        cmocka_unit_test(test_truncated_blobs_are_refused_at_every_length),
        cmocka_unit_test(test_random_and_mutated_blobs_never_crash),
        cmocka_unit_test(test_blobs_with_bad_counts_or_indexes_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

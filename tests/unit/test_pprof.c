/*
 * test_pprof.c — the pprof builder, the validating reader and the
 * summaries (src/common/pprof_*.c): a profile survives encode/decode
 * unchanged, go tool pprof reads what we write, top and collapsed give
 * what a user expects, and corrupt input of every kind is refused with a
 * message that names the problem — never a crash (run under ASan too).
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "common/pprof.h"

/* ------------------------------------------------------------------ */
/* A small profile used throughout:
 *
 *   main -> work -> compute (compute inlined into work: one location)
 *   main -> work -> work -> leaf   (recursion)
 *   main -> (unsymbolized frame in libfoo.so)
 */

struct fixture {
    struct pprof_builder *b;
    uint64_t map_exe, map_lib;
    uint64_t f_main, f_work, f_compute, f_leaf;
    uint64_t l_main, l_work_compute, l_work, l_leaf, l_lib;
};

static void build_fixture(struct fixture *x)
{
    struct pprof_builder *b = x->b = pprof_builder_new();
    assert_non_null(b);
    assert_int_equal(pprof_builder_sample_type(b, "samples", "count"), 0);
    assert_int_equal(pprof_builder_sample_type(b, "cpu", "nanoseconds"), 0);
    assert_int_equal(pprof_builder_period(b, "cpu", "nanoseconds", 10000000), 0);
    assert_int_equal(pprof_builder_default_sample_type(b, "cpu"), 0);
    pprof_builder_time(b, 1700000000000000000, 2000000000);
    assert_int_equal(pprof_builder_comment(b, "made by test_pprof"), 0);
    x->map_exe = pprof_builder_mapping(b, 0x400000, 0x500000, 0, "/usr/bin/demo", "abcdef0123");
    x->map_lib = pprof_builder_mapping(b, 0x7f0000000000, 0x7f0000100000, 0x1000,
                                       "/usr/lib/libfoo.so", "");
    assert_int_equal(x->map_exe, 1);
    assert_int_equal(x->map_lib, 2);
    pprof_builder_mapping_flags(b, x->map_exe, PPROF_HAS_FUNCTIONS | PPROF_HAS_LINE_NUMBERS);
    x->f_main = pprof_builder_function(b, "main", "main", "demo.c", 10);
    x->f_work = pprof_builder_function(b, "ns::work(int)", "_ZN2ns4workEi", "demo.cc", 20);
    x->f_compute = pprof_builder_function(b, "compute", "compute", "demo.c", 30);
    x->f_leaf = pprof_builder_function(b, "leaf", "leaf", "demo.c", 40);
    /* Same arguments, same function. */
    assert_int_equal(pprof_builder_function(b, "main", "main", "demo.c", 10), x->f_main);
    assert_int_not_equal(pprof_builder_function(b, "main", "main", "other.c", 10), x->f_main);

    struct pprof_line lm = {x->f_main, 12};
    struct pprof_line lwc[2] = {{x->f_compute, 33}, {x->f_work, 25}}; /* inline first */
    struct pprof_line lw = {x->f_work, 27};
    struct pprof_line ll = {x->f_leaf, 41};
    x->l_main = pprof_builder_location(b, x->map_exe, 0x401000, &lm, 1);
    x->l_work_compute = pprof_builder_location(b, x->map_exe, 0x402000, lwc, 2);
    x->l_work = pprof_builder_location(b, x->map_exe, 0x402100, &lw, 1);
    x->l_leaf = pprof_builder_location(b, x->map_exe, 0x403000, &ll, 1);
    x->l_lib = pprof_builder_location(b, x->map_lib, 0x7f0000000abc, NULL, 0);
    assert_true(x->l_main && x->l_work_compute && x->l_work && x->l_leaf && x->l_lib);

    struct pprof_label labels[3] = {
        {.key = "thread", .str = "worker-1"},
        {.key = "thread_id", .num = 4242},
        {.key = "bytes", .num = 100, .num_unit = "bytes"},
    };
    uint64_t s1[] = {x->l_work_compute, x->l_main};
    int64_t v1[] = {6, 60000000};
    assert_int_equal(pprof_builder_sample(b, s1, 2, v1, labels, 3), 0);
    uint64_t s2[] = {x->l_leaf, x->l_work, x->l_work, x->l_main};
    int64_t v2[] = {3, 30000000};
    assert_int_equal(pprof_builder_sample(b, s2, 4, v2, labels, 2), 0);
    uint64_t s3[] = {x->l_lib, x->l_main};
    int64_t v3[] = {1, 10000000};
    assert_int_equal(pprof_builder_sample(b, s3, 2, v3, NULL, 0), 0);
}

static void encode(struct pprof_builder *b, uint8_t **buf, size_t *len, int gz)
{
    int rc = gz ? pprof_builder_encode(b, buf, len) : pprof_builder_encode_raw(b, buf, len);
    assert_int_equal(rc, 0);
    assert_non_null(*buf);
    assert_true(*len > 0);
}

static struct pprof_profile *decode_ok(const uint8_t *buf, size_t len)
{
    struct pprof_profile *p = NULL;
    char err[256];
    int rc = pprof_decode(buf, len, &p, err, sizeof err);
    if (rc != 0)
        fail_msg("decode failed: %s", err);
    return p;
}

/* Decodes, expects -EINVAL and a message containing want. */
static void decode_refused(const uint8_t *buf, size_t len, const char *want)
{
    struct pprof_profile *p = (struct pprof_profile *)0x1;
    char err[256] = "";
    int rc = pprof_decode(buf, len, &p, err, sizeof err);
    if (rc != -EINVAL)
        fail_msg("expected -EINVAL (%s), got %d: %s", want, rc, err);
    assert_null(p);
    if (!strstr(err, want))
        fail_msg("message '%s' does not mention '%s'", err, want);
}

/* ------------------------------------------------------------------ */
/* Round trip                                                          */

static void test_profile_survives_encode_and_decode(void **state)
{
    (void)state;
    struct fixture x;
    build_fixture(&x);
    for (int gz = 0; gz <= 1; gz++) {
        uint8_t *buf;
        size_t len;
        encode(x.b, &buf, &len, gz);
        if (gz)
            assert_true(buf[0] == 0x1f && buf[1] == 0x8b);
        struct pprof_profile *p = decode_ok(buf, len);
        const Perftools__Profiles__Profile *m = p->pb;

        assert_string_equal(pprof_string(p, 0), "");
        assert_int_equal(m->n_sample_type, 2);
        assert_string_equal(pprof_string(p, m->sample_type[1]->type), "cpu");
        assert_string_equal(pprof_string(p, m->sample_type[1]->unit), "nanoseconds");
        assert_string_equal(pprof_string(p, m->period_type->type), "cpu");
        assert_int_equal(m->period, 10000000);
        assert_int_equal(m->time_nanos, 1700000000000000000);
        assert_int_equal(m->duration_nanos, 2000000000);
        assert_int_equal(m->n_comment, 1);
        assert_string_equal(pprof_string(p, m->comment[0]), "made by test_pprof");
        assert_string_equal(pprof_string(p, m->default_sample_type), "cpu");

        /* strings are deduplicated */
        for (size_t i = 0; i < m->n_string_table; i++)
            for (size_t j = i + 1; j < m->n_string_table; j++)
                assert_string_not_equal(m->string_table[i], m->string_table[j]);

        assert_int_equal(m->n_mapping, 2);
        const Perftools__Profiles__Mapping *mp = pprof_mapping(p, x.map_lib);
        assert_non_null(mp);
        assert_int_equal(mp->memory_start, 0x7f0000000000);
        assert_int_equal(mp->memory_limit, 0x7f0000100000);
        assert_int_equal(mp->file_offset, 0x1000);
        assert_string_equal(pprof_string(p, mp->filename), "/usr/lib/libfoo.so");
        mp = pprof_mapping(p, x.map_exe);
        assert_string_equal(pprof_string(p, mp->build_id), "abcdef0123");
        assert_true(mp->has_functions && mp->has_line_numbers && !mp->has_filenames);

        assert_int_equal(m->n_function, 5);
        const Perftools__Profiles__Function *f = pprof_function(p, x.f_work);
        assert_string_equal(pprof_string(p, f->name), "ns::work(int)");
        assert_string_equal(pprof_string(p, f->system_name), "_ZN2ns4workEi");
        assert_string_equal(pprof_string(p, f->filename), "demo.cc");
        assert_int_equal(f->start_line, 20);

        const Perftools__Profiles__Location *l = pprof_location(p, x.l_work_compute);
        assert_int_equal(l->mapping_id, x.map_exe);
        assert_int_equal(l->address, 0x402000);
        assert_int_equal(l->n_line, 2);
        assert_int_equal(l->line[0]->function_id, x.f_compute);
        assert_int_equal(l->line[0]->line, 33);
        assert_int_equal(l->line[1]->function_id, x.f_work);
        assert_null(pprof_location(p, 999));
        assert_null(pprof_function(p, 0));

        assert_int_equal(m->n_sample, 3);
        const Perftools__Profiles__Sample *s = m->sample[1];
        assert_int_equal(s->n_location_id, 4);
        assert_int_equal(s->location_id[0], x.l_leaf);
        assert_int_equal(s->value[0], 3);
        assert_int_equal(s->value[1], 30000000);
        s = m->sample[0];
        assert_int_equal(s->n_label, 3);
        assert_string_equal(pprof_string(p, s->label[0]->key), "thread");
        assert_string_equal(pprof_string(p, s->label[0]->str), "worker-1");
        assert_string_equal(pprof_string(p, s->label[1]->key), "thread_id");
        assert_int_equal(s->label[1]->num, 4242);
        assert_int_equal(s->label[1]->str, 0);
        assert_string_equal(pprof_string(p, s->label[2]->num_unit), "bytes");
        assert_int_equal(m->sample[2]->n_label, 0);

        assert_int_equal(pprof_sample_index(p, NULL), 1);
        assert_int_equal(pprof_sample_index(p, "samples"), 0);
        assert_int_equal(pprof_sample_index(p, "cpu"), 1);
        assert_int_equal(pprof_sample_index(p, "0"), 0);
        assert_int_equal(pprof_sample_index(p, "wall"), -1);
        assert_int_equal(pprof_sample_index(p, "2"), -1);
        pprof_profile_free(p);
        free(buf);
    }
    pprof_builder_free(x.b);
    pprof_builder_free(NULL);
    pprof_profile_free(NULL);
}

static void test_builder_refuses_unknown_ids_and_late_sample_types(void **state)
{
    (void)state;
    struct pprof_builder *b = pprof_builder_new();
    uint64_t none = 7;
    int64_t v = 1;
    /* no sample types yet */
    assert_int_equal(pprof_builder_sample(b, NULL, 0, &v, NULL, 0), -EINVAL);
    uint8_t *buf;
    size_t len;
    assert_int_equal(pprof_builder_encode(b, &buf, &len), -EINVAL);
    assert_null(buf);
    pprof_builder_free(b);

    b = pprof_builder_new();
    pprof_builder_sample_type(b, "samples", "count");
    struct pprof_line bad = {42, 1};
    assert_int_equal(pprof_builder_location(b, 0, 0x1000, &bad, 1), 0);
    assert_int_equal(pprof_builder_location(b, 3, 0x1000, NULL, 0), 0);
    assert_int_equal(pprof_builder_sample(b, &none, 1, &v, NULL, 0), -EINVAL);
    assert_int_equal(pprof_builder_encode(b, &buf, &len), -EINVAL);
    pprof_builder_free(b);

    b = pprof_builder_new();
    pprof_builder_sample_type(b, "samples", "count");
    assert_int_equal(pprof_builder_sample(b, NULL, 0, &v, NULL, 0), 0);
    assert_int_equal(pprof_builder_sample_type(b, "cpu", "nanoseconds"), -EINVAL);
    pprof_builder_free(b);
}

/* ------------------------------------------------------------------ */
/* go tool pprof reads our files                                       */

static char *run(const char *cmd)
{
    FILE *f = popen(cmd, "r");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    size_t r;
    while ((r = fread(out + len, 1, cap - len - 1, f)) > 0) {
        len += r;
        if (len + 1 == cap)
            out = realloc(out, cap *= 2);
    }
    out[len] = '\0';
    int st = pclose(f);
    if (st != 0) {
        print_message("'%s' exited with status %d:\n%s\n", cmd, st, out);
        free(out);
        return NULL;
    }
    return out;
}

static void test_go_tool_pprof_reads_what_we_write(void **state)
{
    (void)state;
    char *go = run("command -v go 2>/dev/null || ls /usr/lib/go/bin/go 2>/dev/null");
    if (!go || !go[0])
        fail_msg("go is not installed (apt-get install golang-go): cannot check that "
                 "go tool pprof reads sonde's files");
    go[strcspn(go, "\n")] = '\0';

    struct fixture x;
    build_fixture(&x);
    uint8_t *buf;
    size_t len;
    encode(x.b, &buf, &len, 1);
    char path[] = "/tmp/test_pprof_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    close(fd);

    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "HOME=${HOME:-/tmp} %s tool pprof -symbolize=none -top %s 2>&1", go, path);
    char *out = run(cmd);
    assert_non_null(out);
    /* cpu is the default type: 60ms + 30ms + 10ms */
    assert_non_null(strstr(out, "Type: cpu"));
    assert_non_null(strstr(out, "100ms total"));
    assert_non_null(strstr(out, "compute"));
    assert_non_null(strstr(out, "ns::work(int)"));
    assert_non_null(strstr(out, "leaf"));
    assert_non_null(strstr(out, "main"));
    free(out);

    snprintf(cmd, sizeof cmd, "HOME=${HOME:-/tmp} %s tool pprof -symbolize=none -raw %s 2>&1",
             go, path);
    out = run(cmd);
    assert_non_null(out);
    assert_non_null(strstr(out, "samples/count cpu/nanoseconds"));
    assert_non_null(strstr(out, "thread:[worker-1]"));
    assert_non_null(strstr(out, "/usr/lib/libfoo.so"));
    free(out);

    unlink(path);
    free(buf);
    free(go);
    pprof_builder_free(x.b);
}

/* ------------------------------------------------------------------ */
/* Summaries                                                           */

static const struct pprof_top_row *row(const struct pprof_top *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->rows[i].name, name))
            return &t->rows[i];
    fail_msg("no row '%s'", name);
    return NULL;
}

static void test_top_counts_self_and_total_once_per_sample(void **state)
{
    (void)state;
    struct fixture x;
    build_fixture(&x);
    uint8_t *buf;
    size_t len;
    encode(x.b, &buf, &len, 1);
    struct pprof_profile *p = decode_ok(buf, len);
    struct pprof_top *t;
    assert_int_equal(pprof_top_compute(p, 1, &t), 0);
    assert_string_equal(t->type, "cpu");
    assert_string_equal(t->unit, "nanoseconds");
    assert_int_equal(t->total, 100000000);
    assert_int_equal(t->n, 5);
    /* leaf frames: compute 60ms (inlined into work), leaf 30ms, libfoo 10ms */
    assert_string_equal(t->rows[0].name, "compute");
    assert_int_equal(t->rows[0].flat, 60000000);
    assert_string_equal(t->rows[1].name, "leaf");
    assert_int_equal(row(t, "libfoo.so+0x1abc")->flat, 10000000);
    assert_int_equal(row(t, "main")->flat, 0);
    assert_int_equal(row(t, "main")->cum, 100000000);
    /* work: 60ms as the inline caller + 30ms once, despite recursion */
    assert_int_equal(row(t, "ns::work(int)")->cum, 90000000);
    assert_int_equal(row(t, "ns::work(int)")->flat, 0);
    pprof_top_free(t);

    assert_int_equal(pprof_top_compute(p, 0, &t), 0);
    assert_int_equal(t->total, 10);
    assert_int_equal(row(t, "compute")->flat, 6);
    pprof_top_free(t);
    assert_int_equal(pprof_top_compute(p, 2, &t), -EINVAL);
    assert_int_equal(pprof_top_compute(p, -1, &t), -EINVAL);

    pprof_profile_free(p);
    free(buf);
    pprof_builder_free(x.b);
}

static void test_collapsed_stacks_are_root_first_merged_and_sorted(void **state)
{
    (void)state;
    struct fixture x;
    build_fixture(&x);
    /* One more sample on an existing stack: merged. */
    uint64_t s[] = {x.l_lib, x.l_main};
    int64_t v[] = {2, 20000000};
    assert_int_equal(pprof_builder_sample(x.b, s, 2, v, NULL, 0), 0);
    uint8_t *buf;
    size_t len;
    encode(x.b, &buf, &len, 1);
    struct pprof_profile *p = decode_ok(buf, len);
    struct pprof_collapsed *c;
    assert_int_equal(pprof_collapse(p, 0, &c), 0);
    assert_int_equal(c->n, 3);
    assert_string_equal(c->lines[0].stack, "main;libfoo.so+0x1abc");
    assert_int_equal(c->lines[0].value, 3);
    assert_string_equal(c->lines[1].stack, "main;ns::work(int);compute");
    assert_int_equal(c->lines[1].value, 6);
    assert_string_equal(c->lines[2].stack, "main;ns::work(int);ns::work(int);leaf");
    assert_int_equal(c->lines[2].value, 3);

    char *text = NULL;
    size_t tlen = 0;
    FILE *f = open_memstream(&text, &tlen);
    assert_int_equal(pprof_collapsed_write(c, f), 0);
    fclose(f);
    assert_string_equal(text, "main;libfoo.so+0x1abc 3\n"
                              "main;ns::work(int);compute 6\n"
                              "main;ns::work(int);ns::work(int);leaf 3\n");
    free(text);
    pprof_collapsed_free(c);
    assert_int_equal(pprof_collapse(p, 5, &c), -EINVAL);
    pprof_profile_free(p);
    free(buf);
    pprof_builder_free(x.b);

    /* The accumulator on its own: sanitized names, zero lines dropped. */
    c = pprof_collapsed_new();
    const char *a[] = {"root", "we;ird\nname", ""};
    const char *b2[] = {"root", "gone"};
    assert_int_equal(pprof_collapsed_add(c, a, 3, 5), 0);
    assert_int_equal(pprof_collapsed_add(c, b2, 2, 0), 0);
    pprof_collapsed_finish(c);
    assert_int_equal(c->n, 1);
    assert_string_equal(c->lines[0].stack, "root;we_ird_name;?");
    assert_int_equal(pprof_collapsed_add(c, a, 3, 5), -EINVAL);
    pprof_collapsed_free(c);
    pprof_collapsed_free(NULL);
}

/* Thousands of names, functions, locations and stacks: far past the first
 * table sizes, so every lookup table grows (and rehashes) many times and
 * must still merge equal keys and keep distinct ones apart. */
static void test_large_profiles_merge_equal_names_and_keep_distinct_ones(void **state)
{
    (void)state;
    enum { N = 3000 };
    struct pprof_builder *b = pprof_builder_new();
    assert_non_null(b);
    assert_int_equal(pprof_builder_sample_type(b, "samples", "count"), 0);
    uint64_t map = pprof_builder_mapping(b, 0x400000, 0x800000, 0, "/usr/bin/big", "");
    struct pprof_line lroot = {pprof_builder_function(b, "root", NULL, NULL, 0), 1};
    uint64_t l_root = pprof_builder_location(b, map, 0x400000, &lroot, 1);
    static uint64_t fids[N];
    char name[64];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "fn_%d", i);
        int64_t s = pprof_builder_string(b, name);
        assert_true(s > 0);
        assert_int_equal(pprof_builder_string(b, name), s); /* interned once */
        fids[i] = pprof_builder_function(b, name, name, "big.c", i);
        assert_int_equal(fids[i], (uint64_t)i + 2);
    }
    for (int i = 0; i < N; i++) { /* the same functions again: same ids */
        snprintf(name, sizeof name, "fn_%d", i);
        assert_int_equal(pprof_builder_function(b, name, name, "big.c", i), fids[i]);
    }
    /* Sample i: root -> fn_i, value i + 1, and twice for even i (merged). */
    for (int i = 0; i < N; i++) {
        struct pprof_line l = {fids[i], 10};
        uint64_t loc = pprof_builder_location(b, map, 0x401000 + (uint64_t)i, &l, 1);
        assert_true(loc > 0);
        uint64_t st[] = {loc, l_root};
        int64_t v = i + 1;
        assert_int_equal(pprof_builder_sample(b, st, 2, &v, NULL, 0), 0);
        if (i % 2 == 0)
            assert_int_equal(pprof_builder_sample(b, st, 2, &v, NULL, 0), 0);
    }
    uint8_t *buf;
    size_t len;
    encode(b, &buf, &len, 1);
    pprof_builder_free(b);
    struct pprof_profile *p = decode_ok(buf, len);
    assert_int_equal(p->pb->n_function, N + 1);
    assert_int_equal(p->pb->n_location, N + 1);
    assert_non_null(pprof_location(p, N + 1));
    assert_null(pprof_location(p, N + 2));
    assert_string_equal(pprof_string(p, pprof_function(p, fids[N - 1])->name), "fn_2999");

    struct pprof_top *t;
    assert_int_equal(pprof_top_compute(p, 0, &t), 0);
    assert_int_equal(t->n, N + 1);
    assert_string_equal(t->rows[0].name, "fn_2998"); /* largest flat first */
    assert_string_equal(t->rows[N].name, "root");    /* no flat at all: last */
    assert_int_equal(row(t, "root")->cum, t->total);
    assert_int_equal(row(t, "fn_2998")->flat, 2 * 2999);
    assert_int_equal(row(t, "fn_2999")->flat, 3000);
    pprof_top_free(t);

    struct pprof_collapsed *c;
    assert_int_equal(pprof_collapse(p, 0, &c), 0);
    assert_int_equal(c->n, N);
    for (size_t i = 1; i < c->n; i++)
        assert_true(strcmp(c->lines[i - 1].stack, c->lines[i].stack) < 0);
    assert_string_equal(c->lines[0].stack, "root;fn_0");
    assert_int_equal(c->lines[0].value, 2);
    pprof_collapsed_free(c);
    pprof_profile_free(p);
    free(buf);

    /* An accumulator dropped before finish frees its stacks too (ASan). */
    c = pprof_collapsed_new();
    assert_non_null(c);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "fn_%d", i % 1000);
        const char *frames[] = {"root", name};
        assert_int_equal(pprof_collapsed_add(c, frames, 2, 1), 0);
    }
    assert_int_equal(c->n, 1000);
    assert_int_equal(c->lines[999].value, 3);
    pprof_collapsed_free(c);
}

static void test_values_are_formatted_like_go_pprof(void **state)
{
    (void)state;
    char buf[64];
    pprof_format_value(1500000000, "nanoseconds", buf, sizeof buf);
    assert_string_equal(buf, "1.50s");
    pprof_format_value(10000000, "nanoseconds", buf, sizeof buf);
    assert_string_equal(buf, "10ms");
    pprof_format_value(250000, "nanoseconds", buf, sizeof buf);
    assert_string_equal(buf, "250us");
    pprof_format_value(12, "nanoseconds", buf, sizeof buf);
    assert_string_equal(buf, "12ns");
    pprof_format_value(0, "nanoseconds", buf, sizeof buf);
    assert_string_equal(buf, "0");
    pprof_format_value(42, "count", buf, sizeof buf);
    assert_string_equal(buf, "42");
    pprof_format_value(3 << 20, "bytes", buf, sizeof buf);
    assert_string_equal(buf, "3MB");
}

/* ------------------------------------------------------------------ */
/* Corrupt input                                                       */

/* The fixture as a protobuf-c message to damage; repack after. */
static Perftools__Profiles__Profile *fixture_message(uint8_t **raw)
{
    struct fixture x;
    build_fixture(&x);
    size_t len;
    encode(x.b, raw, &len, 0);
    pprof_builder_free(x.b);
    Perftools__Profiles__Profile *m = perftools__profiles__profile__unpack(NULL, len, *raw);
    assert_non_null(m);
    return m;
}

static void refuse_message(Perftools__Profiles__Profile *m, const char *want)
{
    size_t len = perftools__profiles__profile__get_packed_size(m);
    uint8_t *buf = malloc(len + 1);
    perftools__profiles__profile__pack(m, buf);
    decode_refused(buf, len, want);
    free(buf);
}

static void test_bad_references_are_refused_with_their_name(void **state)
{
    (void)state;
    uint8_t *raw;
    Perftools__Profiles__Profile *m = fixture_message(&raw);
    int64_t saved;
    uint64_t usaved;

    saved = m->function[1]->name;
    m->function[1]->name = 1000;
    refuse_message(m, "function 2: name string index 1000 out of range");
    m->function[1]->name = saved;

    saved = m->sample[0]->label[0]->str;
    m->sample[0]->label[0]->str = -3;
    refuse_message(m, "label str string index -3");
    m->sample[0]->label[0]->str = saved;

    saved = m->sample_type[0]->unit;
    m->sample_type[0]->unit = (int64_t)m->n_string_table;
    refuse_message(m, "sample_type 0: unit string index");
    m->sample_type[0]->unit = saved;

    usaved = m->location[1]->line[0]->function_id;
    m->location[1]->line[0]->function_id = 77;
    refuse_message(m, "location 2 line 0 references missing function 77");
    m->location[1]->line[0]->function_id = usaved;

    usaved = m->location[0]->mapping_id;
    m->location[0]->mapping_id = 9;
    refuse_message(m, "references missing mapping 9");
    m->location[0]->mapping_id = usaved;

    usaved = m->sample[1]->location_id[2];
    m->sample[1]->location_id[2] = 0;
    refuse_message(m, "sample 1 references missing location 0");
    m->sample[1]->location_id[2] = usaved;

    m->sample[2]->n_value = 1;
    refuse_message(m, "sample 2 has 1 values but the profile has 2 sample types");
    m->sample[2]->n_value = 2;

    usaved = m->function[2]->id;
    m->function[2]->id = m->function[0]->id;
    refuse_message(m, "duplicate function id 1");
    m->function[2]->id = usaved;

    usaved = m->mapping[0]->id;
    m->mapping[0]->id = 0;
    refuse_message(m, "mapping #0 has id 0");
    m->mapping[0]->id = usaved;

    char *s0 = m->string_table[0];
    m->string_table[0] = "x";
    refuse_message(m, "string_table[0]");
    m->string_table[0] = s0;

    /* Unchanged again: accepted. */
    size_t len = perftools__profiles__profile__get_packed_size(m);
    uint8_t *buf = malloc(len);
    perftools__profiles__profile__pack(m, buf);
    struct pprof_profile *p = decode_ok(buf, len);
    pprof_profile_free(p);
    free(buf);

    perftools__profiles__profile__free_unpacked(m, NULL);
    free(raw);
}

static void test_truncated_and_garbage_input_is_refused(void **state)
{
    (void)state;
    struct fixture x;
    build_fixture(&x);
    uint8_t *gz, *raw;
    size_t gzlen, rawlen;
    encode(x.b, &gz, &gzlen, 1);
    encode(x.b, &raw, &rawlen, 0);
    pprof_builder_free(x.b);

    decode_refused(gz, gzlen / 2, "truncated gzip");
    decode_refused(gz, 2, "truncated gzip");
    decode_refused((const uint8_t *)"", 0, "empty input");
    decode_refused(raw, rawlen - 1, "not a valid profile");
    uint8_t *copy = malloc(gzlen + 5);
    memcpy(copy, gz, gzlen);
    memcpy(copy + gzlen, "junk!", 5);
    decode_refused(copy, gzlen + 5, "trailing garbage");
    memcpy(copy, gz, gzlen);
    copy[gzlen / 2] ^= 0xff;
    copy[gzlen / 2 + 1] ^= 0x5a;
    {
        struct pprof_profile *p = NULL;
        char err[256];
        int rc = pprof_decode(copy, gzlen, &p, err, sizeof err);
        assert_int_equal(rc, -EINVAL); /* corrupt data or a bad checksum */
        assert_null(p);
    }
    free(copy);

    /* Every single-byte change and every prefix of the raw message: never a
     * crash, either a valid profile or -EINVAL. */
    copy = malloc(rawlen);
    for (size_t i = 0; i < rawlen; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(copy, raw, rawlen);
            copy[i] ^= (uint8_t)(1u << bit);
            struct pprof_profile *p = NULL;
            char err[256];
            int rc = pprof_decode(copy, rawlen, &p, err, sizeof err);
            assert_true(rc == 0 || rc == -EINVAL);
            if (rc == 0) { /* what passed must be safe to summarize */
                struct pprof_top *t;
                struct pprof_collapsed *c;
                for (size_t si = 0; si < p->pb->n_sample_type; si++) {
                    assert_int_equal(pprof_top_compute(p, (int)si, &t), 0);
                    pprof_top_free(t);
                    assert_int_equal(pprof_collapse(p, (int)si, &c), 0);
                    pprof_collapsed_free(c);
                }
            }
            pprof_profile_free(p);
        }
        struct pprof_profile *p = NULL;
        char err[256];
        int rc = pprof_decode(raw, i, &p, err, sizeof err);
        assert_true(rc == 0 || rc == -EINVAL);
        pprof_profile_free(p);
    }
    free(copy);
    free(gz);
    free(raw);
}

static void test_huge_declared_sizes_are_refused(void **state)
{
    (void)state;
    /* field 2 (sample), length-delimited, length 2^62: far past the end */
    const uint8_t huge_len[] = {0x12, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 0x08};
    decode_refused(huge_len, sizeof huge_len, "not a valid profile");
    /* field 1 (sample_type) of length 0xffffffff */
    const uint8_t len32[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00};
    decode_refused(len32, sizeof len32, "not a valid profile");
    /* a varint longer than 10 bytes */
    const uint8_t longvarint[] = {0x48, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                  0xff, 0xff, 0xff, 0xff, 0x01};
    decode_refused(longvarint, sizeof longvarint, "not a valid profile");

    /* A gzip header that claims a small size but inflates past the limit:
     * 257 MiB of zeros compress to ~256 KiB. */
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = 2 << 20;
    uint8_t *out = malloc(cap);
    static uint8_t zeros[1 << 20];
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    for (int i = 0; i < 257; i++) {
        zs.next_in = zeros;
        zs.avail_in = sizeof zeros;
        assert_int_equal(deflate(&zs, i == 256 ? Z_FINISH : Z_NO_FLUSH), i == 256 ? Z_STREAM_END : Z_OK);
    }
    size_t n = zs.total_out;
    deflateEnd(&zs);
    decode_refused(out, n, "larger than 256 MiB once decompressed");
    free(out);
}

static void test_extreme_values_saturate_instead_of_overflowing(void **state)
{
    (void)state;
    struct pprof_builder *b = pprof_builder_new();
    pprof_builder_sample_type(b, "cpu", "nanoseconds");
    uint64_t f = pprof_builder_function(b, "hot", NULL, NULL, 0);
    struct pprof_line ln = {f, 0};
    uint64_t loc = pprof_builder_location(b, 0, 0x1000, &ln, 1);
    int64_t vals[] = {INT64_MAX, INT64_MAX, INT64_MIN, INT64_MIN};
    for (int i = 0; i < 4; i++)
        assert_int_equal(pprof_builder_sample(b, &loc, 1, &vals[i], NULL, 0), 0);
    uint8_t *buf;
    size_t len;
    encode(b, &buf, &len, 1);
    pprof_builder_free(b);
    struct pprof_profile *p = decode_ok(buf, len);
    struct pprof_top *t;
    assert_int_equal(pprof_top_compute(p, 0, &t), 0);
    assert_int_equal(t->total, INT64_MAX);
    assert_int_equal(t->n, 1);
    char out[64];
    pprof_format_scaled(t->rows[0].flat, t->unit, t->min_value, out, sizeof out);
    pprof_format_value(INT64_MIN, "bytes", out, sizeof out);
    pprof_top_free(t);
    struct pprof_collapsed *c;
    assert_int_equal(pprof_collapse(p, 0, &c), 0);
    assert_int_equal(c->n, 1);
    pprof_collapsed_free(c);
    pprof_profile_free(p);
    free(buf);
}

static void test_load_file_names_the_file(void **state)
{
    (void)state;
    struct pprof_profile *p = NULL;
    char err[256];
    assert_int_equal(pprof_load_file("/nonexistent/x.pb.gz", &p, err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/x.pb.gz"));
    char path[] = "/tmp/test_pprof_bad_XXXXXX";
    int fd = mkstemp(path);
    assert_int_equal(write(fd, "\x1f\x8b\x08", 3), 3);
    close(fd);
    assert_int_equal(pprof_load_file(path, &p, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "truncated gzip"));
    unlink(path);
}

/* The CLI on top of these: sonde top / sonde collapse (when built). */
static void test_cli_top_and_collapse_print_the_profile(void **state)
{
    (void)state;
    char sonde[256];
    snprintf(sonde, sizeof sonde, "%s/sonde", SONDE_BUILD_DIR);
    if (access(sonde, X_OK) != 0) {
        print_message("%s not built: skipping the CLI checks\n", sonde);
        skip();
    }
    struct fixture x;
    build_fixture(&x);
    uint8_t *buf;
    size_t len;
    encode(x.b, &buf, &len, 1);
    pprof_builder_free(x.b);
    char path[] = "/tmp/test_pprof_cli_XXXXXX";
    int fd = mkstemp(path);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    close(fd);
    free(buf);

    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s top -n 2 %s", sonde, path);
    char *out = run(cmd);
    assert_non_null(out);
    assert_non_null(strstr(out, "Type: cpu\n"));
    assert_non_null(strstr(out, "Showing nodes accounting for 90ms, 90.00% of 100ms total\n"));
    assert_non_null(strstr(out, "Showing top 2 nodes out of 5\n"));
    assert_non_null(strstr(out, "      flat  flat%   sum%        cum   cum%\n"
                                "      60ms 60.00% 60.00%       60ms 60.00%  compute\n"
                                "      30ms 30.00% 90.00%       30ms 30.00%  leaf\n"));
    free(out);

    snprintf(cmd, sizeof cmd, "%s collapse --sample-index samples %s", sonde, path);
    out = run(cmd);
    assert_non_null(out);
    assert_string_equal(out, "main;libfoo.so+0x1abc 1\n"
                             "main;ns::work(int);compute 6\n"
                             "main;ns::work(int);ns::work(int);leaf 3\n");
    free(out);

    /* exit status: 2 for usage, 1 for a bad file */
    snprintf(cmd, sizeof cmd, "%s top --bogus %s 2>/dev/null", sonde, path);
    assert_int_equal(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s top --sample-index wall %s 2>/dev/null", sonde, path);
    assert_int_equal(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s collapse /nonexistent.pb.gz 2>/dev/null", sonde);
    assert_int_equal(WEXITSTATUS(system(cmd)), 1);
    assert_int_equal(truncate(path, 20), 0);
    snprintf(cmd, sizeof cmd, "%s top %s 2>&1", sonde, path);
    FILE *f = popen(cmd, "r");
    char msg[512] = "";
    size_t r = fread(msg, 1, sizeof msg - 1, f);
    msg[r] = '\0';
    assert_int_equal(WEXITSTATUS(pclose(f)), 1);
    assert_non_null(strstr(msg, "sonde top: "));
    assert_non_null(strstr(msg, "truncated gzip"));
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_profile_survives_encode_and_decode),
        cmocka_unit_test(test_builder_refuses_unknown_ids_and_late_sample_types),
        cmocka_unit_test(test_go_tool_pprof_reads_what_we_write),
        cmocka_unit_test(test_top_counts_self_and_total_once_per_sample),
        cmocka_unit_test(test_collapsed_stacks_are_root_first_merged_and_sorted),
        cmocka_unit_test(test_large_profiles_merge_equal_names_and_keep_distinct_ones),
        cmocka_unit_test(test_values_are_formatted_like_go_pprof),
        cmocka_unit_test(test_bad_references_are_refused_with_their_name),
        cmocka_unit_test(test_truncated_and_garbage_input_is_refused),
        cmocka_unit_test(test_huge_declared_sizes_are_refused),
        cmocka_unit_test(test_extreme_values_saturate_instead_of_overflowing),
        cmocka_unit_test(test_load_file_names_the_file),
        cmocka_unit_test(test_cli_top_and_collapse_print_the_profile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

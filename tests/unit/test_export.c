/*
 * test_export.c — export_write (src/agent/export.c): a stack table of this
 * process's own code becomes a pprof file with the right sample types,
 * labels, mappings, symbolized functions with file:line and named
 * unsymbolized frames, which go tool pprof reads; samples taken in a span
 * labelled with its trace id and interface; or a collapsed-stacks file;
 * written atomically, with clear errors; or the same pprof in memory.
 *
 * Uses the real module list (modules_init) and the real stack table.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/pprof.h"
#include "export.h"
#include "modules.h"
#include "sonde.h"
#include "span.h"
#include "stacktab.h"

__attribute__((noinline)) int export_leaf_fn(volatile int *p)
{
    int s = 0;
    for (int i = 0; i < *p; i++)
        s += i ^ *p;
    return s;
}

__attribute__((noinline)) int export_caller_fn(volatile int *p)
{
    return export_leaf_fn(p) + 1;
}

static char dir[64];
static char path_pb[128], path_txt[128];

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/test_export_XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path_pb, sizeof path_pb, "%s/out.pb.gz", dir);
    snprintf(path_txt, sizeof path_txt, "%s/out.txt", dir);
    return modules_init();
}

static int teardown(void **state)
{
    (void)state;
    unlink(path_pb);
    unlink(path_txt);
    rmdir(dir);
    modules_shutdown();
    return 0;
}

static const char *thread_name(uint32_t tid, void *arg)
{
    (void)arg;
    return tid == 101 ? "worker" : "";
}

/* leaf pc inside export_leaf_fn, return address into export_caller_fn
 * (export looks it up as addr - 1), and a pc in no module. */
static uintptr_t leaf_pc(void)
{
    return (uintptr_t)&export_leaf_fn + 4;
}
static uintptr_t caller_ret(void)
{
    return (uintptr_t)&export_caller_fn + 5;
}

static struct stack_table *fill_table(void)
{
    struct stack_table *t = stacktab_new(64, 16);
    assert_non_null(t);
    uintptr_t s1[] = {leaf_pc(), caller_ret()};
    assert_int_equal(stacktab_add(t, SONDE_PROFILE_CPU, 0, 101, 0, s1, 2, 3, 30000000), 0);
    uintptr_t s2[] = {0x10, caller_ret()};
    assert_int_equal(stacktab_add(t, SONDE_PROFILE_CPU, 0, 102, 0, s2, 2, 1, 10000000), 0);
    assert_int_equal(stacktab_add(t, SONDE_PROFILE_WALL, 'S', 101, 0, s1, 2, 5, 50000000), 0);
    assert_int_equal(stacktab_add(t, SONDE_PROFILE_WALL, 'R', 101, 0, s1, 2, 2, 20000000), 0);
    return t;
}

static const Perftools__Profiles__Label *label(const struct pprof_profile *p,
                                               const Perftools__Profiles__Sample *s,
                                               const char *key)
{
    for (size_t i = 0; i < s->n_label; i++)
        if (!strcmp(pprof_string(p, s->label[i]->key), key))
            return s->label[i];
    return NULL;
}

static void only_files_left(const char *a, const char *b)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        if ((!a || strcmp(de->d_name, a)) && (!b || strcmp(de->d_name, b)))
            fail_msg("unexpected file %s left in %s", de->d_name, dir);
    }
    closedir(d);
}

static void test_pprof_export_has_types_labels_and_symbols(void **state)
{
    (void)state;
    volatile int n = 3;
    assert_int_equal(export_caller_fn(&n), 1 + (0 ^ 3) + (1 ^ 3) + (2 ^ 3));
    struct stack_table *t = fill_table();
    struct export_request req = {
        .tab = t,
        .types = SONDE_PROFILE_CPU | SONDE_PROFILE_WALL,
        .period_ns = 10000000,
        .time_nanos = 1700000000000000000,
        .duration_nanos = 5000000000,
        .thread_name = thread_name,
    };
    char err[256];
    int rc = export_write(&req, SONDE_FORMAT_PPROF, path_pb, err, sizeof err);
    if (rc != 0)
        fail_msg("export_write: %s", err);
    only_files_left("out.pb.gz", NULL);

    struct pprof_profile *p;
    if (pprof_load_file(path_pb, &p, err, sizeof err) != 0)
        fail_msg("%s", err);
    const Perftools__Profiles__Profile *m = p->pb;
    assert_int_equal(m->n_sample_type, 3);
    assert_string_equal(pprof_string(p, m->sample_type[0]->type), "samples");
    assert_string_equal(pprof_string(p, m->sample_type[0]->unit), "count");
    assert_string_equal(pprof_string(p, m->sample_type[1]->type), "cpu");
    assert_string_equal(pprof_string(p, m->sample_type[2]->type), "wall");
    assert_string_equal(pprof_string(p, m->sample_type[2]->unit), "nanoseconds");
    assert_string_equal(pprof_string(p, m->period_type->type), "cpu");
    assert_int_equal(m->period, 10000000);
    assert_int_equal(m->time_nanos, 1700000000000000000);
    assert_int_equal(m->duration_nanos, 5000000000);
    assert_int_equal(m->n_sample, 4);
    assert_int_equal(pprof_sample_index(p, NULL), 1); /* cpu by default */

    int seen_leaf = 0, seen_unknown = 0, seen_sleeping = 0;
    for (size_t i = 0; i < m->n_sample; i++) {
        const Perftools__Profiles__Sample *s = m->sample[i];
        const Perftools__Profiles__Label *tid = label(p, s, "thread_id");
        assert_non_null(tid);
        const Perftools__Profiles__Location *leaf = pprof_location(p, s->location_id[0]);
        const Perftools__Profiles__Location *caller = pprof_location(p, s->location_id[1]);
        assert_int_equal(caller->address, caller_ret() - 1);
        const Perftools__Profiles__Function *cf = pprof_function(p, caller->line[caller->n_line - 1]->function_id);
        assert_string_equal(pprof_string(p, cf->name), "export_caller_fn");
        if (tid->num == 102) { /* the pc in no module */
            assert_int_equal(leaf->mapping_id, 0);
            const Perftools__Profiles__Function *f = pprof_function(p, leaf->line[0]->function_id);
            assert_string_equal(pprof_string(p, f->name), "0x10");
            assert_null(label(p, s, "thread"));
            assert_int_equal(s->value[1], 10000000);
            seen_unknown = 1;
            continue;
        }
        assert_string_equal(pprof_string(p, label(p, s, "thread")->str), "worker");
        assert_int_equal(leaf->address, leaf_pc());
        assert_int_not_equal(leaf->mapping_id, 0);
        const Perftools__Profiles__Function *f = pprof_function(p, leaf->line[0]->function_id);
        assert_string_equal(pprof_string(p, f->name), "export_leaf_fn");
        const char *file = pprof_string(p, f->filename);
        assert_non_null(strstr(file, "test_export.c"));
        assert_true(leaf->line[0]->line > 0);
        const Perftools__Profiles__Mapping *mp = pprof_mapping(p, leaf->mapping_id);
        assert_true(mp->has_functions && mp->has_filenames && mp->has_line_numbers);
        assert_true(mp->memory_start <= leaf_pc() && leaf_pc() < mp->memory_limit);
        assert_true(strlen(pprof_string(p, mp->build_id)) >= 16);
        const Perftools__Profiles__Label *st = label(p, s, "state");
        if (s->value[1] != 0) { /* cpu sample */
            assert_int_equal(s->value[0], 3);
            assert_int_equal(s->value[1], 30000000);
            assert_int_equal(s->value[2], 0);
            assert_null(st);
            seen_leaf = 1;
        } else {
            assert_non_null(st);
            const char *sn = pprof_string(p, st->str);
            if (!strcmp(sn, "sleeping")) {
                assert_int_equal(s->value[0], 5);
                assert_int_equal(s->value[2], 50000000);
                seen_sleeping = 1;
            } else {
                assert_string_equal(sn, "running");
                assert_int_equal(s->value[2], 20000000);
            }
        }
    }
    assert_true(seen_leaf && seen_unknown && seen_sleeping);

    struct pprof_top *top;
    assert_int_equal(pprof_top_compute(p, 1, &top), 0);
    assert_string_equal(top->rows[0].name, "export_leaf_fn");
    assert_int_equal(top->rows[0].flat, 30000000);
    assert_int_equal(top->total, 40000000);
    pprof_top_free(top);
    pprof_profile_free(p);

    /* go tool pprof reads it, when go is there (test_pprof insists). */
    if (system("command -v go >/dev/null 2>&1") == 0) {
        char cmd[512];
        snprintf(cmd, sizeof cmd,
                 "HOME=${HOME:-/tmp} go tool pprof -symbolize=none -top %s 2>&1", path_pb);
        FILE *f = popen(cmd, "r");
        char out[8192] = "";
        size_t r = fread(out, 1, sizeof out - 1, f);
        out[r] = '\0';
        assert_int_equal(pclose(f), 0);
        if (!strstr(out, "export_leaf_fn") || !strstr(out, "40ms total"))
            fail_msg("go tool pprof -top output:\n%s", out);
    }
    stacktab_free(t);
}

static void test_collapsed_export_is_root_first_sorted_samples(void **state)
{
    (void)state;
    struct stack_table *t = fill_table();
    struct export_request req = {
        .tab = t, .types = SONDE_PROFILE_WALL, .period_ns = 10000000, .thread_name = thread_name};
    char err[256];
    int rc = export_write(&req, SONDE_FORMAT_COLLAPSED, path_txt, err, sizeof err);
    if (rc != 0)
        fail_msg("export_write: %s", err);
    FILE *f = fopen(path_txt, "r");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    /* wall only: 5 sleeping + 2 running samples on one stack, merged */
    assert_string_equal(buf, "export_caller_fn;export_leaf_fn 7\n");

    req.types = SONDE_PROFILE_CPU | SONDE_PROFILE_WALL; /* both: CPU samples only */
    rc = export_write(&req, SONDE_FORMAT_COLLAPSED, path_txt, err, sizeof err);
    assert_int_equal(rc, 0);
    f = fopen(path_txt, "r");
    n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    assert_string_equal(buf, "export_caller_fn;0x10 1\n"
                             "export_caller_fn;export_leaf_fn 3\n");
    only_files_left("out.txt", "out.pb.gz");
    stacktab_free(t);
}

static void test_export_errors_name_the_problem(void **state)
{
    (void)state;
    struct stack_table *t = fill_table();
    struct export_request req = {.tab = t, .types = SONDE_PROFILE_CPU, .period_ns = 1};
    char err[256];
    int rc = export_write(&req, SONDE_FORMAT_PPROF, "/nonexistent-dir/x.pb.gz", err, sizeof err);
    assert_int_equal(rc, -ENOENT);
    assert_non_null(strstr(err, "/nonexistent-dir/x.pb.gz"));
    rc = export_write(&req, 7, path_pb, err, sizeof err);
    assert_int_equal(rc, -EINVAL);
    assert_non_null(strstr(err, "format"));
    rc = export_write(&req, SONDE_FORMAT_PPROF, "", err, sizeof err);
    assert_int_equal(rc, -EINVAL);
    stacktab_free(t);
}

/* Three CPU stacks on one thread: two spans on the same stack, and the
 * same stack outside any span. */
static struct stack_table *fill_span_table(struct span_map **spans)
{
    struct span_map *m = span_map_new(16);
    assert_non_null(m);
    uint32_t a = span_map_add(m, 0x10001, "GET /checkout", "4bf92f3577b34da6a3ce929d0e0e4736");
    uint32_t b = span_map_add(m, 0x20001, "POST /cart", "00f067aa0ba902b7aaaaaaaaaaaaaaaa");
    assert_int_equal(a, 1);
    assert_int_equal(b, 2);
    struct stack_table *t = stacktab_new(64, 16);
    assert_non_null(t);
    uintptr_t s1[] = {leaf_pc(), caller_ret()};
    assert_int_equal(stacktab_add(t, SONDE_PROFILE_CPU, 0, 101, a, s1, 2, 3, 30000000), 0);
    assert_int_equal(stacktab_add(t, SONDE_PROFILE_CPU, 0, 101, b, s1, 2, 2, 20000000), 0);
    assert_int_equal(stacktab_add(t, SONDE_PROFILE_CPU, 0, 101, 0, s1, 2, 1, 10000000), 0);
    /* an index the map does not have: no span labels, no failure */
    assert_int_equal(stacktab_add(t, SONDE_PROFILE_CPU, 0, 102, 9, s1, 2, 1, 10000000), 0);
    *spans = m;
    return t;
}

static void test_pprof_samples_in_a_span_carry_trace_id_and_interface(void **state)
{
    (void)state;
    struct span_map *spans;
    struct stack_table *t = fill_span_table(&spans);
    struct export_request req = {
        .tab = t, .types = SONDE_PROFILE_CPU, .period_ns = 10000000, .thread_name = thread_name,
        .spans = spans};
    char err[256];
    if (export_write(&req, SONDE_FORMAT_PPROF, path_pb, err, sizeof err) != 0)
        fail_msg("export_write: %s", err);
    struct pprof_profile *p;
    if (pprof_load_file(path_pb, &p, err, sizeof err) != 0)
        fail_msg("%s", err);
    const Perftools__Profiles__Profile *m = p->pb;
    assert_int_equal(m->n_sample, 4);
    int seen = 0;
    for (size_t i = 0; i < m->n_sample; i++) {
        const Perftools__Profiles__Sample *s = m->sample[i];
        const Perftools__Profiles__Label *tr = label(p, s, "trace_id");
        const Perftools__Profiles__Label *in = label(p, s, "interface");
        assert_non_null(label(p, s, "thread_id"));
        switch (s->value[0]) {
        case 3:
            assert_string_equal(pprof_string(p, tr->str), "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_string_equal(pprof_string(p, in->str), "GET /checkout");
            assert_string_equal(pprof_string(p, label(p, s, "thread")->str), "worker");
            seen |= 1;
            break;
        case 2:
            assert_string_equal(pprof_string(p, tr->str), "00f067aa0ba902b7aaaaaaaaaaaaaaaa");
            assert_string_equal(pprof_string(p, in->str), "POST /cart");
            seen |= 2;
            break;
        default: /* no span, or an index the map does not know */
            assert_null(tr);
            assert_null(in);
            seen |= 4;
        }
    }
    assert_int_equal(seen, 7);
    pprof_profile_free(p);

    /* go tool pprof reads the labels (when go is there). */
    if (system("command -v go >/dev/null 2>&1") == 0) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "HOME=${HOME:-/tmp} go tool pprof -symbolize=none -tags %s 2>&1",
                 path_pb);
        FILE *f = popen(cmd, "r");
        char out[8192] = "";
        size_t r = fread(out, 1, sizeof out - 1, f);
        out[r] = '\0';
        assert_int_equal(pclose(f), 0);
        if (!strstr(out, "interface:") || !strstr(out, "GET /checkout") ||
            !strstr(out, "POST /cart") || !strstr(out, "trace_id:") ||
            !strstr(out, "4bf92f3577b34da6a3ce929d0e0e4736"))
            fail_msg("go tool pprof -tags output:\n%s", out);
        /* and filters by them, as the server's views do */
        snprintf(cmd, sizeof cmd,
                 "HOME=${HOME:-/tmp} go tool pprof -symbolize=none -tagfocus='interface=POST /cart' "
                 "-top %s 2>&1",
                 path_pb);
        f = popen(cmd, "r");
        r = fread(out, 1, sizeof out - 1, f);
        out[r] = '\0';
        assert_int_equal(pclose(f), 0);
        if (!strstr(out, "accounting for 20ms"))
            fail_msg("go tool pprof -tagfocus output:\n%s", out);
    }

    /* Collapsed stacks ignore spans: one line for the one stack. */
    if (export_write(&req, SONDE_FORMAT_COLLAPSED, path_txt, err, sizeof err) != 0)
        fail_msg("export_write: %s", err);
    FILE *f = fopen(path_txt, "r");
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    assert_string_equal(buf, "export_caller_fn;export_leaf_fn 7\n");
    stacktab_free(t);
    span_map_free(spans);
}

static void test_pprof_in_memory_is_the_file_export(void **state)
{
    (void)state;
    struct span_map *spans;
    struct stack_table *t = fill_span_table(&spans);
    struct export_request req = {
        .tab = t, .types = SONDE_PROFILE_CPU, .period_ns = 10000000, .time_nanos = 1700000000000000000,
        .thread_name = thread_name, .spans = spans};
    char err[256];
    if (export_write(&req, SONDE_FORMAT_PPROF, path_pb, err, sizeof err) != 0)
        fail_msg("export_write: %s", err);
    FILE *f = fopen(path_pb, "rb");
    assert_non_null(f);
    static uint8_t file[1 << 20];
    size_t nfile = fread(file, 1, sizeof file, f);
    fclose(f);
    void *buf;
    size_t len;
    if (export_pprof_gz(&req, &buf, &len, err, sizeof err) != 0)
        fail_msg("export_pprof_gz: %s", err);
    assert_true(len > 2 && ((uint8_t *)buf)[0] == 0x1f && ((uint8_t *)buf)[1] == 0x8b); /* gzip */
    assert_int_equal(len, nfile);
    assert_memory_equal(buf, file, len);
    struct pprof_profile *p;
    assert_int_equal(pprof_decode(buf, len, &p, err, sizeof err), 0);
    assert_int_equal(p->pb->n_sample, 4);
    pprof_profile_free(p);
    free(buf);

    struct export_request none = {.types = SONDE_PROFILE_CPU};
    buf = (void *)1;
    assert_int_equal(export_pprof_gz(&none, &buf, &len, err, sizeof err), -EINVAL);
    assert_null(buf);
    assert_non_null(strstr(err, "stack table"));
    stacktab_free(t);
    span_map_free(spans);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pprof_export_has_types_labels_and_symbols),
        cmocka_unit_test(test_collapsed_export_is_root_first_sorted_samples),
        cmocka_unit_test(test_export_errors_name_the_problem),
        cmocka_unit_test(test_pprof_samples_in_a_span_carry_trace_id_and_interface),
        cmocka_unit_test(test_pprof_in_memory_is_the_file_export),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * cmd_collapse.c — `sonde collapse [--sample-index NAME] FILE`: prints a
 * pprof file as collapsed stacks, one "root;caller;...;leaf VALUE" line
 * per distinct stack (inline frames expanded, sorted), the input of
 * flamegraph.pl, speedscope and inferno.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "common/pprof.h"

static void collapse_usage(FILE *f)
{
    fprintf(f, "usage: sonde collapse [--sample-index NAME] FILE\n"
               "  --sample-index NAME   sample type to print, by name (cpu, wall, samples)\n"
               "                        or index (default: the profile's default)\n");
}

int cmd_collapse(int argc, char **argv)
{
    const char *index_name = NULL, *file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            collapse_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--sample-index") || !strncmp(a, "--sample-index=", 15)) {
            index_name = a[14] == '=' ? a + 15 : (i + 1 < argc ? argv[++i] : NULL);
            if (!index_name || !*index_name) {
                fprintf(stderr, "sonde collapse: --sample-index needs a sample type name\n");
                collapse_usage(stderr);
                return 2;
            }
        } else if (!strcmp(a, "--") && i + 1 < argc && !file) {
            file = argv[++i];
            if (i + 1 < argc) {
                fprintf(stderr, "sonde collapse: one file only\n");
                collapse_usage(stderr);
                return 2;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "sonde collapse: unknown option '%s'\n", a);
            collapse_usage(stderr);
            return 2;
        } else if (file) {
            fprintf(stderr, "sonde collapse: one file only ('%s' and '%s')\n", file, a);
            collapse_usage(stderr);
            return 2;
        } else {
            file = a;
        }
    }
    if (!file) {
        fprintf(stderr, "sonde collapse: no profile file given\n");
        collapse_usage(stderr);
        return 2;
    }

    char err[512];
    struct pprof_profile *p;
    if (pprof_load_file(file, &p, err, sizeof err) != 0) {
        fprintf(stderr, "sonde collapse: %s\n", err);
        return 1;
    }
    int si = pprof_sample_index(p, index_name);
    if (si < 0) {
        if (index_name) {
            fprintf(stderr, "sonde collapse: %s has no sample type '%s' (it has:", file,
                    index_name);
            for (size_t i = 0; i < p->pb->n_sample_type; i++)
                fprintf(stderr, "%s %s", i ? "," : "",
                        pprof_string(p, p->pb->sample_type[i]->type));
            fprintf(stderr, "%s)\n", p->pb->n_sample_type ? "" : " none");
        } else {
            fprintf(stderr, "sonde collapse: %s has no sample types\n", file);
        }
        pprof_profile_free(p);
        return index_name ? 2 : 1;
    }
    struct pprof_collapsed *c;
    if (pprof_collapse(p, si, &c) != 0) {
        fprintf(stderr, "sonde collapse: out of memory\n");
        pprof_profile_free(p);
        return 1;
    }
    int rc = pprof_collapsed_write(c, stdout);
    if (rc == 0 && fflush(stdout) != 0)
        rc = -EIO;
    pprof_collapsed_free(c);
    pprof_profile_free(p);
    if (rc != 0) {
        fprintf(stderr, "sonde collapse: cannot write the output: %s\n", strerror(EIO));
        return 1;
    }
    return 0;
}

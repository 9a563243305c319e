/*
 * strtab.c — the string table (strtab.h): an array of owned strings and a
 * hindex over it, keyed by the strings' bytes.
 */
#include "strtab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"

static int str_eq(const void *ctx, uint32_t item, const void *key)
{
    return strcmp(((const struct strtab *)ctx)->strs[item], key) == 0;
}

int64_t strtab_find(const struct strtab *t, const char *s)
{
    return hindex_find(&t->index, hindex_hash_bytes(s, strlen(s)), str_eq, t, s);
}

int64_t strtab_intern(struct strtab *t, const char *s)
{
    uint32_t h = hindex_hash_bytes(s, strlen(s));
    int64_t found = hindex_find(&t->index, h, str_eq, t, s);
    if (found >= 0)
        return found;
    if (t->n >= HINDEX_MAX_ITEMS || array_grow(&t->strs, &t->cap, t->n + 1, sizeof *t->strs) != 0)
        return -1;
    char *copy = strdup(s);
    if (!copy)
        return -1;
    if (hindex_insert(&t->index, h, (uint32_t)t->n) != 0) {
        free(copy);
        return -1;
    }
    t->strs[t->n] = copy;
    return (int64_t)t->n++;
}

char **strtab_release(struct strtab *t)
{
    char **strs = t->strs;
    hindex_free(&t->index);
    memset(t, 0, sizeof *t);
    return strs;
}

void strtab_free(struct strtab *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->strs[i]);
    free(t->strs);
    hindex_free(&t->index);
    memset(t, 0, sizeof *t);
}

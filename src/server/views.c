/*
 * views.c — what sonded computes from flame trees (views.h): the merge of
 * many trees (stored blobs, or label-filtered pprofs) into one, and that
 * tree's JSON, top functions, collapsed stacks and differences.  Building
 * a tree from a pprof and the blob format live in views_blob.c; the two
 * share views_internal.h.
 *
 * Merging.  The merged tree is an array of nodes (parent, name, self),
 * parent always before child, so inclusive values are one backward pass.
 * Names are interned once per blob (blob name index → merged name id, via
 * a hash of the bytes), then each blob node maps (merged parent, name id)
 * to a merged node through an open-addressing table that holds its keys
 * (struct node_slot): merging is mostly these lookups.  A blob is
 * decoded and checked in full before the merge is touched: a corrupt blob
 * changes nothing.  Nodes whose subtree has no value in the merge's sample
 * type are not merged at all, so a wall-time-only branch does not bloat a
 * CPU merge.  ENOMEM or E2BIG half-way leaves extra empty nodes behind but
 * never a partial value: values are added only once every node is mapped.
 *
 * Outputs walk a view of the merged tree (struct view): inclusive values,
 * depths and children sorted by name, built per call, iteratively (a tree
 * may be DEPTH_MAX deep: see views_blob.c).
 */
#include "server/views.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/array.h"
#include "common/hindex.h"
#include "server/views_internal.h"

static int64_t sat_sub(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_sub_overflow(a, b, &r))
        return b < 0 ? INT64_MAX : INT64_MIN;
    return r;
}

/* ------------------------------------------------------------------ */
/* Merging                                                             */

struct mnode {
    uint32_t parent, name;
    int64_t self;
};

struct mname {
    char *s; /* NUL-terminated, no NUL inside */
    uint32_t len;
};

/* The node table: open addressing, linear probing, load at most 1/2.  A
 * slot holds its key (parent, name) beside the node, so a probe reads one
 * slot and never the node array: merging is mostly these lookups. */
struct node_slot {
    uint32_t parent, name, node; /* node NONE: empty */
};

struct flame_merge {
    char *type, *unit; /* chosen sample type; NULL until known */
    size_t profiles, skipped;
    int64_t total;
    struct mname *names;
    size_t nnames, namecap;
    struct hindex nameidx;
    struct mnode *nodes;
    size_t nnodes, nodecap;
    struct node_slot *slots; /* (parent, name) → node */
    size_t slotcap;
    /* Scratch reused from one add to the next (sizes: their caps). */
    uint32_t *map; /* source name → merged name */
    uint32_t *mid; /* source node → merged node */
    size_t mapcap, midcap;
    struct flame_blob_scratch blob;
};

static int name_eq(const void *ctx, uint32_t item, const void *key)
{
    const struct mname *n = &((const struct flame_merge *)ctx)->names[item];
    const struct name_key *k = key;
    return n->len == k->len && memcmp(n->s, k->s, k->len) == 0;
}

static int64_t name_find(const struct flame_merge *m, const char *s, size_t len)
{
    struct name_key k = {s, len};
    return hindex_find(&m->nameidx, hindex_hash_bytes(s, len), name_eq, m, &k);
}

static int name_intern(struct flame_merge *m, const char *s, size_t len, uint32_t *out)
{
    int64_t found = name_find(m, s, len);
    if (found >= 0) {
        *out = (uint32_t)found;
        return 0;
    }
    if (array_grow(&m->names, &m->namecap, m->nnames + 1, sizeof *m->names) != 0)
        return -ENOMEM;
    char *copy = malloc(len + 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, s, len);
    copy[len] = '\0';
    if (hindex_insert(&m->nameidx, hindex_hash_bytes(s, len), (uint32_t)m->nnames) != 0) {
        free(copy);
        return -ENOMEM;
    }
    m->names[m->nnames] = (struct mname){copy, (uint32_t)len};
    *out = (uint32_t)m->nnames++;
    return 0;
}

static int node_table_grow(struct flame_merge *m)
{
    size_t ncap = m->slotcap ? m->slotcap * 2 : 1024;
    struct node_slot *ns = malloc(ncap * sizeof *ns);
    if (!ns)
        return -ENOMEM;
    memset(ns, 0xff, ncap * sizeof *ns);
    for (size_t i = 0; i < m->slotcap; i++) {
        struct node_slot s = m->slots[i];
        if (s.node == NONE)
            continue;
        size_t j = edge_hash(s.parent, s.name) & (ncap - 1);
        while (ns[j].node != NONE)
            j = (j + 1) & (ncap - 1);
        ns[j] = s;
    }
    free(m->slots);
    m->slots = ns;
    m->slotcap = ncap;
    return 0;
}

static int node_child(struct flame_merge *m, uint32_t parent, uint32_t name, uint32_t *out)
{
    size_t mask = m->slotcap - 1, j = edge_hash(parent, name) & mask;
    for (; m->slots[j].node != NONE; j = (j + 1) & mask) {
        if (m->slots[j].parent == parent && m->slots[j].name == name) {
            *out = m->slots[j].node;
            return 0;
        }
    }
    if (m->nnodes >= FLAME_MERGE_MAX_NODES)
        return -E2BIG;
    if (array_grow(&m->nodes, &m->nodecap, m->nnodes + 1, sizeof *m->nodes) != 0)
        return -ENOMEM;
    if (2 * m->nnodes > m->slotcap) { /* the root has no slot: nnodes - 1 used */
        if (node_table_grow(m) != 0)
            return -ENOMEM;
        mask = m->slotcap - 1;
        j = edge_hash(parent, name) & mask;
        while (m->slots[j].node != NONE)
            j = (j + 1) & mask;
    }
    uint32_t id = (uint32_t)m->nnodes++;
    m->nodes[id] = (struct mnode){parent, name, 0};
    m->slots[j] = (struct node_slot){parent, name, id};
    *out = id;
    return 0;
}

struct flame_merge *flame_merge_new(const char *type)
{
    struct flame_merge *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    if ((type && *type && !(m->type = strdup(type))) ||
        array_grow(&m->nodes, &m->nodecap, 1, sizeof *m->nodes) != 0 || node_table_grow(m) != 0) {
        flame_merge_free(m);
        return NULL;
    }
    m->nodes[0] = (struct mnode){NONE, NONE, 0}; /* the root */
    m->nnodes = 1;
    return m;
}

void flame_merge_free(struct flame_merge *m)
{
    if (!m)
        return;
    free(m->type);
    free(m->unit);
    for (size_t i = 0; i < m->nnames; i++)
        free(m->names[i].s);
    free(m->names);
    hindex_free(&m->nameidx);
    free(m->nodes);
    free(m->slots);
    free(m->map);
    free(m->mid);
    flame_blob_scratch_free(&m->blob);
    free(m);
}

static int merge_source(struct flame_merge *m, const struct source *s, char *err, size_t errlen)
{
    if (array_grow(&m->map, &m->mapcap, s->nnames ? s->nnames : 1, sizeof *m->map) != 0 ||
        array_grow(&m->mid, &m->midcap, s->n, sizeof *m->mid) != 0) {
        seterr(err, errlen, "out of memory");
        return -ENOMEM;
    }
    uint32_t *map = m->map, *mid = m->mid;
    memset(map, 0xff, s->nnames * sizeof *map);
    /* Which nodes carry value in this column: mid[i] = 1 when node i or a
     * descendant does (children come after parents: one backward pass). */
    memset(mid, 0, s->n * sizeof *mid);
    for (size_t i = s->n; i-- > 1;)
        if (mid[i] || s->value[i * s->stride] != 0)
            mid[i] = mid[s->edges[i].parent] = 1;
    mid[0] = 0;
    int rc = 0;
    for (size_t i = 1; rc == 0 && i < s->n; i++) {
        if (!mid[i]) {
            mid[i] = NONE;
            continue;
        }
        uint32_t nm = s->edges[i].name;
        if (map[nm] == NONE)
            rc = name_intern(m, s->name[nm], s->namelen[nm], &map[nm]);
        if (rc == 0)
            rc = node_child(m, mid[s->edges[i].parent], map[nm], &mid[i]);
    }
    if (rc != 0) {
        if (rc == -E2BIG)
            seterr(err, errlen, "merged flame tree over %zu nodes", (size_t)FLAME_MERGE_MAX_NODES);
        else
            seterr(err, errlen, "out of memory");
        return rc;
    }
    for (size_t i = 1; i < s->n; i++) {
        if (mid[i] == NONE)
            continue;
        int64_t v = s->value[i * s->stride];
        m->nodes[mid[i]].self = sat_add(m->nodes[mid[i]].self, v);
        m->total = sat_add(m->total, v);
    }
    m->profiles++;
    return 0;
}

/* The merge's sample type, set from the first profile that has it. */
static int merge_choose(struct flame_merge *m, const char *type, size_t tlen, const char *unit,
                        size_t ulen)
{
    if (!m->type && !(m->type = strndup(type, tlen)))
        return -ENOMEM;
    if (!m->unit && !(m->unit = strndup(unit, ulen)))
        return -ENOMEM;
    return 0;
}



int flame_merge_add_blob(struct flame_merge *m, const void *blob, size_t len, char *err,
                         size_t errlen)
{
    struct source s;
    struct name_key type, unit;
    int64_t col;
    int rc = flame_blob_decode(&m->blob, m->type, m->unit, blob, len, &s, &col, &type, &unit,
                               err, errlen);
    if (rc != 0)
        return rc;
    if (col < 0) {
        m->skipped++;
        return 0;
    }
    if (merge_choose(m, type.s, type.len, unit.s, unit.len) != 0) {
        seterr(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return merge_source(m, &s, err, errlen);
}

int flame_merge_add_pprof(struct flame_merge *m, const struct pprof_profile *p,
                          const struct flame_label *labels, size_t nlabels, char *err,
                          size_t errlen)
{
    const Perftools__Profiles__Profile *pb = p->pb;
    int si = -1;
    if (!m->type) {
        si = pprof_sample_index(p, NULL);
    } else {
        for (size_t i = 0; si < 0 && i < pb->n_sample_type; i++) {
            const char *t = pprof_string(p, pb->sample_type[i]->type);
            const char *u = pprof_string(p, pb->sample_type[i]->unit);
            if (sample_type_is(m->type, m->unit, t, strlen(t), u, strlen(u)))
                si = (int)i;
        }
    }
    if (si < 0) {
        m->skipped++;
        return 0;
    }
    const char *t = pprof_string(p, pb->sample_type[si]->type);
    const char *u = pprof_string(p, pb->sample_type[si]->unit);
    struct ptree tree;
    if (merge_choose(m, t, strlen(t), u, strlen(u)) != 0) {
        seterr(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = flame_ptree_build(p, si, labels, nlabels, &tree, err, errlen);
    if (rc != 0)
        return rc;
    uint32_t *lens = malloc((tree.names.n ? tree.names.n : 1) * sizeof *lens);
    if (!lens) {
        flame_ptree_free(&tree);
        seterr(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < tree.names.n; i++)
        lens[i] = (uint32_t)strlen(tree.names.strs[i]);
    struct source s = {
        .nnames = tree.names.n,
        .n = tree.n,
        .stride = 1,
        .name = (const char *const *)tree.names.strs,
        .namelen = lens,
        .edges = tree.edges,
        .value = tree.values,
    };
    rc = merge_source(m, &s, err, errlen);
    free(lens);
    flame_ptree_free(&tree);
    return rc;
}

void flame_merge_stats(const struct flame_merge *m, struct flame_merge_stats *out)
{
    *out = (struct flame_merge_stats){
        .profiles = m->profiles,
        .skipped = m->skipped,
        .nodes = m->nnodes,
        .total = m->total,
        .type = m->type ? m->type : "",
        .unit = m->unit ? m->unit : "",
    };
}

/* ------------------------------------------------------------------ */
/* Reading the merged tree                                             */

/* What the outputs walk: inclusive values, depths, and each node's
 * children sorted by name (kids[first[i] .. first[i + 1]) for node i). */
struct view {
    int64_t *incl;
    uint32_t *depth, *first, *kids;
    uint32_t maxdepth;
};

static void view_free(struct view *v)
{
    free(v->incl);
    free(v->depth);
    free(v->first);
    free(v->kids);
}

static int cmp_name_ptr(const void *a, const void *b)
{
    return strcmp((*(const struct mname *const *)a)->s, (*(const struct mname *const *)b)->s);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int view_build(const struct flame_merge *m, struct view *v)
{
    size_t n = m->nnodes, nn = m->nnames;
    const struct mnode *nodes = m->nodes;
    memset(v, 0, sizeof *v);
    const struct mname **order = malloc((nn ? nn : 1) * sizeof *order);
    uint32_t *rank = malloc((nn ? nn : 1) * sizeof *rank);
    uint64_t *keys = malloc(n * sizeof *keys);
    v->incl = malloc(n * sizeof *v->incl);
    v->depth = malloc(n * sizeof *v->depth);
    v->first = calloc(n + 1, sizeof *v->first);
    v->kids = malloc(n * sizeof *v->kids);
    int rc = -ENOMEM;
    if (!order || !rank || !keys || !v->incl || !v->depth || !v->first || !v->kids)
        goto out;
    for (size_t i = 0; i < n; i++)
        v->incl[i] = nodes[i].self;
    for (size_t i = n; i-- > 1;)
        v->incl[nodes[i].parent] = sat_add(v->incl[nodes[i].parent], v->incl[i]);
    v->depth[0] = 0;
    for (size_t i = 1; i < n; i++) {
        v->depth[i] = v->depth[nodes[i].parent] + 1;
        if (v->depth[i] > v->maxdepth)
            v->maxdepth = v->depth[i];
    }
    /* Children sort by name: rank the names once, then sort each
     * sibling range on (rank, node) integers. */
    for (size_t i = 0; i < nn; i++)
        order[i] = &m->names[i];
    qsort(order, nn, sizeof *order, cmp_name_ptr);
    for (size_t i = 0; i < nn; i++)
        rank[order[i] - m->names] = (uint32_t)i;
    uint32_t *first = v->first;
    for (size_t i = 1; i < n; i++)
        first[nodes[i].parent + 1]++;
    for (size_t i = 0; i < n; i++)
        first[i + 1] += first[i];
    for (size_t i = 1; i < n; i++) /* first[p] runs ahead as a cursor … */
        keys[first[nodes[i].parent]++] = (uint64_t)rank[nodes[i].name] << 32 | i;
    for (size_t i = n; i-- > 0;) /* … and is put back here */
        first[i + 1] = first[i];
    first[0] = 0;
    for (size_t i = 0; i < n; i++)
        if (first[i + 1] - first[i] > 1)
            qsort(keys + first[i], first[i + 1] - first[i], sizeof *keys, cmp_u64);
    for (size_t k = 0; k + 1 < n; k++)
        v->kids[k] = (uint32_t)keys[k];
    rc = 0;
out:
    free(order);
    free(rank);
    free(keys);
    if (rc != 0)
        view_free(v);
    return rc;
}

/* Self and total per merged name id (*self, *total: calloc'ed, nnames).
 * total adds a node's inclusive value only where no ancestor has the same
 * name: the outermost occurrence on each path counts each stack once
 * however deep the recursion, which is pprof's cum. */
static int top_compute(const struct flame_merge *m, const struct view *v, int64_t **self,
                       int64_t **total)
{
    size_t n = m->nnodes, nn = m->nnames ? m->nnames : 1;
    int64_t *s = calloc(nn, sizeof *s), *t = calloc(nn, sizeof *t);
    uint32_t *onpath = calloc(nn, sizeof *onpath);
    /* Each node is pushed twice: to enter it, then (EXIT) to leave it. */
    uint32_t *stack = malloc(2 * n * sizeof *stack);
    const uint32_t EXIT = UINT32_C(1) << 31; /* nodes < FLAME_MERGE_MAX_NODES */
    if (!s || !t || !onpath || !stack) {
        free(s);
        free(t);
        free(onpath);
        free(stack);
        return -ENOMEM;
    }
    for (size_t i = 1; i < n; i++)
        s[m->nodes[i].name] = sat_add(s[m->nodes[i].name], m->nodes[i].self);
    size_t sp = 0;
    for (uint32_t k = v->first[0]; k < v->first[1]; k++)
        stack[sp++] = v->kids[k];
    while (sp > 0) {
        uint32_t x = stack[--sp];
        if (x & EXIT) {
            onpath[m->nodes[x & ~EXIT].name]--;
            continue;
        }
        uint32_t nm = m->nodes[x].name;
        if (onpath[nm]++ == 0)
            t[nm] = sat_add(t[nm], v->incl[x]);
        stack[sp++] = x | EXIT;
        for (uint32_t k = v->first[x]; k < v->first[x + 1]; k++)
            stack[sp++] = v->kids[k];
    }
    free(onpath);
    free(stack);
    *self = s;
    *total = t;
    return 0;
}

/* The JSON string of name id, made once and shared by every node that
 * bears it (cache: nnames entries).  Borrowed; NULL on ENOMEM. */
static json_t *jname(const struct flame_merge *m, json_t **cache, uint32_t id)
{
    if (cache[id])
        return cache[id];
    const struct mname *nm = &m->names[id];
    json_t *j = json_stringn(nm->s, nm->len);
    if (!j) {
        /* Symbol names are bytes, JSON is UTF-8: a name that is not
         * valid UTF-8 shows its other bytes as '?'. */
        char *a = malloc((size_t)nm->len + 1);
        if (!a)
            return NULL;
        for (size_t i = 0; i < nm->len; i++)
            a[i] = (unsigned char)nm->s[i] < 0x80 ? nm->s[i] : '?';
        j = json_stringn(a, nm->len);
        free(a);
    }
    return cache[id] = j;
}

static void jnames_free(json_t **cache, size_t n)
{
    for (size_t i = 0; cache && i < n; i++)
        json_decref(cache[i]);
    free(cache);
}

/* {"name": name, keys[k]: vals[k] …, "children": []}; *children is the
 * (borrowed) children array; no children when children is NULL.  NULL on
 * ENOMEM. */
static json_t *jnode(json_t *name, const char *const *keys, const int64_t *vals, size_t n,
                     json_t **children)
{
    json_t *o = json_object();
    if (!o || json_object_set(o, "name", name) != 0)
        goto fail;
    for (size_t k = 0; k < n; k++)
        if (json_object_set_new(o, keys[k], json_integer(vals[k])) != 0)
            goto fail;
    if (!children)
        return o;
    json_t *c = json_array();
    if (json_object_set_new(o, "children", c) != 0)
        goto fail;
    *children = c;
    return o;
fail:
    json_decref(o);
    return NULL;
}

/* A node still to be turned into JSON, and the array that receives it. */
struct jtodo {
    uint32_t base, cmp; /* diff: NONE when absent on that side */
    json_t *into;
};

json_t *flame_merge_tree_json(const struct flame_merge *m)
{
    static const char *const keys[] = {"value", "self"};
    struct view v;
    if (view_build(m, &v) != 0) {
        errno = ENOMEM;
        return NULL;
    }
    json_t **names = calloc(m->nnames ? m->nnames : 1, sizeof *names);
    struct jtodo *stack = malloc(m->nnodes * sizeof *stack);
    json_t *rname = json_string("root"), *root = NULL, *kids;
    int64_t vals[2] = {v.incl[0], m->nodes[0].self};
    if (!names || !stack || !rname || !(root = jnode(rname, keys, vals, 2, &kids)))
        goto fail;
    /* Iterative preorder: a deep tree must not take the C stack.  Children
     * are pushed last first so that each array fills in name order. */
    size_t sp = 0;
    for (uint32_t k = v.first[1]; k-- > v.first[0];)
        stack[sp++] = (struct jtodo){v.kids[k], NONE, kids};
    while (sp > 0) {
        struct jtodo t = stack[--sp];
        uint32_t x = t.base;
        if (v.incl[x] == 0)
            continue;
        json_t *name = jname(m, names, m->nodes[x].name), *o;
        vals[0] = v.incl[x];
        vals[1] = m->nodes[x].self;
        if (!name || !(o = jnode(name, keys, vals, 2, &kids)) || json_array_append_new(t.into, o))
            goto fail;
        for (uint32_t k = v.first[x + 1]; k-- > v.first[x];)
            stack[sp++] = (struct jtodo){v.kids[k], NONE, kids};
    }
    json_decref(rname);
    jnames_free(names, m->nnames);
    free(stack);
    view_free(&v);
    return root;
fail:
    json_decref(root);
    json_decref(rname);
    jnames_free(names, m->nnames);
    free(stack);
    view_free(&v);
    errno = ENOMEM;
    return NULL;
}

struct top_row {
    uint32_t id;
    const char *name;
    int64_t self, total;
};

static int cmp_top_row(const void *a, const void *b)
{
    const struct top_row *x = a, *y = b;
    if (x->self != y->self)
        return x->self > y->self ? -1 : 1;
    if (x->total != y->total)
        return x->total > y->total ? -1 : 1;
    return strcmp(x->name, y->name);
}

json_t *flame_merge_top_json(const struct flame_merge *m, size_t limit)
{
    static const char *const keys[] = {"self", "total"};
    struct view v;
    if (view_build(m, &v) != 0) {
        errno = ENOMEM;
        return NULL;
    }
    int64_t *self = NULL, *total = NULL;
    struct top_row *rows = malloc((m->nnames ? m->nnames : 1) * sizeof *rows);
    json_t **names = calloc(m->nnames ? m->nnames : 1, sizeof *names);
    json_t *out = NULL;
    if (!rows || !names || top_compute(m, &v, &self, &total) != 0)
        goto done;
    size_t n = 0;
    for (size_t i = 0; i < m->nnames; i++)
        if (self[i] || total[i])
            rows[n++] = (struct top_row){(uint32_t)i, m->names[i].s, self[i], total[i]};
    qsort(rows, n, sizeof *rows, cmp_top_row);
    if (limit && n > limit)
        n = limit;
    out = json_array();
    for (size_t i = 0; out && i < n; i++) {
        json_t *name = jname(m, names, rows[i].id), *o;
        int64_t vals[2] = {rows[i].self, rows[i].total};
        if (!name || !(o = jnode(name, keys, vals, 2, NULL)) || json_array_append_new(out, o)) {
            json_decref(out);
            out = NULL;
        }
    }
done:
    free(self);
    free(total);
    free(rows);
    jnames_free(names, m->nnames);
    view_free(&v);
    if (!out)
        errno = ENOMEM;
    return out;
}

int flame_merge_collapsed(const struct flame_merge *m, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    struct view v;
    if (view_build(m, &v) != 0)
        return -ENOMEM;
    /* path[d - 1] is the name of the node at depth d on the current path:
     * in preorder, a node's ancestors were the last nodes seen above it. */
    const char **path = malloc(((size_t)v.maxdepth + 1) * sizeof *path);
    uint32_t *stack = malloc(m->nnodes * sizeof *stack);
    struct pprof_collapsed *c = pprof_collapsed_new();
    int rc = path && stack && c ? 0 : -ENOMEM;
    size_t sp = 0;
    for (uint32_t k = v.first[0]; rc == 0 && k < v.first[1]; k++)
        stack[sp++] = v.kids[k];
    while (rc == 0 && sp > 0) {
        uint32_t x = stack[--sp];
        uint32_t d = v.depth[x];
        path[d - 1] = m->names[m->nodes[x].name].s;
        /* The same lines as pprof_collapse: its sanitizing, its merging of
         * stacks that sanitize alike, its order. */
        if (m->nodes[x].self != 0)
            rc = pprof_collapsed_add(c, path, d, m->nodes[x].self);
        for (uint32_t k = v.first[x]; k < v.first[x + 1]; k++)
            stack[sp++] = v.kids[k];
    }
    char *buf = NULL;
    size_t size = 0;
    FILE *f = NULL;
    if (rc == 0) {
        pprof_collapsed_finish(c);
        if (!(f = open_memstream(&buf, &size)))
            rc = -ENOMEM;
    }
    if (f) {
        rc = pprof_collapsed_write(c, f) != 0 ? -ENOMEM : 0;
        if (fclose(f) != 0)
            rc = -ENOMEM;
    }
    pprof_collapsed_free(c);
    free(path);
    free(stack);
    view_free(&v);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    *text = buf;
    *len = size;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Differences                                                         */

static bool same_type(const struct flame_merge *a, const struct flame_merge *b)
{
    return (!a->type || !b->type || !strcmp(a->type, b->type)) &&
           (!a->unit || !b->unit || !strcmp(a->unit, b->unit));
}

static int name_cmp2(const struct flame_merge *a, uint32_t x, const struct flame_merge *b,
                     uint32_t y)
{
    return strcmp(a->names[a->nodes[x].name].s, b->names[b->nodes[y].name].s);
}

json_t *flame_diff_tree_json(const struct flame_merge *base, const struct flame_merge *cmp)
{
    static const char *const keys[] = {"base", "comparison", "delta", "base_self",
                                       "comparison_self"};
    if (!same_type(base, cmp)) {
        errno = EINVAL;
        return NULL;
    }
    struct view vb, vc;
    if (view_build(base, &vb) != 0) {
        errno = ENOMEM;
        return NULL;
    }
    if (view_build(cmp, &vc) != 0) {
        view_free(&vb);
        errno = ENOMEM;
        return NULL;
    }
    /* Each node enters the stack once, in one pair; the children of one
     * pair are gathered in `pairs` to be pushed last first. */
    size_t cap = base->nnodes + cmp->nnodes;
    struct jtodo *stack = malloc(cap * sizeof *stack), *pairs = malloc(cap * sizeof *pairs);
    json_t **bnames = calloc(base->nnames ? base->nnames : 1, sizeof *bnames);
    json_t **cnames = calloc(cmp->nnames ? cmp->nnames : 1, sizeof *cnames);
    json_t *rname = json_string("root"), *root = NULL, *out = NULL;
    size_t sp = 0;
    if (!stack || !pairs || !bnames || !cnames || !rname)
        goto done;
    stack[sp++] = (struct jtodo){0, 0, NULL};
    while (sp > 0) {
        struct jtodo t = stack[--sp];
        int64_t b = t.base != NONE ? vb.incl[t.base] : 0;
        int64_t c = t.cmp != NONE ? vc.incl[t.cmp] : 0;
        int64_t bs = t.base != NONE ? base->nodes[t.base].self : 0;
        int64_t cs = t.cmp != NONE ? cmp->nodes[t.cmp].self : 0;
        if (t.into && b == 0 && c == 0)
            continue;
        json_t *name = !t.into              ? rname
                       : t.base != NONE ? jname(base, bnames, base->nodes[t.base].name)
                                        : jname(cmp, cnames, cmp->nodes[t.cmp].name);
        int64_t vals[5] = {b, c, sat_sub(c, b), bs, cs};
        json_t *o, *kids;
        if (!name || !(o = jnode(name, keys, vals, 5, &kids)))
            goto done;
        if (!t.into)
            root = o;
        else if (json_array_append_new(t.into, o) != 0)
            goto done;
        /* Children of both sides, joined on the name (both sorted). */
        uint32_t i = t.base != NONE ? vb.first[t.base] : 0;
        uint32_t ie = t.base != NONE ? vb.first[t.base + 1] : 0;
        uint32_t j = t.cmp != NONE ? vc.first[t.cmp] : 0;
        uint32_t je = t.cmp != NONE ? vc.first[t.cmp + 1] : 0;
        size_t np = 0;
        while (i < ie || j < je) {
            int d = i == ie ? 1 : j == je ? -1 : name_cmp2(base, vb.kids[i], cmp, vc.kids[j]);
            pairs[np++] = (struct jtodo){d <= 0 ? vb.kids[i] : NONE, d >= 0 ? vc.kids[j] : NONE,
                                         kids};
            i += d <= 0;
            j += d >= 0;
        }
        while (np > 0)
            stack[sp++] = pairs[--np];
    }
    out = root;
    root = NULL;
done:
    json_decref(root);
    json_decref(rname);
    jnames_free(bnames, base->nnames);
    jnames_free(cnames, cmp->nnames);
    free(stack);
    free(pairs);
    view_free(&vb);
    view_free(&vc);
    if (!out)
        errno = ENOMEM;
    return out;
}

struct diff_row {
    uint32_t base, cmp; /* name ids, NONE when absent on that side */
    const char *name;
    int64_t bs, cs, ds, bt, ct;
};

static int cmp_diff_row(const void *a, const void *b)
{
    const struct diff_row *x = a, *y = b;
    /* |delta| without overflow: compare magnitudes as unsigned. */
    uint64_t dx = x->ds < 0 ? -(uint64_t)x->ds : (uint64_t)x->ds;
    uint64_t dy = y->ds < 0 ? -(uint64_t)y->ds : (uint64_t)y->ds;
    if (dx != dy)
        return dx > dy ? -1 : 1;
    return strcmp(x->name, y->name);
}

json_t *flame_diff_top_json(const struct flame_merge *base, const struct flame_merge *cmp,
                            size_t limit)
{
    static const char *const keys[] = {"base_self",  "comparison_self",  "delta_self",
                                       "base_total", "comparison_total", "delta_total"};
    if (!same_type(base, cmp)) {
        errno = EINVAL;
        return NULL;
    }
    struct view vb = {0}, vc = {0};
    int64_t *bs = NULL, *bt = NULL, *cs = NULL, *ct = NULL;
    size_t nb = base->nnames, nc = cmp->nnames;
    uint32_t *bmap = malloc((nb ? nb : 1) * sizeof *bmap);
    uint32_t *cmap = malloc((nc ? nc : 1) * sizeof *cmap);
    struct diff_row *rows = malloc((nb + nc ? nb + nc : 1) * sizeof *rows);
    json_t **bnames = calloc(nb ? nb : 1, sizeof *bnames);
    json_t **cnames = calloc(nc ? nc : 1, sizeof *cnames);
    json_t *out = NULL;
    bool views = false;
    if (!bmap || !cmap || !rows || !bnames || !cnames || view_build(base, &vb) != 0)
        goto done;
    if (view_build(cmp, &vc) != 0) {
        view_free(&vb);
        goto done;
    }
    views = true;
    if (top_compute(base, &vb, &bs, &bt) != 0 || top_compute(cmp, &vc, &cs, &ct) != 0)
        goto done;
    memset(bmap, 0xff, nb * sizeof *bmap);
    for (size_t j = 0; j < nc; j++) {
        int64_t i = name_find(base, cmp->names[j].s, cmp->names[j].len);
        cmap[j] = i >= 0 ? (uint32_t)i : NONE;
        if (i >= 0)
            bmap[i] = (uint32_t)j;
    }
    size_t n = 0;
    for (size_t i = 0; i < nb + nc; i++) {
        struct diff_row r = {NONE, NONE, NULL, 0, 0, 0, 0, 0};
        if (i < nb) {
            r.base = (uint32_t)i;
            r.cmp = bmap[i];
        } else if (cmap[i - nb] == NONE) {
            r.cmp = (uint32_t)(i - nb);
        } else {
            continue; /* counted with its base name */
        }
        r.name = r.base != NONE ? base->names[r.base].s : cmp->names[r.cmp].s;
        if (r.base != NONE) {
            r.bs = bs[r.base];
            r.bt = bt[r.base];
        }
        if (r.cmp != NONE) {
            r.cs = cs[r.cmp];
            r.ct = ct[r.cmp];
        }
        r.ds = sat_sub(r.cs, r.bs);
        if (r.bs || r.bt || r.cs || r.ct)
            rows[n++] = r;
    }
    qsort(rows, n, sizeof *rows, cmp_diff_row);
    if (limit && n > limit)
        n = limit;
    out = json_array();
    for (size_t i = 0; out && i < n; i++) {
        const struct diff_row *r = &rows[i];
        json_t *name = r->base != NONE ? jname(base, bnames, r->base) : jname(cmp, cnames, r->cmp);
        int64_t vals[6] = {r->bs, r->cs, r->ds, r->bt, r->ct, sat_sub(r->ct, r->bt)};
        json_t *o;
        if (!name || !(o = jnode(name, keys, vals, 6, NULL)) || json_array_append_new(out, o)) {
            json_decref(out);
            out = NULL;
        }
    }
done:
    free(bs);
    free(bt);
    free(cs);
    free(ct);
    free(bmap);
    free(cmap);
    free(rows);
    jnames_free(bnames, nb);
    jnames_free(cnames, nc);
    if (views) {
        view_free(&vb);
        view_free(&vc);
    }
    if (!out)
        errno = ENOMEM;
    return out;
}

/*
 * views_blob.c — the flame tree of one pprof and the blob that keeps it
 * (views.h): ingest calls flame_tree_build on each upload and stores the
 * blob beside the profile; views.c decodes blobs here to merge them, and
 * builds trees here from pprofs when a label filter needs the samples.
 *
 * Frame names are those of pprof_summary.c (`sonde top`, `sonde collapse`):
 * a line's function name, else its system name, else "module+0xOFFSET",
 * else "0xADDRESS"; inline frames expanded, the outermost line first.  The
 * code below repeats that rule (pprof_summary.c keeps it static); the unit
 * test checks that a tree's collapsed stacks and top functions equal
 * pprof_collapse's and pprof_top_compute's.
 *
 * Blob format, version 1, all integers little-endian:
 *
 *   header   32 bytes: u32 magic "SFLT", u32 version, u32 ntypes,
 *            u32 default type, u32 nnames, u32 names bytes, u32 nnodes,
 *            u32 nodes bytes
 *   types    ntypes × (u32 type name, u32 unit name): indexes of the names
 *   names    nnames × u32 length, then the names' bytes back to back
 *            (no NUL inside a name, none between names)
 *   nodes    nnodes records in preorder, the root left out: uvarint depth
 *            (1 = child of the root; at most the previous depth + 1),
 *            uvarint name index, then ntypes zigzag varints, the node's
 *            self value per type
 *
 * Depth in preorder makes the parent implicit (the last node seen one level
 * up) and forces parent-before-child, so one pass both checks a blob and
 * decodes it; varints keep a typical 2,000-stack profile's tree at a few
 * tens of KB.  Every count is checked against the bytes that must hold it
 * before anything is allocated, so a blob cannot make us allocate more
 * than a small multiple of its own size.
 *
 * Building.  Each sample walks down from the root, one (parent, frame
 * name) → child lookup per frame.  The agent writes one sample per stack
 * and thread, so a sample often starts like the one before: the walk
 * resumes below the locations they share (walk_cache).
 *
 * Stacks are cut at DEPTH_MAX frames (the rest become one "[truncated]"
 * frame): a merged tree turns into JSON nested twice as deep, and jansson
 * (like most JSON readers) recurses per level.  The agent keeps 128 frames.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/array.h"
#include "common/hindex.h"
#include "common/strtab.h"
#include "server/views.h"
#include "server/views_internal.h"

#define BLOB_MAGIC 0x544c4653u /* "SFLT" */
#define BLOB_VERSION 1u
#define BLOB_HEADER 32u
#define DEPTH_MAX 1000
#define TRUNCATED_FRAME "[truncated]"
/* Synthesized frame names: pprof_summary.c's buffer, same truncation. */
#define SYNTH_MAX 512

/* ------------------------------------------------------------------ */
/* The tree of one pprof                                               */

void flame_ptree_free(struct ptree *t)
{
    strtab_free(&t->names);
    free(t->edges);
    free(t->values);
    hindex_free(&t->index);
    memset(t, 0, sizeof *t);
}

static int ptree_eq(const void *ctx, uint32_t item, const void *key)
{
    const struct edge *e = &((const struct ptree *)ctx)->edges[item], *k = key;
    return e->parent == k->parent && e->name == k->name;
}

static int ptree_add_node(struct ptree *t, uint32_t parent, uint32_t name)
{
    if (t->n >= FLAME_MERGE_MAX_NODES)
        return -E2BIG;
    if (array_grow(&t->edges, &t->edgecap, t->n + 1, sizeof *t->edges) != 0 ||
        array_grow(&t->values, &t->valuecap, (t->n + 1) * t->width, sizeof *t->values) != 0)
        return -ENOMEM;
    t->edges[t->n] = (struct edge){parent, name};
    if (t->width)
        memset(&t->values[t->n * t->width], 0, t->width * sizeof *t->values);
    t->n++;
    return 0;
}

/* The child of parent named name, added when new.  0, -ENOMEM, -E2BIG. */
static int ptree_child(struct ptree *t, uint32_t parent, uint32_t name, uint32_t *out)
{
    struct edge k = {parent, name};
    uint32_t h = edge_hash(parent, name);
    int64_t found = hindex_find(&t->index, h, ptree_eq, t, &k);
    if (found >= 0) {
        *out = (uint32_t)found;
        return 0;
    }
    int rc = ptree_add_node(t, parent, name);
    if (rc != 0)
        return rc;
    if (hindex_insert(&t->index, h, (uint32_t)(t->n - 1)) != 0) {
        t->n--;
        return -ENOMEM;
    }
    *out = (uint32_t)(t->n - 1);
    return 0;
}

static int ptree_intern(struct ptree *t, const char *s, uint32_t *out)
{
    int64_t id = strtab_intern(&t->names, s);
    if (id < 0)
        return -ENOMEM;
    *out = (uint32_t)id;
    return 0;
}

/* Frame names by location, computed on first use: the name id of line j
 * of location array index li is ids[start[li] + j] (NONE until needed). */
struct namer {
    const struct pprof_profile *p;
    size_t *start;
    uint32_t *ids;
    uint32_t *dense; /* location id → array index when ids are small */
    uint64_t ndense;
    struct hindex byid;
};

static int loc_id_eq(const void *ctx, uint32_t item, const void *key)
{
    return ((const struct pprof_profile *)ctx)->pb->location[item]->id == *(const uint64_t *)key;
}

static void namer_free(struct namer *nm)
{
    free(nm->start);
    free(nm->ids);
    free(nm->dense);
    hindex_free(&nm->byid);
}

static int namer_init(struct namer *nm, const struct pprof_profile *p)
{
    const Perftools__Profiles__Profile *pb = p->pb;
    memset(nm, 0, sizeof *nm);
    nm->p = p;
    size_t nloc = pb->n_location, slots = 0;
    uint64_t maxid = 0;
    for (size_t i = 0; i < nloc; i++) {
        slots += pb->location[i]->n_line ? pb->location[i]->n_line : 1;
        if (pb->location[i]->id > maxid)
            maxid = pb->location[i]->id;
    }
    if (!(nm->start = malloc((nloc + 1) * sizeof *nm->start)) ||
        !(nm->ids = malloc((slots ? slots : 1) * sizeof *nm->ids)))
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < nloc; i++) {
        nm->start[i] = k;
        k += pb->location[i]->n_line ? pb->location[i]->n_line : 1;
    }
    nm->start[nloc] = k;
    memset(nm->ids, 0xff, (slots ? slots : 1) * sizeof *nm->ids);
    /* Builders number locations 1, 2, 3, …: an array beats a hash then. */
    if (maxid <= 2 * (uint64_t)nloc + 64) {
        nm->ndense = maxid + 1;
        if (!(nm->dense = malloc(nm->ndense * sizeof *nm->dense)))
            return -ENOMEM;
        for (size_t i = 0; i < nloc; i++)
            nm->dense[pb->location[i]->id] = (uint32_t)i;
        return 0;
    }
    for (size_t i = 0; i < nloc; i++)
        if (hindex_insert(&nm->byid, hindex_hash_u64(pb->location[i]->id), (uint32_t)i) != 0)
            return -ENOMEM;
    return 0;
}

/* The array index of a location id (pprof_decode checked it exists). */
static size_t namer_loc(const struct namer *nm, uint64_t id)
{
    if (nm->dense)
        return id < nm->ndense ? nm->dense[id] : 0;
    int64_t i = hindex_find(&nm->byid, hindex_hash_u64(id), loc_id_eq, nm->p, &id);
    return i >= 0 ? (size_t)i : 0;
}

/* The name id of line j of location li (pprof_frame_name, interned). */
static int namer_name(struct namer *nm, struct ptree *t, size_t li, size_t j, uint32_t *out)
{
    uint32_t *slot = &nm->ids[nm->start[li] + j];
    if (*slot != NONE) {
        *out = *slot;
        return 0;
    }
    char buf[SYNTH_MAX];
    const char *name = pprof_frame_name(nm->p, nm->p->pb->location[li], j, buf, sizeof buf);
    int rc = ptree_intern(t, name, slot);
    *out = *slot;
    return rc;
}

/* Does sample s carry every string label of want[0..n)? */
static bool sample_has_labels(const struct pprof_profile *p, const Perftools__Profiles__Sample *s,
                              const struct flame_label *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t j = 0; j < s->n_label && !found; j++) {
            const Perftools__Profiles__Label *l = s->label[j];
            found = l->str && !strcmp(pprof_string(p, l->key), want[i].key) &&
                    !strcmp(pprof_string(p, l->str), want[i].value);
        }
        if (!found)
            return false;
    }
    return true;
}

/* The node reached after each location of the previous sample walked,
 * root first: a sample that starts like the previous one (the same stack
 * on another thread, a sibling) resumes there instead of walking its
 * common part again. */
struct walk_cache {
    uint64_t *loc;
    uint32_t *node, *depth;
    size_t n, loccap, nodecap, depthcap;
};

static int walk_cache_grow(struct walk_cache *w, size_t n)
{
    return array_grow(&w->loc, &w->loccap, n, sizeof *w->loc) == 0 &&
                   array_grow(&w->node, &w->nodecap, n, sizeof *w->node) == 0 &&
                   array_grow(&w->depth, &w->depthcap, n, sizeof *w->depth) == 0
               ? 0
               : -ENOMEM;
}

static void walk_cache_free(struct walk_cache *w)
{
    free(w->loc);
    free(w->node);
    free(w->depth);
}

/* Walks sample s down from the root, adding nodes; *leaf is where its
 * value goes. */
static int ptree_walk(struct ptree *t, struct namer *nm, struct walk_cache *w,
                      const Perftools__Profiles__Sample *s, uint32_t *truncated, uint32_t *leaf)
{
    const Perftools__Profiles__Profile *pb = nm->p->pb;
    size_t n = s->n_location_id, r = 0;
    if (walk_cache_grow(w, n) != 0)
        return -ENOMEM;
    /* Location r root first is location_id[n - 1 - r]. */
    while (r < w->n && r < n && w->loc[r] == s->location_id[n - 1 - r])
        r++;
    uint32_t node = r ? w->node[r - 1] : 0, depth = r ? w->depth[r - 1] : 0;
    int rc = 0;
    for (w->n = r; r < n; r++) {
        size_t j = n - 1 - r, li = namer_loc(nm, s->location_id[j]);
        size_t nl = pb->location[li]->n_line ? pb->location[li]->n_line : 1;
        /* The outermost line first. */
        for (size_t q = nl; q-- > 0; depth++) {
            uint32_t name;
            if (depth == DEPTH_MAX - 1 && (j > 0 || q > 0)) { /* cut the rest */
                if (*truncated == NONE && (rc = ptree_intern(t, TRUNCATED_FRAME, truncated)))
                    return rc;
                *leaf = node;
                return ptree_child(t, node, *truncated, leaf);
            }
            if ((rc = namer_name(nm, t, li, q, &name)) != 0 ||
                (rc = ptree_child(t, node, name, &node)) != 0)
                return rc;
        }
        w->loc[r] = s->location_id[j];
        w->node[r] = node;
        w->depth[r] = depth;
        w->n = r + 1;
    }
    *leaf = node;
    return 0;
}

/* flame_ptree_build (views_internal.h). */
int flame_ptree_build(const struct pprof_profile *p, int si, const struct flame_label *labels,
                      size_t nlabels, struct ptree *t, char *err, size_t errlen)
{
    const Perftools__Profiles__Profile *pb = p->pb;
    memset(t, 0, sizeof *t);
    t->width = si < 0 ? pb->n_sample_type : 1;
    size_t first = si < 0 ? 0 : (size_t)si;
    struct namer nm;
    struct walk_cache w = {0};
    uint32_t truncated = NONE;
    int rc = namer_init(&nm, p);
    if (rc == 0)
        rc = ptree_add_node(t, NONE, NONE); /* the root */
    for (size_t i = 0; rc == 0 && i < pb->n_sample; i++) {
        const Perftools__Profiles__Sample *s = pb->sample[i];
        bool any = false;
        for (size_t k = 0; k < t->width; k++)
            any |= s->value[first + k] != 0;
        if (!any || s->n_location_id == 0 || !sample_has_labels(p, s, labels, nlabels))
            continue;
        uint32_t leaf;
        rc = ptree_walk(t, &nm, &w, s, &truncated, &leaf);
        for (size_t k = 0; rc == 0 && k < t->width; k++)
            t->values[leaf * t->width + k] =
                sat_add(t->values[leaf * t->width + k], s->value[first + k]);
    }
    walk_cache_free(&w);
    namer_free(&nm);
    if (rc != 0) {
        flame_ptree_free(t);
        if (rc == -E2BIG)
            seterr(err, errlen, "flame tree over %zu nodes", (size_t)FLAME_MERGE_MAX_NODES);
        else
            seterr(err, errlen, "out of memory");
    }
    return rc;
}


/* ------------------------------------------------------------------ */
/* Blob encoding                                                       */

struct bytes {
    uint8_t *p;
    size_t n, cap;
    bool oom;
};

/* Room for n more bytes: false (and oom, sticky) when there is none. */
static bool reserve(struct bytes *b, size_t n)
{
    if (!b->oom && b->cap - b->n < n && array_grow(&b->p, &b->cap, b->n + n, 1) != 0)
        b->oom = true;
    return !b->oom;
}

static void put_bytes(struct bytes *b, const void *src, size_t n)
{
    if (n == 0 || !reserve(b, n))
        return;
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_u32(struct bytes *b, uint32_t v)
{
    uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put_bytes(b, le, 4);
}

/* One room check per value: a tree has tens of thousands of them. */
static void put_uvarint(struct bytes *b, uint64_t v)
{
    if (!reserve(b, 10))
        return;
    while (v >= 0x80) {
        b->p[b->n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    b->p[b->n++] = (uint8_t)v;
}

static void put_svarint(struct bytes *b, int64_t v)
{
    put_uvarint(b, ((uint64_t)v << 1) ^ (v < 0 ? UINT64_MAX : 0));
}

/* The nodes of t in preorder (root left out) as blob node records. */
static int encode_nodes(const struct ptree *t, struct bytes *out)
{
    size_t n = t->n;
    uint32_t *first = calloc(n + 1, sizeof *first);
    uint32_t *kids = malloc(n * sizeof *kids);
    uint32_t *depth = malloc(n * sizeof *depth);
    uint32_t *stack = malloc(n * sizeof *stack);
    int rc = -ENOMEM;
    if (!first || !kids || !depth || !stack)
        goto out;
    /* Children lists by counting sort on the parent: CSR, kids of node i
     * in kids[first[i] .. first[i + 1]), in creation order. */
    for (size_t i = 1; i < n; i++)
        first[t->edges[i].parent + 1]++;
    for (size_t i = 0; i < n; i++)
        first[i + 1] += first[i];
    for (size_t i = 1; i < n; i++) {
        uint32_t par = t->edges[i].parent;
        kids[first[par]++] = (uint32_t)i;
    }
    for (size_t i = n; i-- > 0;)
        first[i + 1] = first[i];
    first[0] = 0;
    depth[0] = 0;
    size_t sp = 0;
    for (uint32_t k = first[1]; k-- > first[0];)
        stack[sp++] = kids[k];
    while (sp > 0) {
        uint32_t x = stack[--sp];
        depth[x] = depth[t->edges[x].parent] + 1;
        put_uvarint(out, depth[x]);
        put_uvarint(out, t->edges[x].name);
        for (size_t k = 0; k < t->width; k++)
            put_svarint(out, t->values[x * t->width + k]);
        for (uint32_t k = first[x + 1]; k-- > first[x];)
            stack[sp++] = kids[k];
    }
    rc = out->oom ? -ENOMEM : 0;
out:
    free(first);
    free(kids);
    free(depth);
    free(stack);
    return rc;
}

int flame_tree_build(const struct pprof_profile *p, uint8_t **blob, size_t *len, char *err,
                     size_t errlen)
{
    *blob = NULL;
    *len = 0;
    const Perftools__Profiles__Profile *pb = p->pb;
    struct ptree t;
    struct bytes nodes = {0}, out = {0};
    int rc = flame_ptree_build(p, -1, NULL, 0, &t, err, errlen);
    if (rc != 0)
        return rc;
    size_t ntypes = pb->n_sample_type;
    int def = pprof_sample_index(p, NULL);
    uint32_t *typenames = malloc((2 * ntypes + 1) * sizeof *typenames);
    rc = typenames ? 0 : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < ntypes; i++) {
        rc = ptree_intern(&t, pprof_string(p, pb->sample_type[i]->type), &typenames[2 * i]);
        if (rc == 0)
            rc = ptree_intern(&t, pprof_string(p, pb->sample_type[i]->unit),
                              &typenames[2 * i + 1]);
    }
    if (rc == 0)
        rc = encode_nodes(&t, &nodes);
    uint64_t namebytes = 0;
    for (size_t i = 0; rc == 0 && i < t.names.n; i++)
        namebytes += strlen(t.names.strs[i]);
    uint64_t total = (uint64_t)BLOB_HEADER + 8 * (uint64_t)ntypes + 4 * (uint64_t)t.names.n +
                     namebytes + nodes.n;
    if (rc == 0 && total > FLAME_BLOB_MAX) {
        seterr(err, errlen, "flame tree blob of %" PRIu64 " bytes is over %zu", total,
               FLAME_BLOB_MAX);
        rc = -E2BIG;
    }
    if (rc == 0 && !reserve(&out, (size_t)total))
        rc = -ENOMEM;
    if (rc == 0) {
        put_u32(&out, BLOB_MAGIC);
        put_u32(&out, BLOB_VERSION);
        put_u32(&out, (uint32_t)ntypes);
        put_u32(&out, def < 0 ? 0 : (uint32_t)def);
        put_u32(&out, (uint32_t)t.names.n);
        put_u32(&out, (uint32_t)namebytes);
        put_u32(&out, (uint32_t)(t.n - 1));
        put_u32(&out, (uint32_t)nodes.n);
        for (size_t i = 0; i < 2 * ntypes; i++)
            put_u32(&out, typenames[i]);
        for (size_t i = 0; i < t.names.n; i++)
            put_u32(&out, (uint32_t)strlen(t.names.strs[i]));
        for (size_t i = 0; i < t.names.n; i++)
            put_bytes(&out, t.names.strs[i], strlen(t.names.strs[i]));
        put_bytes(&out, nodes.p, nodes.n);
        rc = out.oom ? -ENOMEM : 0;
    }
    if (rc == -ENOMEM)
        seterr(err, errlen, "out of memory");
    free(typenames);
    free(nodes.p);
    flame_ptree_free(&t);
    if (rc != 0) {
        free(out.p);
        return rc;
    }
    *blob = out.p;
    *len = out.n;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Blob decoding                                                       */

void flame_blob_scratch_free(struct flame_blob_scratch *sc)
{
    free(sc->sname);
    free(sc->slen);
    free(sc->edges);
    free(sc->values);
    memset(sc, 0, sizeof *sc);
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static bool get_uvarint(const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
    const uint8_t *p = *pp;
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (p == end)
            return false;
        uint8_t c = *p++;
        if (shift == 63 && c > 1)
            return false;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *pp = p;
            *out = v;
            return true;
        }
    }
    return false;
}

/* flame_blob_decode (views_internal.h): nothing but sc changes. */
int flame_blob_decode(struct flame_blob_scratch *sc, const char *want_type, const char *want_unit,
                      const uint8_t *b, size_t len, struct source *s, int64_t *col,
                      struct name_key *type, struct name_key *unit, char *err, size_t errlen)
{
    if (len < BLOB_HEADER || len > FLAME_BLOB_MAX) {
        seterr(err, errlen, "flame blob of %zu bytes: must be %u to %zu", len, BLOB_HEADER,
               FLAME_BLOB_MAX);
        return -EINVAL;
    }
    if (get_u32(b) != BLOB_MAGIC || get_u32(b + 4) != BLOB_VERSION) {
        seterr(err, errlen, "not a flame blob of version %u (magic %08" PRIx32 ", version %" PRIu32
               ")", BLOB_VERSION, get_u32(b), get_u32(b + 4));
        return -EINVAL;
    }
    uint32_t ntypes = get_u32(b + 8), def = get_u32(b + 12), nnames = get_u32(b + 16);
    uint32_t namebytes = get_u32(b + 20), nnodes = get_u32(b + 24), nodebytes = get_u32(b + 28);
    uint64_t want = (uint64_t)BLOB_HEADER + 8 * (uint64_t)ntypes + 4 * (uint64_t)nnames +
                    namebytes + nodebytes;
    if (want != len) {
        seterr(err, errlen, "flame blob of %zu bytes, its header says %" PRIu64, len, want);
        return -EINVAL;
    }
    if (ntypes ? def >= ntypes : def != 0) {
        seterr(err, errlen, "flame blob default type %" PRIu32 " of %" PRIu32 " types", def,
               ntypes);
        return -EINVAL;
    }
    /* Each node record takes at least 1 byte per varint. */
    if ((uint64_t)nnodes * (2 + (uint64_t)ntypes) > nodebytes) {
        seterr(err, errlen, "flame blob: %" PRIu32 " nodes cannot fit in %" PRIu32 " bytes",
               nnodes, nodebytes);
        return -EINVAL;
    }
    if (nnodes >= FLAME_MERGE_MAX_NODES) {
        seterr(err, errlen, "flame blob of %" PRIu32 " nodes is over %zu", nnodes,
               (size_t)FLAME_MERGE_MAX_NODES);
        return -E2BIG;
    }
    size_t n = (size_t)nnodes + 1;
    if (array_grow(&sc->sname, &sc->snamecap, nnames ? nnames : 1, sizeof *sc->sname) != 0 ||
        array_grow(&sc->slen, &sc->slencap, nnames ? nnames : 1, sizeof *sc->slen) != 0 ||
        array_grow(&sc->edges, &sc->edgecap, n, sizeof *sc->edges) != 0 ||
        array_grow(&sc->values, &sc->valuecap, n, sizeof *sc->values) != 0) {
        seterr(err, errlen, "out of memory");
        return -ENOMEM;
    }
    const uint8_t *types = b + BLOB_HEADER;
    const uint8_t *lens = types + 8 * (size_t)ntypes;
    const char *str = (const char *)(lens + 4 * (size_t)nnames);
    uint64_t off = 0;
    for (uint32_t i = 0; i < nnames; i++) {
        uint32_t l = get_u32(lens + 4 * (size_t)i);
        if (l > namebytes - off) {
            seterr(err, errlen, "flame blob name %" PRIu32 " overruns the name table", i);
            return -EINVAL;
        }
        if (memchr(str + off, '\0', l)) {
            seterr(err, errlen, "flame blob name %" PRIu32 " holds a NUL byte", i);
            return -EINVAL;
        }
        sc->sname[i] = str + off;
        sc->slen[i] = l;
        off += l;
    }
    if (off != namebytes) {
        seterr(err, errlen, "flame blob names take %" PRIu64 " of %" PRIu32 " bytes", off,
               namebytes);
        return -EINVAL;
    }
    *col = -1;
    for (uint32_t i = 0; i < ntypes; i++) {
        uint32_t t = get_u32(types + 8 * (size_t)i), u = get_u32(types + 8 * (size_t)i + 4);
        if (t >= nnames || u >= nnames) {
            seterr(err, errlen, "flame blob type %" PRIu32 " names string %" PRIu32 " of %" PRIu32,
                   i, t >= nnames ? t : u, nnames);
            return -EINVAL;
        }
        bool pick = *col < 0 && (want_type ? sample_type_is(want_type, want_unit, sc->sname[t],
                                                            sc->slen[t], sc->sname[u], sc->slen[u])
                                           : i == def);
        if (pick) {
            *col = i;
            *type = (struct name_key){sc->sname[t], sc->slen[t]};
            *unit = (struct name_key){sc->sname[u], sc->slen[u]};
        }
    }
    /* Nodes: parents[d] is the last node seen at depth d. */
    uint32_t parents[DEPTH_MAX + 1];
    uint64_t prev = 0;
    const uint8_t *p = (const uint8_t *)str + namebytes, *end = p + nodebytes;
    parents[0] = 0;
    sc->edges[0] = (struct edge){NONE, NONE};
    sc->values[0] = 0;
    for (size_t i = 1; i < n; i++) {
        uint64_t depth, name, v;
        if (!get_uvarint(&p, end, &depth) || !get_uvarint(&p, end, &name)) {
            seterr(err, errlen, "flame blob node %zu truncated", i);
            return -EINVAL;
        }
        if (depth < 1 || depth > prev + 1 || depth > DEPTH_MAX) {
            seterr(err, errlen, "flame blob node %zu at depth %" PRIu64 " after depth %" PRIu64
                   " (at most %d)", i, depth, prev, DEPTH_MAX);
            return -EINVAL;
        }
        if (name >= nnames) {
            seterr(err, errlen, "flame blob node %zu names string %" PRIu64 " of %" PRIu32, i,
                   name, nnames);
            return -EINVAL;
        }
        sc->edges[i] = (struct edge){parents[depth - 1], (uint32_t)name};
        parents[depth] = (uint32_t)i;
        prev = depth;
        for (uint32_t k = 0; k < ntypes; k++) {
            if (!get_uvarint(&p, end, &v)) {
                seterr(err, errlen, "flame blob node %zu: value %" PRIu32 " truncated", i, k);
                return -EINVAL;
            }
            if ((int64_t)k == *col)
                sc->values[i] = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
        }
    }
    if (p != end) {
        seterr(err, errlen, "flame blob: %td bytes after the last node", end - p);
        return -EINVAL;
    }
    *s = (struct source){
        .nnames = nnames,
        .n = n,
        .stride = 1,
        .name = sc->sname,
        .namelen = sc->slen,
        .edges = sc->edges,
        .value = sc->values,
    };
    return 0;
}

/*
 * pprof.c — pprof builder, validating reader and summaries (pprof.h).
 *
 * Encoding goes through the protobuf-c code generated from Debian's
 * profile.proto ($(B)/gen/profile.pb-c.c) and zlib.  The builder keeps the
 * protobuf-c message structs themselves in growable arrays (ids are
 * index + 1, which is what go tool pprof expects too) and only builds the
 * pointer arrays protobuf-c wants at encode time.
 *
 * Decoding trusts nothing: input and decompressed sizes are capped at
 * PPROF_MAX_DECODED, protobuf-c allocates through a budgeted allocator (a
 * small message can ask for many tiny allocations, so bytes alone do not
 * bound memory), and validate() checks every cross reference once so that
 * readers never see a dangling index.
 *
 * One small open-addressing hash (struct hindex) serves all the lookups:
 * strings and functions while building, ids while reading, names and
 * stacks while summarizing.  A slot packs the item's 32-bit hash and its
 * index + 1, so growing never needs the items themselves.
 */
#include "pprof.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ------------------------------------------------------------------ */
/* hindex: hash -> item index                                          */

struct hindex {
    uint64_t *slots; /* (hash << 32) | (item + 1); 0 = empty */
    size_t cap;      /* power of two, or 0 */
    size_t n;
};

/* Nonzero when item matches key. */
typedef int (*hindex_eq_fn)(const void *ctx, uint32_t item, const void *key);

static uint32_t hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull; /* FNV-1a 64 */
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return (uint32_t)(h ^ (h >> 32));
}

static uint32_t hash_u64(uint64_t x)
{
    x ^= x >> 30; /* splitmix64 finalizer */
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return (uint32_t)x;
}

static void hindex_free(struct hindex *h)
{
    free(h->slots);
    memset(h, 0, sizeof *h);
}

/* The item whose hash is hash and that eq() accepts, or -1. */
static int64_t hindex_find(const struct hindex *h, uint32_t hash, hindex_eq_fn eq, const void *ctx,
                           const void *key)
{
    if (h->cap == 0)
        return -1;
    size_t mask = h->cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        uint64_t s = h->slots[i];
        if (s == 0)
            return -1;
        if ((uint32_t)(s >> 32) == hash && eq(ctx, (uint32_t)s - 1, key))
            return (uint32_t)s - 1;
    }
}

static void hindex_put(uint64_t *slots, size_t cap, uint64_t s)
{
    size_t mask = cap - 1;
    size_t i = (size_t)(s >> 32) & mask;
    while (slots[i] != 0)
        i = (i + 1) & mask;
    slots[i] = s;
}

/* Adds item (which must not be present).  0 or -ENOMEM. */
static int hindex_insert(struct hindex *h, uint32_t hash, uint32_t item)
{
    if ((h->n + 1) * 2 > h->cap) { /* keep the load at most 1/2 */
        size_t ncap = h->cap ? h->cap * 2 : 64;
        if (ncap > SIZE_MAX / sizeof(uint64_t))
            return -ENOMEM;
        uint64_t *ns = calloc(ncap, sizeof *ns);
        if (!ns)
            return -ENOMEM;
        for (size_t i = 0; i < h->cap; i++)
            if (h->slots[i])
                hindex_put(ns, ncap, h->slots[i]);
        free(h->slots);
        h->slots = ns;
        h->cap = ncap;
    }
    hindex_put(h->slots, h->cap, ((uint64_t)hash << 32) | ((uint64_t)item + 1));
    h->n++;
    return 0;
}

/* Grows *arr (element size sz) so that it holds at least need elements. */
static int grow(void *arr, size_t *cap, size_t need, size_t sz)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2 / sz)
            return -ENOMEM;
        ncap *= 2;
    }
    void *p = realloc(*(void **)arr, ncap * sz);
    if (!p)
        return -ENOMEM;
    *(void **)arr = p;
    *cap = ncap;
    return 0;
}

/* Values come from files and the network: sums saturate instead of
 * overflowing (undefined behaviour in C). */
static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static int64_t sat_abs(int64_t v)
{
    return v == INT64_MIN ? INT64_MAX : v < 0 ? -v : v;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------ */
/* Builder                                                             */

struct pprof_builder {
    int err; /* first failure, sticky */

    char **strings;
    size_t nstrings, capstrings;
    struct hindex strindex;

    Perftools__Profiles__ValueType *sample_types;
    size_t nsample_types, capsample_types;
    Perftools__Profiles__ValueType period_type;
    bool has_period_type;
    int64_t period;
    int64_t default_sample_type;
    int64_t time_nanos, duration_nanos;
    int64_t *comments;
    size_t ncomments, capcomments;

    Perftools__Profiles__Mapping *mappings;
    size_t nmappings, capmappings;
    Perftools__Profiles__Function *functions;
    size_t nfunctions, capfunctions;
    struct hindex funcindex;
    Perftools__Profiles__Location *locations; /* line = one block, see below */
    size_t nlocations, caplocations;
    Perftools__Profiles__Sample *samples; /* location_id = one block */
    size_t nsamples, capsamples;
};

static int fail(struct pprof_builder *b, int e)
{
    if (b->err == 0)
        b->err = e;
    return e;
}

struct pprof_builder *pprof_builder_new(void)
{
    struct pprof_builder *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    if (pprof_builder_string(b, "") != 0) {
        pprof_builder_free(b);
        return NULL;
    }
    return b;
}

void pprof_builder_free(struct pprof_builder *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->nstrings; i++)
        free(b->strings[i]);
    free(b->strings);
    hindex_free(&b->strindex);
    free(b->sample_types);
    free(b->comments);
    free(b->mappings);
    free(b->functions);
    hindex_free(&b->funcindex);
    for (size_t i = 0; i < b->nlocations; i++)
        free(b->locations[i].line);
    free(b->locations);
    for (size_t i = 0; i < b->nsamples; i++)
        free(b->samples[i].location_id);
    free(b->samples);
    free(b);
}

static int str_eq(const void *ctx, uint32_t item, const void *key)
{
    const struct pprof_builder *b = ctx;
    return strcmp(b->strings[item], key) == 0;
}

int64_t pprof_builder_string(struct pprof_builder *b, const char *s)
{
    if (!s)
        s = "";
    uint32_t h = hash_bytes(s, strlen(s));
    int64_t found = hindex_find(&b->strindex, h, str_eq, b, s);
    if (found >= 0)
        return found;
    if (b->nstrings >= UINT32_MAX - 1 ||
        grow(&b->strings, &b->capstrings, b->nstrings + 1, sizeof *b->strings) != 0)
        return fail(b, -ENOMEM), -1;
    char *copy = strdup(s);
    if (!copy)
        return fail(b, -ENOMEM), -1;
    if (hindex_insert(&b->strindex, h, (uint32_t)b->nstrings) != 0) {
        free(copy);
        return fail(b, -ENOMEM), -1;
    }
    b->strings[b->nstrings] = copy;
    return (int64_t)b->nstrings++;
}

/* Two strings or a failure (-1 in either). */
static int value_type(struct pprof_builder *b, Perftools__Profiles__ValueType *vt, const char *type,
                      const char *unit)
{
    perftools__profiles__value_type__init(vt);
    vt->type = pprof_builder_string(b, type);
    vt->unit = pprof_builder_string(b, unit);
    return (vt->type < 0 || vt->unit < 0) ? -ENOMEM : 0;
}

int pprof_builder_sample_type(struct pprof_builder *b, const char *type, const char *unit)
{
    if (b->nsamples > 0)
        return fail(b, -EINVAL);
    if (grow(&b->sample_types, &b->capsample_types, b->nsample_types + 1,
             sizeof *b->sample_types) != 0)
        return fail(b, -ENOMEM);
    int rc = value_type(b, &b->sample_types[b->nsample_types], type, unit);
    if (rc != 0)
        return rc;
    b->nsample_types++;
    return 0;
}

int pprof_builder_period(struct pprof_builder *b, const char *type, const char *unit,
                         int64_t period)
{
    int rc = value_type(b, &b->period_type, type, unit);
    if (rc != 0)
        return rc;
    b->has_period_type = true;
    b->period = period;
    return 0;
}

int pprof_builder_default_sample_type(struct pprof_builder *b, const char *type)
{
    int64_t s = pprof_builder_string(b, type);
    if (s < 0)
        return -ENOMEM;
    b->default_sample_type = s;
    return 0;
}

void pprof_builder_time(struct pprof_builder *b, int64_t time_nanos, int64_t duration_nanos)
{
    b->time_nanos = time_nanos;
    b->duration_nanos = duration_nanos;
}

int pprof_builder_comment(struct pprof_builder *b, const char *comment)
{
    int64_t s = pprof_builder_string(b, comment);
    if (s < 0)
        return -ENOMEM;
    if (grow(&b->comments, &b->capcomments, b->ncomments + 1, sizeof *b->comments) != 0)
        return fail(b, -ENOMEM);
    b->comments[b->ncomments++] = s;
    return 0;
}

uint64_t pprof_builder_mapping(struct pprof_builder *b, uint64_t start, uint64_t limit,
                               uint64_t offset, const char *filename, const char *build_id)
{
    int64_t f = pprof_builder_string(b, filename);
    int64_t bid = pprof_builder_string(b, build_id);
    if (f < 0 || bid < 0 ||
        grow(&b->mappings, &b->capmappings, b->nmappings + 1, sizeof *b->mappings) != 0)
        return fail(b, -ENOMEM), 0;
    Perftools__Profiles__Mapping *m = &b->mappings[b->nmappings];
    perftools__profiles__mapping__init(m);
    m->id = b->nmappings + 1;
    m->memory_start = start;
    m->memory_limit = limit;
    m->file_offset = offset;
    m->filename = f;
    m->build_id = bid;
    return ++b->nmappings;
}

void pprof_builder_mapping_flags(struct pprof_builder *b, uint64_t mapping_id, unsigned flags)
{
    if (mapping_id == 0 || mapping_id > b->nmappings)
        return;
    Perftools__Profiles__Mapping *m = &b->mappings[mapping_id - 1];
    m->has_functions = (flags & PPROF_HAS_FUNCTIONS) != 0;
    m->has_filenames = (flags & PPROF_HAS_FILENAMES) != 0;
    m->has_line_numbers = (flags & PPROF_HAS_LINE_NUMBERS) != 0;
    m->has_inline_frames = (flags & PPROF_HAS_INLINE_FRAMES) != 0;
}

static int func_eq(const void *ctx, uint32_t item, const void *key)
{
    const Perftools__Profiles__Function *a = &((const struct pprof_builder *)ctx)->functions[item];
    const Perftools__Profiles__Function *k = key;
    return a->name == k->name && a->system_name == k->system_name &&
           a->filename == k->filename && a->start_line == k->start_line;
}

uint64_t pprof_builder_function(struct pprof_builder *b, const char *name,
                                const char *system_name, const char *filename,
                                int64_t start_line)
{
    Perftools__Profiles__Function key;
    perftools__profiles__function__init(&key);
    key.name = pprof_builder_string(b, name);
    key.system_name = pprof_builder_string(b, system_name);
    key.filename = pprof_builder_string(b, filename);
    key.start_line = start_line;
    if (key.name < 0 || key.system_name < 0 || key.filename < 0)
        return 0;
    int64_t parts[4] = {key.name, key.system_name, key.filename, start_line};
    uint32_t h = hash_bytes(parts, sizeof parts);
    int64_t found = hindex_find(&b->funcindex, h, func_eq, b, &key);
    if (found >= 0)
        return (uint64_t)found + 1;
    if (b->nfunctions >= UINT32_MAX - 1 ||
        grow(&b->functions, &b->capfunctions, b->nfunctions + 1, sizeof *b->functions) != 0 ||
        hindex_insert(&b->funcindex, h, (uint32_t)b->nfunctions) != 0)
        return fail(b, -ENOMEM), 0;
    key.id = b->nfunctions + 1;
    b->functions[b->nfunctions] = key;
    return ++b->nfunctions;
}

uint64_t pprof_builder_location(struct pprof_builder *b, uint64_t mapping_id, uint64_t address,
                                const struct pprof_line *lines, size_t n)
{
    if (mapping_id > b->nmappings)
        return fail(b, -EINVAL), 0;
    for (size_t i = 0; i < n; i++)
        if (lines[i].function_id > b->nfunctions)
            return fail(b, -EINVAL), 0;
    if (n > SIZE_MAX / 64 ||
        grow(&b->locations, &b->caplocations, b->nlocations + 1, sizeof *b->locations) != 0)
        return fail(b, -ENOMEM), 0;
    /* One block: n pointers, then the n Line messages they point at. */
    size_t size = n * (sizeof(Perftools__Profiles__Line *) + sizeof(Perftools__Profiles__Line));
    void *block = malloc(size ? size : 1);
    if (!block)
        return fail(b, -ENOMEM), 0;
    Perftools__Profiles__Line **ptrs = block;
    Perftools__Profiles__Line *msgs = (Perftools__Profiles__Line *)(ptrs + n);
    for (size_t i = 0; i < n; i++) {
        perftools__profiles__line__init(&msgs[i]);
        msgs[i].function_id = lines[i].function_id;
        msgs[i].line = lines[i].line;
        ptrs[i] = &msgs[i];
    }
    Perftools__Profiles__Location *loc = &b->locations[b->nlocations];
    perftools__profiles__location__init(loc);
    loc->id = b->nlocations + 1;
    loc->mapping_id = mapping_id;
    loc->address = address;
    loc->n_line = n;
    loc->line = ptrs;
    return ++b->nlocations;
}

int pprof_builder_sample(struct pprof_builder *b, const uint64_t *loc_ids, size_t n,
                         const int64_t *values, const struct pprof_label *labels,
                         size_t nlabels)
{
    if (b->err)
        return b->err;
    if (b->nsample_types == 0)
        return fail(b, -EINVAL);
    for (size_t i = 0; i < n; i++)
        if (loc_ids[i] == 0 || loc_ids[i] > b->nlocations)
            return fail(b, -EINVAL);
    if (n > SIZE_MAX / 64 || nlabels > SIZE_MAX / 128 ||
        grow(&b->samples, &b->capsamples, b->nsamples + 1, sizeof *b->samples) != 0)
        return fail(b, -ENOMEM);
    /* One block: location ids, values, label pointers, label messages (all
     * 8-byte aligned). */
    size_t nv = b->nsample_types;
    size_t size = n * sizeof(uint64_t) + nv * sizeof(int64_t) +
                  nlabels * (sizeof(Perftools__Profiles__Label *) + sizeof(Perftools__Profiles__Label));
    char *block = malloc(size ? size : 1);
    if (!block)
        return fail(b, -ENOMEM);
    uint64_t *ids = (uint64_t *)block;
    int64_t *vals = (int64_t *)(ids + n);
    Perftools__Profiles__Label **lptr = (Perftools__Profiles__Label **)(vals + nv);
    Perftools__Profiles__Label *lmsg = (Perftools__Profiles__Label *)(lptr + nlabels);
    if (n)
        memcpy(ids, loc_ids, n * sizeof *ids);
    memcpy(vals, values, nv * sizeof *vals);
    for (size_t i = 0; i < nlabels; i++) {
        perftools__profiles__label__init(&lmsg[i]);
        int64_t key = pprof_builder_string(b, labels[i].key);
        int64_t val = 0;
        if (labels[i].str) {
            val = lmsg[i].str = pprof_builder_string(b, labels[i].str);
        } else {
            lmsg[i].num = labels[i].num;
            if (labels[i].num_unit)
                val = lmsg[i].num_unit = pprof_builder_string(b, labels[i].num_unit);
        }
        if (key < 0 || val < 0) {
            free(block);
            return -ENOMEM; /* already sticky */
        }
        lmsg[i].key = key;
        lptr[i] = &lmsg[i];
    }
    Perftools__Profiles__Sample *s = &b->samples[b->nsamples++];
    perftools__profiles__sample__init(s);
    s->location_id = ids; /* the block's start: freed through it */
    s->n_location_id = n;
    s->value = vals;
    s->n_value = nv;
    s->label = lptr;
    s->n_label = nlabels;
    return 0;
}

/* Pointer arrays over the builder's message arrays, for protobuf-c. */
struct encode_ptrs {
    void *st, *m, *f, *l, *s;
};

static void *ptr_array(void *base, size_t n, size_t sz)
{
    void **a = malloc(n ? n * sizeof *a : 1);
    if (a)
        for (size_t i = 0; i < n; i++)
            a[i] = (char *)base + i * sz;
    return a;
}

int pprof_builder_encode_raw(struct pprof_builder *b, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (b->err)
        return b->err;
    struct encode_ptrs p = {
        ptr_array(b->sample_types, b->nsample_types, sizeof *b->sample_types),
        ptr_array(b->mappings, b->nmappings, sizeof *b->mappings),
        ptr_array(b->functions, b->nfunctions, sizeof *b->functions),
        ptr_array(b->locations, b->nlocations, sizeof *b->locations),
        ptr_array(b->samples, b->nsamples, sizeof *b->samples),
    };
    int rc = -ENOMEM;
    if (!p.st || !p.m || !p.f || !p.l || !p.s)
        goto out;
    Perftools__Profiles__Profile msg;
    perftools__profiles__profile__init(&msg);
    msg.n_sample_type = b->nsample_types;
    msg.sample_type = p.st;
    msg.n_sample = b->nsamples;
    msg.sample = p.s;
    msg.n_mapping = b->nmappings;
    msg.mapping = p.m;
    msg.n_location = b->nlocations;
    msg.location = p.l;
    msg.n_function = b->nfunctions;
    msg.function = p.f;
    msg.n_string_table = b->nstrings;
    msg.string_table = b->strings;
    msg.time_nanos = b->time_nanos;
    msg.duration_nanos = b->duration_nanos;
    if (b->has_period_type)
        msg.period_type = &b->period_type;
    msg.period = b->period;
    msg.n_comment = b->ncomments;
    msg.comment = b->comments;
    msg.default_sample_type = b->default_sample_type;

    size_t size = perftools__profiles__profile__get_packed_size(&msg);
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        goto out;
    *len = perftools__profiles__profile__pack(&msg, buf);
    *out = buf;
    rc = 0;
out:
    free(p.st);
    free(p.m);
    free(p.f);
    free(p.l);
    free(p.s);
    return rc;
}

int pprof_builder_encode(struct pprof_builder *b, uint8_t **gz, size_t *len)
{
    uint8_t *raw;
    size_t rawlen;
    *gz = NULL;
    *len = 0;
    int rc = pprof_builder_encode_raw(b, &raw, &rawlen);
    if (rc != 0)
        return rc;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    /* windowBits 15 + 16: a gzip wrapper, as go tool pprof expects. */
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(raw);
        return -ENOMEM;
    }
    size_t cap = deflateBound(&zs, rawlen);
    uint8_t *out = malloc(cap);
    rc = -ENOMEM;
    if (out) {
        /* avail_in/avail_out are 32 bits wide: feed in chunks. */
        size_t in_done = 0;
        zs.next_out = out;
        for (;;) {
            if (zs.avail_in == 0 && in_done < rawlen) {
                size_t chunk = rawlen - in_done > (1u << 30) ? (1u << 30) : rawlen - in_done;
                zs.next_in = raw + in_done;
                zs.avail_in = (uInt)chunk;
                in_done += chunk;
            }
            if (zs.avail_out == 0) {
                size_t left = cap - zs.total_out;
                if (left == 0)
                    break;
                zs.avail_out = left > (1u << 30) ? (1u << 30) : (uInt)left;
            }
            int zr = deflate(&zs, in_done == rawlen ? Z_FINISH : Z_NO_FLUSH);
            if (zr == Z_STREAM_END) {
                *gz = out;
                *len = zs.total_out;
                rc = 0;
                break;
            }
            if (zr != Z_OK)
                break;
        }
        if (rc != 0)
            free(out);
    }
    deflateEnd(&zs);
    free(raw);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Reader                                                              */

/* protobuf-c allocates through this: every byte counted, refused past the
 * limit (set from the payload size), so no input can make decoding take
 * unbounded memory. */
struct budget {
    size_t used, limit;
    bool exceeded, oom;
};

#define BUDGET_HDR 16 /* keeps malloc's 16-byte alignment */

static void *budget_alloc(void *data, size_t size)
{
    struct budget *b = data;
    if (size > b->limit || b->used > b->limit - size - BUDGET_HDR) {
        b->exceeded = true;
        return NULL;
    }
    unsigned char *p = malloc(size + BUDGET_HDR);
    if (!p) {
        b->oom = true;
        return NULL;
    }
    memcpy(p, &size, sizeof size);
    b->used += size + BUDGET_HDR;
    return p + BUDGET_HDR;
}

static void budget_free(void *data, void *ptr)
{
    struct budget *b = data;
    if (!ptr)
        return;
    unsigned char *p = (unsigned char *)ptr - BUDGET_HDR;
    size_t size;
    memcpy(&size, p, sizeof size);
    b->used -= size + BUDGET_HDR;
    free(p);
}

struct pprof_index {
    struct budget budget;
    ProtobufCAllocator allocator; /* must outlive the message */
    Perftools__Profiles__Profile *msg;
    struct hindex mappings, locations, functions; /* id -> array index */
};

void pprof_profile_free(struct pprof_profile *p)
{
    if (!p)
        return;
    struct pprof_index *ix = p->index;
    if (ix) {
        if (ix->msg)
            perftools__profiles__profile__free_unpacked(ix->msg, &ix->allocator);
        hindex_free(&ix->mappings);
        hindex_free(&ix->locations);
        hindex_free(&ix->functions);
        free(ix);
    }
    free(p);
}

/* Inflates a (possibly multi-member) gzip stream, at most
 * PPROF_MAX_DECODED bytes. */
static int gunzip(const uint8_t *in, size_t inlen, uint8_t **out, size_t *outlen, char *err,
                  size_t errlen)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 15 + 16) != Z_OK) {
        set_err(err, errlen, "out of memory starting gzip decompression");
        return -ENOMEM;
    }
    uint8_t *buf = NULL;
    size_t cap = 0, used = 0, consumed = 0;
    int rc = 0;
    for (;;) {
        if (used == cap) {
            if (cap >= PPROF_MAX_DECODED) {
                set_err(err, errlen, "profile larger than %zu MiB once decompressed",
                        PPROF_MAX_DECODED >> 20);
                rc = -EINVAL;
                break;
            }
            size_t ncap = cap ? cap * 2 : (inlen < (1u << 20) ? 4 * inlen + 4096 : inlen * 2);
            if (ncap > PPROF_MAX_DECODED)
                ncap = PPROF_MAX_DECODED;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                set_err(err, errlen, "out of memory decompressing profile");
                rc = -ENOMEM;
                break;
            }
            buf = nb;
            cap = ncap;
        }
        size_t avail = inlen - consumed;
        zs.next_in = (Bytef *)(in + consumed);
        zs.avail_in = avail > UINT_MAX ? UINT_MAX : (uInt)avail;
        zs.next_out = buf + used;
        size_t room = cap - used;
        zs.avail_out = room > UINT_MAX ? UINT_MAX : (uInt)room;
        uInt in0 = zs.avail_in, out0 = zs.avail_out;
        int zr = inflate(&zs, Z_NO_FLUSH);
        consumed += in0 - zs.avail_in;
        used += out0 - zs.avail_out;
        if (zr == Z_STREAM_END) {
            /* Another member may follow (gzip allows concatenation). */
            if (consumed == inlen)
                break;
            if (inlen - consumed >= 2 && in[consumed] == 0x1f && in[consumed + 1] == 0x8b) {
                inflateReset(&zs);
                continue;
            }
            set_err(err, errlen, "trailing garbage after the gzip stream");
            rc = -EINVAL;
            break;
        }
        if (zr == Z_OK)
            continue;
        if (zr == Z_BUF_ERROR && zs.avail_out > 0) { /* no progress with room left */
            set_err(err, errlen, "truncated gzip stream (%zu bytes in, %zu decompressed)", inlen,
                    used);
            rc = -EINVAL;
            break;
        }
        if (zr == Z_BUF_ERROR)
            continue; /* no room: the buffer grows above */
        if (zr == Z_MEM_ERROR) {
            set_err(err, errlen, "out of memory decompressing profile");
            rc = -ENOMEM;
        } else {
            set_err(err, errlen, "corrupt gzip data: %s", zs.msg ? zs.msg : "inflate failed");
            rc = -EINVAL;
        }
        break;
    }
    inflateEnd(&zs);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    *outlen = used;
    return 0;
}

/* Validation: each check names the object and the field. */
struct vctx {
    const Perftools__Profiles__Profile *m;
    char *err;
    size_t errlen;
};

static bool str_ok(struct vctx *v, int64_t idx, const char *what, size_t n, const char *field)
{
    if (idx >= 0 && (uint64_t)idx < v->m->n_string_table)
        return true;
    if (n != SIZE_MAX)
        set_err(v->err, v->errlen,
                "%s %zu: %s string index %" PRId64 " out of range (string table has %zu entries)",
                what, n, field, idx, v->m->n_string_table);
    else
        set_err(v->err, v->errlen,
                "%s: string index %" PRId64 " out of range (string table has %zu entries)", field,
                idx, v->m->n_string_table);
    return false;
}

static int id_eq_mapping(const void *ctx, uint32_t item, const void *key)
{
    return ((const Perftools__Profiles__Profile *)ctx)->mapping[item]->id == *(const uint64_t *)key;
}
static int id_eq_location(const void *ctx, uint32_t item, const void *key)
{
    return ((const Perftools__Profiles__Profile *)ctx)->location[item]->id == *(const uint64_t *)key;
}
static int id_eq_function(const void *ctx, uint32_t item, const void *key)
{
    return ((const Perftools__Profiles__Profile *)ctx)->function[item]->id == *(const uint64_t *)key;
}

/* Indexes n objects by id: nonzero and unique. */
static int index_ids(struct vctx *v, struct hindex *h, size_t n, uint64_t (*id_of)(const void *, size_t),
                     hindex_eq_fn eq, const char *what)
{
    if (n > UINT32_MAX - 1) {
        set_err(v->err, v->errlen, "too many %ss (%zu)", what, n);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t id = id_of(v->m, i);
        if (id == 0) {
            set_err(v->err, v->errlen, "%s #%zu has id 0", what, i);
            return -EINVAL;
        }
        uint32_t hh = hash_u64(id);
        if (hindex_find(h, hh, eq, v->m, &id) >= 0) {
            set_err(v->err, v->errlen, "duplicate %s id %" PRIu64, what, id);
            return -EINVAL;
        }
        if (hindex_insert(h, hh, (uint32_t)i) != 0) {
            set_err(v->err, v->errlen, "out of memory indexing %ss", what);
            return -ENOMEM;
        }
    }
    return 0;
}

static uint64_t mapping_id_of(const void *m, size_t i)
{
    return ((const Perftools__Profiles__Profile *)m)->mapping[i]->id;
}
static uint64_t location_id_of(const void *m, size_t i)
{
    return ((const Perftools__Profiles__Profile *)m)->location[i]->id;
}
static uint64_t function_id_of(const void *m, size_t i)
{
    return ((const Perftools__Profiles__Profile *)m)->function[i]->id;
}

static int64_t lookup(const struct hindex *h, const Perftools__Profiles__Profile *m, uint64_t id,
                      hindex_eq_fn eq)
{
    return hindex_find(h, hash_u64(id), eq, m, &id);
}

static int validate(struct pprof_index *ix, char *err, size_t errlen)
{
    const Perftools__Profiles__Profile *m = ix->msg;
    struct vctx v = {m, err, errlen};
    int rc;

    if (m->n_string_table == 0 || m->string_table[0][0] != '\0') {
        set_err(err, errlen, m->n_string_table == 0 ? "empty string table (not a pprof profile?)"
                                                    : "string_table[0] is not \"\"");
        return -EINVAL;
    }
    for (size_t i = 0; i < m->n_sample_type; i++)
        if (!str_ok(&v, m->sample_type[i]->type, "sample_type", i, "type") ||
            !str_ok(&v, m->sample_type[i]->unit, "sample_type", i, "unit"))
            return -EINVAL;
    if (m->period_type && (!str_ok(&v, m->period_type->type, "period_type", SIZE_MAX, "period_type.type") ||
                           !str_ok(&v, m->period_type->unit, "period_type", SIZE_MAX, "period_type.unit")))
        return -EINVAL;
    for (size_t i = 0; i < m->n_comment; i++)
        if (!str_ok(&v, m->comment[i], "comment", i, "text"))
            return -EINVAL;
    if (!str_ok(&v, m->drop_frames, "drop_frames", SIZE_MAX, "drop_frames") ||
        !str_ok(&v, m->keep_frames, "keep_frames", SIZE_MAX, "keep_frames") ||
        !str_ok(&v, m->default_sample_type, "default_sample_type", SIZE_MAX, "default_sample_type"))
        return -EINVAL;

    if ((rc = index_ids(&v, &ix->mappings, m->n_mapping, mapping_id_of, id_eq_mapping, "mapping")) ||
        (rc = index_ids(&v, &ix->functions, m->n_function, function_id_of, id_eq_function, "function")) ||
        (rc = index_ids(&v, &ix->locations, m->n_location, location_id_of, id_eq_location, "location")))
        return rc;

    for (size_t i = 0; i < m->n_mapping; i++) {
        const Perftools__Profiles__Mapping *mp = m->mapping[i];
        if (!str_ok(&v, mp->filename, "mapping", (size_t)mp->id, "filename") ||
            !str_ok(&v, mp->build_id, "mapping", (size_t)mp->id, "build_id"))
            return -EINVAL;
    }
    for (size_t i = 0; i < m->n_function; i++) {
        const Perftools__Profiles__Function *f = m->function[i];
        if (!str_ok(&v, f->name, "function", (size_t)f->id, "name") ||
            !str_ok(&v, f->system_name, "function", (size_t)f->id, "system_name") ||
            !str_ok(&v, f->filename, "function", (size_t)f->id, "filename"))
            return -EINVAL;
    }
    for (size_t i = 0; i < m->n_location; i++) {
        const Perftools__Profiles__Location *l = m->location[i];
        if (l->mapping_id != 0 && lookup(&ix->mappings, m, l->mapping_id, id_eq_mapping) < 0) {
            set_err(err, errlen, "location %" PRIu64 " references missing mapping %" PRIu64, l->id,
                    l->mapping_id);
            return -EINVAL;
        }
        for (size_t j = 0; j < l->n_line; j++) {
            uint64_t fid = l->line[j]->function_id;
            if (fid != 0 && lookup(&ix->functions, m, fid, id_eq_function) < 0) {
                set_err(err, errlen,
                        "location %" PRIu64 " line %zu references missing function %" PRIu64,
                        l->id, j, fid);
                return -EINVAL;
            }
        }
    }
    for (size_t i = 0; i < m->n_sample; i++) {
        const Perftools__Profiles__Sample *s = m->sample[i];
        if (s->n_value != m->n_sample_type) {
            set_err(err, errlen, "sample %zu has %zu values but the profile has %zu sample types",
                    i, s->n_value, m->n_sample_type);
            return -EINVAL;
        }
        for (size_t j = 0; j < s->n_location_id; j++) {
            if (lookup(&ix->locations, m, s->location_id[j], id_eq_location) < 0) {
                set_err(err, errlen, "sample %zu references missing location %" PRIu64, i,
                        s->location_id[j]);
                return -EINVAL;
            }
        }
        for (size_t j = 0; j < s->n_label; j++) {
            const Perftools__Profiles__Label *lb = s->label[j];
            if (!str_ok(&v, lb->key, "sample", i, "label key") ||
                !str_ok(&v, lb->str, "sample", i, "label str") ||
                !str_ok(&v, lb->num_unit, "sample", i, "label num_unit"))
                return -EINVAL;
        }
    }
    return 0;
}

int pprof_decode(const uint8_t *buf, size_t len, struct pprof_profile **out, char *err,
                 size_t errlen)
{
    *out = NULL;
    set_err(err, errlen, "no error");
    const uint8_t *raw = buf;
    size_t rawlen = len;
    uint8_t *inflated = NULL;
    int rc;

    if (len == 0) {
        set_err(err, errlen, "empty input (0 bytes): not a profile");
        return -EINVAL;
    }
    if (len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b) {
        rc = gunzip(buf, len, &inflated, &rawlen, err, errlen);
        if (rc != 0)
            return rc;
        raw = inflated;
    } else if (len > PPROF_MAX_DECODED) {
        set_err(err, errlen, "profile larger than %zu MiB", PPROF_MAX_DECODED >> 20);
        return -EINVAL;
    }

    struct pprof_profile *p = calloc(1, sizeof *p);
    struct pprof_index *ix = calloc(1, sizeof *ix);
    if (!p || !ix) {
        free(p);
        free(ix);
        free(inflated);
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    p->index = ix;
    /* Decoded structs take at most ~16x the wire size for realistic
     * profiles (a 20-byte Location becomes ~200 bytes in three blocks). */
    ix->budget.limit = ((size_t)64 << 20) + 16 * rawlen;
    ix->allocator.alloc = budget_alloc;
    ix->allocator.free = budget_free;
    ix->allocator.allocator_data = &ix->budget;
    ix->msg = perftools__profiles__profile__unpack(&ix->allocator, rawlen, raw);
    free(inflated);
    if (!ix->msg) {
        if (ix->budget.oom) {
            set_err(err, errlen, "out of memory decoding profile");
            rc = -ENOMEM;
        } else if (ix->budget.exceeded) {
            set_err(err, errlen, "profile needs more than %zu MiB of memory to decode",
                    ix->budget.limit >> 20);
            rc = -EINVAL;
        } else if (rawlen >= 16 && !memcmp(raw, "\0\0\0\0\0\0\0\0\3\0\0\0\0\0\0\0", 16)) {
            set_err(err, errlen,
                    "a legacy gperftools CPU profile, not profile.proto: convert it with "
                    "'go tool pprof -proto BINARY FILE > FILE.pb.gz'");
            rc = -EINVAL;
        } else {
            set_err(err, errlen, "not a valid profile.proto message (%zu bytes)", rawlen);
            rc = -EINVAL;
        }
        pprof_profile_free(p);
        return rc;
    }
    p->pb = ix->msg;
    rc = validate(ix, err, errlen);
    if (rc != 0) {
        pprof_profile_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int pprof_load_file(const char *path, struct pprof_profile **out, char *err, size_t errlen)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        set_err(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    /* A compressed file is smaller than its content, except for
     * incompressible data, which gzip grows by a few bytes per 16 KiB. */
    const size_t max = PPROF_MAX_DECODED + (PPROF_MAX_DECODED >> 10);
    uint8_t *buf = NULL;
    size_t cap = 0, used = 0;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size > max) {
        close(fd);
        set_err(err, errlen, "%s: file too large (%lld bytes, limit %zu MiB)", path,
                (long long)st.st_size, max >> 20);
        return -EFBIG;
    }
    int rc = 0;
    for (;;) {
        if (used == cap) {
            if (cap > max) {
                set_err(err, errlen, "%s: file too large (limit %zu MiB)", path, max >> 20);
                rc = -EFBIG;
                break;
            }
            size_t ncap = cap ? cap * 2 : 1 << 16;
            if (ncap > max + 1)
                ncap = max + 1;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                set_err(err, errlen, "%s: out of memory", path);
                rc = -ENOMEM;
                break;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + used, cap - used);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            set_err(err, errlen, "%s: %s", path, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        used += (size_t)r;
    }
    close(fd);
    if (rc == 0) {
        char msg[512];
        rc = pprof_decode(buf, used, out, msg, sizeof msg);
        if (rc != 0)
            set_err(err, errlen, "%s: %s", path, msg);
    }
    free(buf);
    return rc;
}

const Perftools__Profiles__Mapping *pprof_mapping(const struct pprof_profile *p, uint64_t id)
{
    int64_t i = lookup(&p->index->mappings, p->pb, id, id_eq_mapping);
    return i < 0 ? NULL : p->pb->mapping[i];
}

const Perftools__Profiles__Location *pprof_location(const struct pprof_profile *p, uint64_t id)
{
    int64_t i = lookup(&p->index->locations, p->pb, id, id_eq_location);
    return i < 0 ? NULL : p->pb->location[i];
}

const Perftools__Profiles__Function *pprof_function(const struct pprof_profile *p, uint64_t id)
{
    int64_t i = lookup(&p->index->functions, p->pb, id, id_eq_function);
    return i < 0 ? NULL : p->pb->function[i];
}

const char *pprof_string(const struct pprof_profile *p, int64_t idx)
{
    if (idx < 0 || (uint64_t)idx >= p->pb->n_string_table)
        return "";
    return p->pb->string_table[idx];
}

int pprof_sample_index(const struct pprof_profile *p, const char *name)
{
    const Perftools__Profiles__Profile *m = p->pb;
    if (m->n_sample_type == 0 || m->n_sample_type > INT_MAX)
        return -1;
    if (!name || !*name) {
        if (m->default_sample_type != 0)
            for (size_t i = 0; i < m->n_sample_type; i++)
                if (strcmp(pprof_string(p, m->sample_type[i]->type),
                           pprof_string(p, m->default_sample_type)) == 0)
                    return (int)i;
        return (int)m->n_sample_type - 1;
    }
    for (size_t i = 0; i < m->n_sample_type; i++)
        if (strcmp(pprof_string(p, m->sample_type[i]->type), name) == 0)
            return (int)i;
    char *end;
    errno = 0;
    long v = strtol(name, &end, 10);
    if (errno == 0 && *end == '\0' && end != name && v >= 0 && (size_t)v < m->n_sample_type)
        return (int)v;
    return -1;
}

/* ------------------------------------------------------------------ */
/* Frame names of a decoded profile                                    */

/* The names of every location's lines, innermost first: location i's
 * names are names[start[i] .. start[i + 1]).  A line without a function
 * name (or a location without lines) gets its system name, else
 * "<mapping basename>+0x<file offset>", else "0x<address>". */
struct frame_names {
    const char **names;
    size_t *start;
    char **owned; /* synthesized names */
    size_t nowned;
};

static void frame_names_free(struct frame_names *fn)
{
    for (size_t i = 0; i < fn->nowned; i++)
        free(fn->owned[i]);
    free(fn->owned);
    free(fn->names);
    free(fn->start);
}

static const char *synth_name(const struct pprof_profile *p, const Perftools__Profiles__Location *l,
                              struct frame_names *fn)
{
    char buf[512];
    const Perftools__Profiles__Mapping *m = l->mapping_id ? pprof_mapping(p, l->mapping_id) : NULL;
    const char *file = m ? pprof_string(p, m->filename) : "";
    if (*file) {
        const char *base = strrchr(file, '/');
        base = base ? base + 1 : file;
        uint64_t off = l->address - m->memory_start + m->file_offset;
        snprintf(buf, sizeof buf, "%s+0x%" PRIx64, base, off);
    } else {
        snprintf(buf, sizeof buf, "0x%" PRIx64, l->address);
    }
    char *s = strdup(buf);
    if (!s)
        return NULL;
    fn->owned[fn->nowned++] = s;
    return s;
}

static int frame_names_build(const struct pprof_profile *p, struct frame_names *fn)
{
    const Perftools__Profiles__Profile *m = p->pb;
    memset(fn, 0, sizeof *fn);
    size_t total = 0;
    for (size_t i = 0; i < m->n_location; i++)
        total += m->location[i]->n_line ? m->location[i]->n_line : 1;
    fn->names = malloc((total ? total : 1) * sizeof *fn->names);
    fn->start = malloc((m->n_location + 1) * sizeof *fn->start);
    fn->owned = malloc((total ? total : 1) * sizeof *fn->owned);
    if (!fn->names || !fn->start || !fn->owned)
        goto oom;
    size_t k = 0;
    for (size_t i = 0; i < m->n_location; i++) {
        const Perftools__Profiles__Location *l = m->location[i];
        fn->start[i] = k;
        if (l->n_line == 0) {
            if (!(fn->names[k++] = synth_name(p, l, fn)))
                goto oom;
            continue;
        }
        for (size_t j = 0; j < l->n_line; j++) {
            const Perftools__Profiles__Function *f =
                l->line[j]->function_id ? pprof_function(p, l->line[j]->function_id) : NULL;
            const char *name = f ? pprof_string(p, f->name) : "";
            if (!*name && f)
                name = pprof_string(p, f->system_name);
            if (!*name && !(name = synth_name(p, l, fn)))
                goto oom;
            fn->names[k++] = name;
        }
    }
    fn->start[m->n_location] = k;
    return 0;
oom:
    frame_names_free(fn);
    return -ENOMEM;
}

/* Array index of a sample's location id (validated to exist). */
static size_t loc_index(const struct pprof_profile *p, uint64_t id)
{
    return (size_t)lookup(&p->index->locations, p->pb, id, id_eq_location);
}

/* ------------------------------------------------------------------ */
/* Collapsed stacks                                                    */

struct collapsed_state {
    struct hindex index;
    char *scratch;
    size_t scratchcap;
    size_t cap;
    bool finished;
};

struct pprof_collapsed *pprof_collapsed_new(void)
{
    struct pprof_collapsed *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->state = calloc(1, sizeof *c->state);
    if (!c->state) {
        free(c);
        return NULL;
    }
    return c;
}

void pprof_collapsed_free(struct pprof_collapsed *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        free(c->lines[i].stack);
    free(c->lines);
    if (c->state) {
        hindex_free(&c->state->index);
        free(c->state->scratch);
        free(c->state);
    }
    free(c);
}

static int stack_eq(const void *ctx, uint32_t item, const void *key)
{
    return strcmp(((const struct pprof_collapsed *)ctx)->lines[item].stack, key) == 0;
}

int pprof_collapsed_add(struct pprof_collapsed *c, const char *const *frames, size_t n,
                        int64_t value)
{
    struct collapsed_state *st = c->state;
    if (st->finished)
        return -EINVAL;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = frames[i] && *frames[i] ? strlen(frames[i]) : 1;
        if (l > SIZE_MAX / 2 - len)
            return -ENOMEM;
        len += l + 1;
    }
    if (grow(&st->scratch, &st->scratchcap, len + 1, 1) != 0)
        return -ENOMEM;
    char *w = st->scratch;
    for (size_t i = 0; i < n; i++) {
        if (i)
            *w++ = ';';
        const char *f = frames[i] && *frames[i] ? frames[i] : "?";
        for (; *f; f++)
            *w++ = (*f == ';' || *f == '\n' || *f == '\r') ? '_' : *f;
    }
    *w = '\0';
    uint32_t h = hash_bytes(st->scratch, (size_t)(w - st->scratch));
    int64_t found = hindex_find(&st->index, h, stack_eq, c, st->scratch);
    if (found >= 0) {
        c->lines[found].value = sat_add(c->lines[found].value, value);
        return 0;
    }
    if (c->n >= UINT32_MAX - 1 || grow(&c->lines, &st->cap, c->n + 1, sizeof *c->lines) != 0)
        return -ENOMEM;
    char *copy = strdup(st->scratch);
    if (!copy)
        return -ENOMEM;
    if (hindex_insert(&st->index, h, (uint32_t)c->n) != 0) {
        free(copy);
        return -ENOMEM;
    }
    c->lines[c->n].stack = copy;
    c->lines[c->n].value = value;
    c->n++;
    return 0;
}

static int cmp_stack_line(const void *a, const void *b)
{
    return strcmp(((const struct pprof_stack_line *)a)->stack,
                  ((const struct pprof_stack_line *)b)->stack);
}

void pprof_collapsed_finish(struct pprof_collapsed *c)
{
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (c->lines[i].value == 0)
            free(c->lines[i].stack);
        else
            c->lines[k++] = c->lines[i];
    }
    c->n = k;
    if (c->n > 1)
        qsort(c->lines, c->n, sizeof *c->lines, cmp_stack_line);
    hindex_free(&c->state->index); /* item indexes changed */
    c->state->finished = true;
}

int pprof_collapsed_write(const struct pprof_collapsed *c, FILE *f)
{
    for (size_t i = 0; i < c->n; i++)
        if (fprintf(f, "%s %" PRId64 "\n", c->lines[i].stack, c->lines[i].value) < 0)
            return -EIO;
    return ferror(f) ? -EIO : 0;
}

static bool si_ok(const struct pprof_profile *p, int si)
{
    return si >= 0 && (size_t)si < p->pb->n_sample_type;
}

int pprof_collapse(const struct pprof_profile *p, int si, struct pprof_collapsed **out)
{
    *out = NULL;
    if (!si_ok(p, si))
        return -EINVAL;
    const Perftools__Profiles__Profile *m = p->pb;
    struct frame_names fn;
    if (frame_names_build(p, &fn) != 0)
        return -ENOMEM;
    struct pprof_collapsed *c = pprof_collapsed_new();
    const char **stack = NULL;
    size_t stackcap = 0;
    int rc = c ? 0 : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < m->n_sample; i++) {
        const Perftools__Profiles__Sample *s = m->sample[i];
        int64_t v = s->value[si];
        if (v == 0 || s->n_location_id == 0)
            continue;
        size_t depth = 0;
        for (size_t j = 0; j < s->n_location_id; j++) {
            size_t li = loc_index(p, s->location_id[j]);
            depth += fn.start[li + 1] - fn.start[li];
        }
        if (grow(&stack, &stackcap, depth, sizeof *stack) != 0) {
            rc = -ENOMEM;
            break;
        }
        /* Root first: the last location's last (outermost) line first. */
        size_t k = 0;
        for (size_t j = s->n_location_id; j-- > 0;) {
            size_t li = loc_index(p, s->location_id[j]);
            for (size_t q = fn.start[li + 1]; q-- > fn.start[li];)
                stack[k++] = fn.names[q];
        }
        rc = pprof_collapsed_add(c, stack, k, v);
    }
    free(stack);
    frame_names_free(&fn);
    if (rc != 0) {
        pprof_collapsed_free(c);
        return rc;
    }
    pprof_collapsed_finish(c);
    *out = c;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Top functions                                                       */

struct top_state {
    struct pprof_top_row *rows;
    size_t n, cap;
    struct hindex index;
};

static int row_eq(const void *ctx, uint32_t item, const void *key)
{
    return strcmp(((const struct top_state *)ctx)->rows[item].name, key) == 0;
}

static int64_t row_of(struct top_state *t, const char *name)
{
    uint32_t h = hash_bytes(name, strlen(name));
    int64_t found = hindex_find(&t->index, h, row_eq, t, name);
    if (found >= 0)
        return found;
    if (t->n >= UINT32_MAX - 1 || grow(&t->rows, &t->cap, t->n + 1, sizeof *t->rows) != 0)
        return -1;
    char *copy = strdup(name);
    if (!copy)
        return -1;
    if (hindex_insert(&t->index, h, (uint32_t)t->n) != 0) {
        free(copy);
        return -1;
    }
    t->rows[t->n].name = copy;
    t->rows[t->n].flat = 0;
    t->rows[t->n].cum = 0;
    return (int64_t)t->n++;
}

static int cmp_top_row(const void *a, const void *b)
{
    const struct pprof_top_row *x = a, *y = b;
    if (x->flat != y->flat)
        return x->flat > y->flat ? -1 : 1;
    if (x->cum != y->cum)
        return x->cum > y->cum ? -1 : 1;
    return strcmp(x->name, y->name);
}

void pprof_top_free(struct pprof_top *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        free((char *)t->rows[i].name);
    free(t->rows);
    free(t);
}

int pprof_top_compute(const struct pprof_profile *p, int si, struct pprof_top **out)
{
    *out = NULL;
    if (!si_ok(p, si))
        return -EINVAL;
    const Perftools__Profiles__Profile *m = p->pb;
    struct frame_names fn;
    if (frame_names_build(p, &fn) != 0)
        return -ENOMEM;
    size_t total_names = fn.start[m->n_location];
    struct top_state t = {0};
    /* name slot -> row, and per row the last sample that counted it */
    int64_t *rowof = malloc((total_names ? total_names : 1) * sizeof *rowof);
    size_t *stamp = NULL;
    int rc = rowof ? 0 : -ENOMEM;
    for (size_t k = 0; rc == 0 && k < total_names; k++)
        if ((rowof[k] = row_of(&t, fn.names[k])) < 0)
            rc = -ENOMEM;
    if (rc == 0 && !(stamp = calloc(t.n ? t.n : 1, sizeof *stamp)))
        rc = -ENOMEM;
    int64_t total = 0, min_value = 0;
    for (size_t i = 0; rc == 0 && i < m->n_sample; i++) {
        const Perftools__Profiles__Sample *s = m->sample[i];
        int64_t v = s->value[si];
        int64_t a = sat_abs(v);
        total = sat_add(total, a);
        if (a && (!min_value || a < min_value))
            min_value = a;
        if (v == 0 || s->n_location_id == 0)
            continue;
        size_t leaf = loc_index(p, s->location_id[0]);
        struct pprof_top_row *lr = &t.rows[rowof[fn.start[leaf]]];
        lr->flat = sat_add(lr->flat, v);
        for (size_t j = 0; j < s->n_location_id; j++) {
            size_t li = loc_index(p, s->location_id[j]);
            for (size_t q = fn.start[li]; q < fn.start[li + 1]; q++) {
                int64_t r = rowof[q];
                if (stamp[r] != i + 1) { /* once per sample: recursion */
                    stamp[r] = i + 1;
                    t.rows[r].cum = sat_add(t.rows[r].cum, v);
                }
            }
        }
    }
    free(rowof);
    free(stamp);
    frame_names_free(&fn);
    hindex_free(&t.index);
    struct pprof_top *top = rc == 0 ? calloc(1, sizeof *top) : NULL;
    if (!top) {
        for (size_t i = 0; i < t.n; i++)
            free((char *)t.rows[i].name);
        free(t.rows);
        return -ENOMEM;
    }
    if (t.n > 1)
        qsort(t.rows, t.n, sizeof *t.rows, cmp_top_row);
    top->rows = t.rows;
    top->n = t.n;
    top->total = total;
    top->min_value = min_value;
    top->type = pprof_string(p, m->sample_type[si]->type);
    top->unit = pprof_string(p, m->sample_type[si]->unit);
    *out = top;
    return 0;
}

/* "%.2f" without a ".00" tail, as go tool pprof's measurement package. */
static void scaled(char *buf, size_t len, double v, const char *suffix)
{
    char num[64];
    snprintf(num, sizeof num, "%.2f", v);
    size_t l = strlen(num);
    if (l > 3 && strcmp(num + l - 3, ".00") == 0)
        num[l - 3] = '\0';
    snprintf(buf, len, "%s%s", num, suffix);
}

void pprof_format_value(int64_t value, const char *unit, char *buf, size_t len)
{
    pprof_format_scaled(value, unit, value, buf, len);
}

void pprof_format_scaled(int64_t value, const char *unit, int64_t ref, char *buf, size_t len)
{
    if (value == 0) {
        snprintf(buf, len, "0");
        return;
    }
    double v = (double)value;
    double r = ref < 0 ? -(double)ref : (double)ref;
    if (r == 0)
        r = v < 0 ? -v : v;
    double ns_per = 0;
    if (!strcmp(unit, "nanoseconds") || !strcmp(unit, "ns"))
        ns_per = 1;
    else if (!strcmp(unit, "microseconds") || !strcmp(unit, "us"))
        ns_per = 1e3;
    else if (!strcmp(unit, "milliseconds") || !strcmp(unit, "ms"))
        ns_per = 1e6;
    else if (!strcmp(unit, "seconds") || !strcmp(unit, "s"))
        ns_per = 1e9;
    if (ns_per > 0) {
        v *= ns_per;
        r *= ns_per;
        if (r >= 1e9)
            scaled(buf, len, v / 1e9, "s");
        else if (r >= 1e6)
            scaled(buf, len, v / 1e6, "ms");
        else if (r >= 1e3)
            scaled(buf, len, v / 1e3, "us");
        else
            scaled(buf, len, v, "ns");
        return;
    }
    if (!strcmp(unit, "bytes") || !strcmp(unit, "B")) {
        static const char *const sfx[] = {"B", "kB", "MB", "GB", "TB", "PB"};
        int k = 0;
        while (k < 5 && r >= 1024) {
            r /= 1024;
            v /= 1024;
            k++;
        }
        scaled(buf, len, v, sfx[k]);
        return;
    }
    snprintf(buf, len, "%" PRId64, value);
}

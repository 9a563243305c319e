/*
 * pprof_build.c — the pprof builder and encoder (pprof.h, "Builder").
 *
 * Encoding goes through the protobuf-c code generated from Debian's
 * profile.proto ($(B)/gen/profile.pb-c.c) and zlib.  The builder keeps the
 * protobuf-c message structs themselves in growable arrays (ids are
 * index + 1, which is what go tool pprof expects too) and only builds the
 * pointer arrays protobuf-c wants at encode time.  The string table is a
 * strtab (its strs array is the string_table as is); functions are
 * deduplicated through a hindex keyed by their four fields.
 *
 * Its siblings: pprof_read.c decodes and validates, pprof_summary.c
 * computes top functions and collapsed stacks from a decoded profile.
 */
#include "pprof.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "array.h"
#include "hindex.h"
#include "strtab.h"

struct pprof_builder {
    int err; /* first failure, sticky */

    struct strtab strings; /* strings.strs is the string_table */

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
    strtab_free(&b->strings);
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

int64_t pprof_builder_string(struct pprof_builder *b, const char *s)
{
    int64_t i = strtab_intern(&b->strings, s ? s : "");
    if (i < 0)
        return fail(b, -ENOMEM), -1;
    return i;
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
    if (array_grow(&b->sample_types, &b->capsample_types, b->nsample_types + 1,
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
    if (array_grow(&b->comments, &b->capcomments, b->ncomments + 1, sizeof *b->comments) != 0)
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
        array_grow(&b->mappings, &b->capmappings, b->nmappings + 1, sizeof *b->mappings) != 0)
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
    uint32_t h = hindex_hash_bytes(parts, sizeof parts);
    int64_t found = hindex_find(&b->funcindex, h, func_eq, b, &key);
    if (found >= 0)
        return (uint64_t)found + 1;
    if (b->nfunctions >= HINDEX_MAX_ITEMS ||
        array_grow(&b->functions, &b->capfunctions, b->nfunctions + 1, sizeof *b->functions) != 0 ||
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
        array_grow(&b->locations, &b->caplocations, b->nlocations + 1, sizeof *b->locations) != 0)
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
        array_grow(&b->samples, &b->capsamples, b->nsamples + 1, sizeof *b->samples) != 0)
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

/* ------------------------------------------------------------------ */
/* Encoding                                                            */

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
    msg.n_string_table = b->strings.n;
    msg.string_table = b->strings.strs;
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

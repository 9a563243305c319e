/*
 * pprof_read.c — the validating pprof reader and its lookup index
 * (pprof.h, "Reader"), and the gzip decompression every reader of
 * uploads shares (pprof_gunzip).
 *
 * Decoding trusts nothing: input and decompressed sizes are capped at
 * PPROF_MAX_DECODED, protobuf-c allocates from a budgeted arena (a small
 * message can ask for many tiny allocations, so bytes alone do not bound
 * memory; the arena also makes them cheap and frees them all at once),
 * and validate() checks every cross reference once so that readers never
 * see a dangling index.  Mappings, locations and functions are indexed by
 * id while validating (an array when ids are dense, as builders number
 * them, else a hindex keyed by hindex_hash_u64(id)); the lookups reuse
 * those indexes.
 *
 * Its siblings: pprof_build.c builds and encodes, pprof_summary.c
 * summarizes what this file decoded (through pprof_internal.h).
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

#include "hindex.h"
#include "pprof_internal.h"

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
/* Memory: the decoding arena, the profile and its index               */

/*
 * protobuf-c allocates every message, string and array of a profile on
 * its own: some 16,000 allocations for a 140 KB profile, all freed
 * together.  An arena serves them instead, one per decode:
 *
 *   - small blocks (payload at most ARENA_SMALL bytes) are cut from
 *     chunks by moving a pointer.  A one-word header before each holds
 *     its size class (in ARENA_UNIT units); a freed one goes on its
 *     class's free list for the next allocation of that class.
 *     protobuf-c frees little while decoding (the old value of a field
 *     given twice, replaced by a value of the same type), so that is
 *     enough to keep such input from piling up;
 *   - larger blocks (repeated-field arrays, long strings, protobuf-c's
 *     scratch tables) are malloc'ed one by one behind a header that links
 *     them in a list, and freed for real when protobuf-c frees them.
 *
 * The first chunk is sized for the whole message (decoded structs take
 * ~7x the wire size), later ones double: one or two chunks per decode.
 * Large on purpose: once glibc has unmapped a block that size, it raises
 * its mmap threshold to it and its trim threshold to twice it, so the
 * next decodes get their chunk from the heap, already faulted in.  Many
 * chunks under the initial 128 KiB threshold were trimmed off the heap
 * top and faulted in again at every decode (measured: slower than
 * malloc'ing every message).
 *
 * pprof_profile_free releases everything at once.  The budget counts
 * what the arena holds from malloc (whole chunks, large blocks with their
 * header) and refuses past a limit set from the payload size, so no input
 * can make decoding take unbounded memory (bytes alone would not bound
 * it: a small message can ask for many tiny allocations).
 */
#define ARENA_CHUNK_MIN ((size_t)64 << 10)
#define ARENA_CHUNK_MAX ((size_t)32 << 20)
#define ARENA_UNIT 16 /* malloc's alignment, kept */
#define ARENA_SMALL 1024
#define ARENA_CLASSES ((ARENA_SMALL + sizeof(size_t) + ARENA_UNIT - 1) / ARENA_UNIT + 1)

struct arena_chunk {
    struct arena_chunk *next;
    size_t pad; /* data[] starts 16-aligned */
    unsigned char data[];
};

/* A large block's header, in a list whose pprev points at the pointer
 * to the block; tag (0) sits where a small block keeps its class (>= 1),
 * which is how arena_free tells them apart. */
struct arena_big {
    struct arena_big *next, **pprev;
    size_t size;
    size_t tag;
};

struct arena {
    unsigned char *bump, *end; /* the current chunk's free room */
    struct arena_chunk *chunks;
    struct arena_big *bigs;
    void *free_list[ARENA_CLASSES]; /* freed small blocks, by class */
    size_t next_chunk;              /* bytes */
    size_t used, limit;             /* bytes held from malloc */
    bool exceeded, oom;
};

/* Counts n more bytes held, unless that passes the limit. */
static bool arena_take(struct arena *a, size_t n)
{
    if (n > a->limit || a->used > a->limit - n) {
        a->exceeded = true;
        return false;
    }
    a->used += n;
    return true;
}

/* Small blocks start 8 bytes past a 16-byte boundary and are a multiple
 * of 16 bytes long, so that each payload, just past its header word, is
 * 16-aligned. */
static void *arena_alloc(void *data, size_t size)
{
    struct arena *a = data;
    if (size <= ARENA_SMALL) {
        size_t k = (size + sizeof(size_t) + ARENA_UNIT - 1) / ARENA_UNIT;
        unsigned char *p = a->free_list[k];
        if (p) {
            memcpy(&a->free_list[k], p, sizeof(void *));
            return p;
        }
        if ((size_t)(a->end - a->bump) < k * ARENA_UNIT) {
            /* The last chunk may be cut to what the budget has left. */
            size_t need = sizeof(struct arena_chunk) + sizeof k + k * ARENA_UNIT;
            size_t csize = a->next_chunk, left = a->limit - a->used;
            csize = csize > left ? left : csize;
            if (csize < need || !arena_take(a, csize)) {
                a->exceeded = true;
                return NULL;
            }
            struct arena_chunk *c = malloc(csize);
            if (!c) {
                a->used -= csize;
                a->oom = true;
                return NULL;
            }
            a->next_chunk = a->next_chunk < ARENA_CHUNK_MAX / 2 ? 2 * a->next_chunk
                                                                : ARENA_CHUNK_MAX;
            c->next = a->chunks;
            a->chunks = c;
            a->bump = c->data + sizeof k;
            a->end = (unsigned char *)c + csize;
        }
        p = a->bump;
        a->bump += k * ARENA_UNIT;
        memcpy(p, &k, sizeof k);
        return p + sizeof k;
    }
    if (size > a->limit || !arena_take(a, sizeof(struct arena_big) + size))
        return NULL;
    struct arena_big *g = malloc(sizeof *g + size);
    if (!g) {
        a->used -= sizeof *g + size;
        a->oom = true;
        return NULL;
    }
    *g = (struct arena_big){.next = a->bigs, .pprev = &a->bigs, .size = size};
    if (a->bigs)
        a->bigs->pprev = &g->next;
    a->bigs = g;
    return g + 1;
}

static void arena_free(void *data, void *ptr)
{
    struct arena *a = data;
    if (!ptr)
        return;
    size_t k;
    memcpy(&k, (unsigned char *)ptr - sizeof k, sizeof k);
    if (k != 0) {
        memcpy(ptr, &a->free_list[k], sizeof(void *));
        a->free_list[k] = ptr;
        return;
    }
    struct arena_big *g = (struct arena_big *)ptr - 1;
    *g->pprev = g->next;
    if (g->next)
        g->next->pprev = g->pprev;
    a->used -= sizeof *g + g->size;
    free(g);
}

static void arena_release(struct arena *a)
{
    for (struct arena_chunk *c = a->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    for (struct arena_big *g = a->bigs, *next; g; g = next) {
        next = g->next;
        free(g);
    }
    a->chunks = NULL;
    a->bigs = NULL;
}

/* Mapping, location or function ids to their index in the profile's
 * array.  Builders number them 1, 2, 3, …: a plain array then (dense,
 * NO_ITEM where no object has the id); a hash index for sparse ids. */
#define NO_ITEM UINT32_MAX

struct id_index {
    uint32_t *dense;
    uint64_t ndense;
    struct hindex hash;
};

static void id_index_free(struct id_index *x)
{
    free(x->dense);
    hindex_free(&x->hash);
}

struct pprof_index {
    struct arena arena;
    ProtobufCAllocator allocator; /* must outlive the message */
    Perftools__Profiles__Profile *msg;
    struct id_index mappings, locations, functions;
};

void pprof_profile_free(struct pprof_profile *p)
{
    if (!p)
        return;
    struct pprof_index *ix = p->index;
    if (ix) {
        /* The message lives in the arena: no free_unpacked walk. */
        arena_release(&ix->arena);
        id_index_free(&ix->mappings);
        id_index_free(&ix->locations);
        id_index_free(&ix->functions);
        free(ix);
    }
    free(p);
}

/* ------------------------------------------------------------------ */
/* Decompression                                                       */

/* Where the output buffer starts: the size the gzip trailer states (its
 * ISIZE, the size mod 2^32 of the last member: exact for the usual single
 * member), believed up to deflate's best ratio (1032:1), else 4x the
 * input; never past limit.  Only a start: the buffer grows as needed. */
static size_t gunzip_start_size(const uint8_t *in, size_t len, size_t limit)
{
    size_t guess = len < limit / 4 ? 4 * len + 4096 : limit;
    if (len >= 18) {
        const uint8_t *t = in + len - 4;
        uint32_t isize = (uint32_t)t[0] | (uint32_t)t[1] << 8 | (uint32_t)t[2] << 16 |
                         (uint32_t)t[3] << 24;
        if (isize / 1032 <= len)
            guess = (size_t)isize + 1; /* + 1: the end is seen without growing */
    }
    return guess < limit ? guess : limit;
}

int pprof_gunzip(const uint8_t *in, size_t len, size_t max, uint8_t **out, size_t *outlen,
                 char *err, size_t errlen)
{
    *out = NULL;
    *outlen = 0;
    /* One byte more than max tells "past the limit" from "exactly at it". */
    size_t limit = max < SIZE_MAX ? max + 1 : max;
    size_t cap = gunzip_start_size(in, len, limit);
    uint8_t *buf = malloc(cap);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (!buf || inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
        free(buf);
        set_err(err, errlen, "out of memory starting gzip decompression");
        return -ENOMEM;
    }
    size_t used = 0, consumed = 0;
    int rc = 0;
    for (;;) {
        if (used == cap) {
            if (cap >= limit)
                break; /* one byte past max: refused below */
            size_t ncap = cap > limit / 2 ? limit : cap * 2;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                set_err(err, errlen, "out of memory decompressing profile");
                rc = -ENOMEM;
                break;
            }
            buf = nb;
            cap = ncap;
        }
        /* z_stream counts in uInt: at most 1 GiB at a time. */
        size_t in_chunk = len - consumed < (1u << 30) ? len - consumed : (1u << 30);
        size_t out_chunk = cap - used < (1u << 30) ? cap - used : (1u << 30);
        zs.next_in = (Bytef *)(in + consumed);
        zs.avail_in = (uInt)in_chunk;
        zs.next_out = buf + used;
        zs.avail_out = (uInt)out_chunk;
        int zr = inflate(&zs, Z_NO_FLUSH);
        consumed += in_chunk - zs.avail_in;
        used += out_chunk - zs.avail_out;
        if (zr == Z_STREAM_END) {
            /* Another member may follow (gzip allows concatenation). */
            if (consumed == len)
                break;
            if (len - consumed >= 2 && in[consumed] == 0x1f && in[consumed + 1] == 0x8b) {
                inflateReset(&zs);
                continue;
            }
            set_err(err, errlen, "trailing garbage after the gzip stream (%zu bytes)",
                    len - consumed);
            rc = -EINVAL;
            break;
        }
        if (zr == Z_OK || (zr == Z_BUF_ERROR && zs.avail_out == 0))
            continue; /* progress, or output full: the buffer grows above */
        if (zr == Z_BUF_ERROR) { /* no progress with room left: input ran out */
            set_err(err, errlen, "truncated gzip stream (%zu bytes in, %zu decompressed)", len,
                    used);
            rc = -EINVAL;
        } else if (zr == Z_MEM_ERROR) {
            set_err(err, errlen, "out of memory decompressing profile");
            rc = -ENOMEM;
        } else {
            set_err(err, errlen, "corrupt gzip data: %s", zs.msg ? zs.msg : "inflate failed");
            rc = -EINVAL;
        }
        break;
    }
    inflateEnd(&zs);
    if (rc == 0 && used > max) { /* also a stream that ends right there */
        set_err(err, errlen, "larger than %zu MiB once decompressed", max >> 20);
        rc = -EFBIG;
    }
    if (rc != 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    *outlen = used;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Validation and the index by id                                      */

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

static int64_t lookup(const struct id_index *x, const Perftools__Profiles__Profile *m,
                      uint64_t id, hindex_eq_fn eq)
{
    if (x->dense)
        return id < x->ndense && x->dense[id] != NO_ITEM ? (int64_t)x->dense[id] : -1;
    return hindex_find(&x->hash, hindex_hash_u64(id), eq, m, &id);
}

/* Indexes n objects by id: nonzero and unique.  Errors name the first
 * bad object in array order. */
static int index_ids(struct vctx *v, struct id_index *x, size_t n,
                     uint64_t (*id_of)(const void *, size_t), hindex_eq_fn eq, const char *what)
{
    if (n > UINT32_MAX - 1) {
        set_err(v->err, v->errlen, "too many %ss (%zu)", what, n);
        return -EINVAL;
    }
    uint64_t maxid = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t id = id_of(v->m, i);
        maxid = id > maxid ? id : maxid;
    }
    /* At most ~8 bytes per object: bounded by what the input holds. */
    if (n > 0 && maxid <= 2 * (uint64_t)n + 64) {
        x->ndense = maxid + 1;
        if (!(x->dense = malloc(x->ndense * sizeof *x->dense))) {
            set_err(v->err, v->errlen, "out of memory indexing %ss", what);
            return -ENOMEM;
        }
        memset(x->dense, 0xff, x->ndense * sizeof *x->dense);
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t id = id_of(v->m, i);
        if (id == 0) {
            set_err(v->err, v->errlen, "%s #%zu has id 0", what, i);
            return -EINVAL;
        }
        if (lookup(x, v->m, id, eq) >= 0) {
            set_err(v->err, v->errlen, "duplicate %s id %" PRIu64, what, id);
            return -EINVAL;
        }
        if (x->dense)
            x->dense[id] = (uint32_t)i;
        else if (hindex_insert(&x->hash, hindex_hash_u64(id), (uint32_t)i) != 0) {
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

/* ------------------------------------------------------------------ */
/* Decoding                                                            */

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
        rc = pprof_gunzip(buf, len, PPROF_MAX_DECODED, &inflated, &rawlen, err, errlen);
        if (rc == -EFBIG) {
            set_err(err, errlen, "profile larger than %zu MiB once decompressed",
                    PPROF_MAX_DECODED >> 20);
            rc = -EINVAL;
        }
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
    ix->arena.limit = ((size_t)64 << 20) + 16 * rawlen;
    ix->arena.next_chunk = rawlen < ARENA_CHUNK_MIN / 8   ? ARENA_CHUNK_MIN
                           : rawlen < ARENA_CHUNK_MAX / 8 ? 8 * rawlen
                                                          : ARENA_CHUNK_MAX;
    ix->allocator.alloc = arena_alloc;
    ix->allocator.free = arena_free;
    ix->allocator.allocator_data = &ix->arena;
    ix->msg = perftools__profiles__profile__unpack(&ix->allocator, rawlen, raw);
    if (!ix->msg) {
        if (ix->arena.oom) {
            set_err(err, errlen, "out of memory decoding profile");
            rc = -ENOMEM;
        } else if (ix->arena.exceeded) {
            set_err(err, errlen, "profile needs more than %zu MiB of memory to decode",
                    ix->arena.limit >> 20);
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
        free(inflated); /* raw may be it: read above */
        pprof_profile_free(p);
        return rc;
    }
    free(inflated);
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

/* ------------------------------------------------------------------ */
/* Lookups                                                             */

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

size_t pprof_location_index(const struct pprof_profile *p, uint64_t id)
{
    return (size_t)lookup(&p->index->locations, p->pb, id, id_eq_location);
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

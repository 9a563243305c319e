/*
 * pprof_read.c — the validating pprof reader and its lookup index
 * (pprof.h, "Reader").
 *
 * Decoding trusts nothing: input and decompressed sizes are capped at
 * PPROF_MAX_DECODED, protobuf-c allocates through a budgeted allocator (a
 * small message can ask for many tiny allocations, so bytes alone do not
 * bound memory), and validate() checks every cross reference once so that
 * readers never see a dangling index.  Mappings, locations and functions
 * are indexed by id (a hindex each, keyed by hindex_hash_u64(id)) while
 * validating; the lookups reuse those indexes.
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
/* Memory: the decoding budget, the profile and its index              */

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

/* ------------------------------------------------------------------ */
/* Decompression                                                       */

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
        uint32_t hh = hindex_hash_u64(id);
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
    return hindex_find(h, hindex_hash_u64(id), eq, m, &id);
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

/*
 * eh_frame.c — reads the .eh_frame of a loaded module (or a raw image of
 * one, for tests): the record layer under unwind_table.c, which runs the
 * CFA programs this file hands it.  Runs on a normal thread (modules.c,
 * under its mutex), never in a signal handler.
 *
 * Format (LSB "Exception Frames", DWARF 4 section 6.4.1)
 * -------------------------------------------------------
 * .eh_frame is a sequence of records, each a 4-byte length (0xffffffff:
 * an 8-byte length follows), a 4-byte id, and a body:
 *   - id 0: a CIE -- version, augmentation string, code and data alignment
 *     factors, return address column, augmentation data ('z' gives its
 *     length; 'R' the FDEs' pointer encoding, 'P' a personality pointer,
 *     'L' the LSDA encoding, 'S' a signal frame), then initial CFA
 *     instructions;
 *   - otherwise an FDE, whose id counts back from the id field itself to
 *     its CIE: pc_begin and pc_range in the CIE's encoding, augmentation
 *     data if the CIE has 'z', then the FDE's CFA instructions.
 * A zero length ends the section.  In memory the section has no size of
 * its own: we find it through PT_GNU_EH_FRAME (.eh_frame_hdr's
 * eh_frame_ptr) and bound it by the end of its PT_LOAD segment.
 *
 * Pointer encodings (DW_EH_PE_*): the low nibble is the value's format
 * (absptr, [us]data2/4/8, [us]leb128), bits 4-6 what it is relative to
 * (pcrel: the field's own address; datarel: .eh_frame_hdr's start), bit 7
 * an indirection through memory.
 *
 * Robustness: the input may be garbage (tests fuzz it).  Every read goes
 * through a cursor bounded by the current record, which is bounded by the
 * image; sizes from the input are checked before use; pointers are
 * dereferenced (DW_EH_PE_indirect) only inside the image or, for a real
 * module, inside one of its PT_LOAD segments; a personality pointer is
 * skipped, never read.  Malformed input gives -EINVAL.
 */
#include "eh_frame.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

/* Pointer encodings (LSB, "DWARF Extensions": DW_EH_PE_*). */
#define PE_ABSPTR 0x00
#define PE_ULEB128 0x01
#define PE_UDATA2 0x02
#define PE_UDATA4 0x03
#define PE_UDATA8 0x04
#define PE_SLEB128 0x09
#define PE_SDATA2 0x0a
#define PE_SDATA4 0x0b
#define PE_SDATA8 0x0c
#define PE_PCREL 0x10
#define PE_TEXTREL 0x20
#define PE_DATAREL 0x30
#define PE_FUNCREL 0x40
#define PE_ALIGNED 0x50
#define PE_INDIRECT 0x80
#define PE_OMIT 0xff

/* ---- primitive reads ----------------------------------------------------- */

static uintptr_t cursor_addr(const struct eh_frame_image *img, const struct eh_frame_cursor *c)
{
    return img->addr + (uintptr_t)(c->p - img->base);
}

int eh_frame_read_bytes(struct eh_frame_cursor *c, void *out, size_t n)
{
    if ((size_t)(c->end - c->p) < n)
        return -EINVAL;
    memcpy(out, c->p, n);
    c->p += n;
    return 0;
}

int eh_frame_skip(struct eh_frame_cursor *c, uint64_t n)
{
    if ((uint64_t)(c->end - c->p) < n)
        return -EINVAL;
    c->p += n;
    return 0;
}

int eh_frame_read_u8(struct eh_frame_cursor *c, uint8_t *v)
{
    return eh_frame_read_bytes(c, v, 1);
}

int eh_frame_read_uleb(struct eh_frame_cursor *c, uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        uint8_t b;
        if (eh_frame_read_u8(c, &b) < 0)
            return -EINVAL;
        if (shift < 64)
            r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -EINVAL; /* more than 10 bytes: not a 64-bit value */
}

int eh_frame_read_sleb(struct eh_frame_cursor *c, int64_t *v)
{
    uint64_t r = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        uint8_t b;
        if (eh_frame_read_u8(c, &b) < 0)
            return -EINVAL;
        if (shift < 64)
            r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            if ((b & 0x40) && shift + 7 < 64)
                r |= ~(uint64_t)0 << (shift + 7);
            memcpy(v, &r, sizeof r); /* two's complement, no UB */
            return 0;
        }
    }
    return -EINVAL;
}

/* ---- encoded pointers ---------------------------------------------------- */

/* Reads 8 bytes at absolute address addr, but only if they lie inside the
 * image or inside a PT_LOAD segment of the module (mapped while the caller
 * holds the module). */
static int deref(const struct eh_frame_image *img, uintptr_t addr, uint64_t *out)
{
    if (addr >= img->addr && img->len >= 8 && addr - img->addr <= img->len - 8) {
        memcpy(out, img->base + (addr - img->addr), 8);
        return 0;
    }
    const struct dl_phdr_info *m = img->module;
    if (m != NULL) {
        for (int i = 0; i < m->dlpi_phnum; i++) {
            const ElfW(Phdr) *ph = &m->dlpi_phdr[i];
            if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_R) || ph->p_memsz < 8)
                continue;
            uintptr_t lo = m->dlpi_addr + ph->p_vaddr;
            if (addr >= lo && addr - lo <= ph->p_memsz - 8) {
                memcpy(out, (const void *)addr, 8);
                return 0;
            }
        }
    }
    return -EINVAL;
}

/* Reads the value part of an encoded pointer (the low 4 bits of enc). */
static int read_encoded_value(struct eh_frame_cursor *c, uint8_t enc, uint64_t *v)
{
    union {
        uint16_t u16;
        uint32_t u32;
        uint64_t u64;
        int16_t s16;
        int32_t s32;
    } u;
    int64_t s;
    switch (enc & 0x0f) {
    case PE_ABSPTR:
    case PE_UDATA8:
    case PE_SDATA8:
        if (eh_frame_read_bytes(c, &u.u64, 8) < 0)
            return -EINVAL;
        *v = u.u64;
        return 0;
    case PE_UDATA2:
        if (eh_frame_read_bytes(c, &u.u16, 2) < 0)
            return -EINVAL;
        *v = u.u16;
        return 0;
    case PE_UDATA4:
        if (eh_frame_read_bytes(c, &u.u32, 4) < 0)
            return -EINVAL;
        *v = u.u32;
        return 0;
    case PE_SDATA2:
        if (eh_frame_read_bytes(c, &u.s16, 2) < 0)
            return -EINVAL;
        *v = (uint64_t)(int64_t)u.s16;
        return 0;
    case PE_SDATA4:
        if (eh_frame_read_bytes(c, &u.s32, 4) < 0)
            return -EINVAL;
        *v = (uint64_t)(int64_t)u.s32;
        return 0;
    case PE_ULEB128:
        return eh_frame_read_uleb(c, v);
    case PE_SLEB128:
        if (eh_frame_read_sleb(c, &s) < 0)
            return -EINVAL;
        *v = (uint64_t)s;
        return 0;
    default:
        return -EINVAL;
    }
}

static int align_for(const struct eh_frame_image *img, struct eh_frame_cursor *c, uint8_t enc)
{
    if ((enc & 0x70) != PE_ALIGNED)
        return 0;
    uintptr_t a = cursor_addr(img, c);
    return eh_frame_skip(c, (8 - (a & 7)) & 7);
}

int eh_frame_read_encoded(const struct eh_frame_image *img, struct eh_frame_cursor *c,
                          uint8_t enc, uintptr_t datarel_base, uint64_t *out)
{
    if (enc == PE_OMIT || align_for(img, c, enc) < 0)
        return -EINVAL;
    uintptr_t field = cursor_addr(img, c);
    uint64_t v;
    if (read_encoded_value(c, enc, &v) < 0)
        return -EINVAL;
    switch (enc & 0x70) {
    case 0:
    case PE_ALIGNED:
        break;
    case PE_PCREL:
        v += field; /* unsigned: wraps like the hardware does */
        break;
    case PE_DATAREL:
        if (datarel_base == 0)
            return -EINVAL;
        v += datarel_base;
        break;
    case PE_TEXTREL: /* unused on x86-64 Linux */
    case PE_FUNCREL:
    default:
        return -EINVAL;
    }
    if (enc & PE_INDIRECT)
        return deref(img, (uintptr_t)v, out);
    *out = v;
    return 0;
}

/* Skips an encoded pointer whose value we do not need (the personality
 * routine): only its size matters, nothing is dereferenced. */
static int skip_encoded(const struct eh_frame_image *img, struct eh_frame_cursor *c, uint8_t enc)
{
    uint64_t v;
    if (enc == PE_OMIT)
        return 0;
    if (align_for(img, c, enc) < 0)
        return -EINVAL;
    return read_encoded_value(c, enc, &v);
}

/* ---- records ------------------------------------------------------------- */

/* Reads a record's length at section offset off.  On success *body is the
 * cursor over the record after the length field, *next the offset of the
 * following record; body->p == body->end for the zero terminator. */
static int read_record(const struct eh_frame_image *img, size_t off, struct eh_frame_cursor *body,
                       size_t *next)
{
    struct eh_frame_cursor c = {img->base + off, img->base + img->len};
    uint32_t len32;
    uint64_t len;
    if (eh_frame_read_bytes(&c, &len32, 4) < 0)
        return -EINVAL;
    len = len32;
    if (len32 == 0xffffffffu && eh_frame_read_bytes(&c, &len, 8) < 0)
        return -EINVAL;
    if (len > (uint64_t)(c.end - c.p))
        return -EINVAL;
    body->p = c.p;
    body->end = c.p + len;
    *next = (size_t)(body->end - img->base);
    return 0;
}

/* A CIE being read, and whether its FDEs can be read at all. */
struct cie_rec {
    struct eh_frame_cie cie;
    int has_z;
    int layout_known; /* 0: an augmentation without 'z' */
};

static int parse_cie(const struct eh_frame_image *img, size_t off, struct cie_rec *cr)
{
    struct eh_frame_cie *cie = &cr->cie;
    struct eh_frame_cursor c;
    size_t next;
    uint32_t id;
    uint8_t version, b;

    memset(cr, 0, sizeof *cr);
    cie->off = off;
    cie->fde_enc = PE_ABSPTR;
    cr->layout_known = 1;
    if (read_record(img, off, &c, &next) < 0 || eh_frame_read_bytes(&c, &id, 4) < 0 || id != 0)
        return -EINVAL;
    if (eh_frame_read_u8(&c, &version) < 0 || (version != 1 && version != 3 && version != 4))
        return -EINVAL;

    const uint8_t *aug = c.p;
    const uint8_t *nul = memchr(c.p, 0, (size_t)(c.end - c.p));
    if (nul == NULL)
        return -EINVAL;
    c.p = nul + 1;
    if (version == 4 && eh_frame_skip(&c, 2) < 0) /* address_size, segment_size */
        return -EINVAL;
    if (eh_frame_read_uleb(&c, &cie->code_align) < 0 ||
        eh_frame_read_sleb(&c, &cie->data_align) < 0)
        return -EINVAL;
    if (version == 1) {
        if (eh_frame_read_u8(&c, &b) < 0)
            return -EINVAL;
        cie->ra_column = b;
    } else if (eh_frame_read_uleb(&c, &cie->ra_column) < 0) {
        return -EINVAL;
    }

    if (aug[0] == 'z') {
        uint64_t auglen;
        if (eh_frame_read_uleb(&c, &auglen) < 0 || (uint64_t)(c.end - c.p) < auglen)
            return -EINVAL;
        struct eh_frame_cursor a = {c.p, c.p + auglen};
        c.p += auglen;
        cr->has_z = 1;
        /* 'z' gives the data's length, so a letter we do not know (e.g.
         * AArch64's 'B', MTE's 'G') only stops the scan: the rest is
         * skipped through the length. */
        for (const uint8_t *q = aug + 1; *q; q++) {
            if (*q == 'R') {
                if (eh_frame_read_u8(&a, &cie->fde_enc) < 0)
                    return -EINVAL;
            } else if (*q == 'L') {
                if (eh_frame_read_u8(&a, &b) < 0) /* LSDA encoding: the FDE's aug data */
                    return -EINVAL;
            } else if (*q == 'P') {
                if (eh_frame_read_u8(&a, &b) < 0 || skip_encoded(img, &a, b) < 0)
                    return -EINVAL;
            } else if (*q == 'S') {
                /* signal frame: nothing to read; its CFA is an expression */
            } else {
                break;
            }
        }
    } else if (aug[0] != 0) {
        /* An augmentation without 'z' we do not know ("eh" is GCC 2.x): the
         * layout of the rest is unknown, so FDEs using this CIE are skipped. */
        cr->layout_known = 0;
        cie->insns = (struct eh_frame_cursor){c.end, c.end};
        return 0;
    }
    if (cie->fde_enc == PE_OMIT)
        return -EINVAL;
    cie->insns = c;
    return 0;
}

/* Reads an FDE's body after its CIE pointer. */
static int parse_fde(const struct eh_frame_image *img, struct eh_frame_cursor c,
                     const struct cie_rec *cr, struct eh_frame_fde *fde)
{
    if (eh_frame_read_encoded(img, &c, cr->cie.fde_enc, 0, &fde->pc_begin) < 0 ||
        read_encoded_value(&c, cr->cie.fde_enc, &fde->pc_range) < 0)
        return -EINVAL;
    if (cr->has_z) {
        uint64_t auglen;
        if (eh_frame_read_uleb(&c, &auglen) < 0 || eh_frame_skip(&c, auglen) < 0)
            return -EINVAL; /* skips the LSDA pointer, whatever its encoding */
    }
    fde->insns = c;
    return 0;
}

int eh_frame_for_each_fde(const struct eh_frame_image *img, eh_frame_fde_fn fn, void *arg,
                          size_t *nfdes)
{
    /* The CIE of the last FDE: FDEs mostly share one or two. */
    struct cie_rec cr;
    size_t cr_off = SIZE_MAX, off = 0;
    *nfdes = 0;
    if (img->base == NULL || img->len > EH_FRAME_MAX)
        return -EINVAL;
    while (off < img->len) {
        struct eh_frame_cursor body;
        size_t next;
        uint32_t id;
        if (img->len - off < 4) {
            /* A few bytes of padding after the last record. */
            while (off < img->len && img->base[off] == 0)
                off++;
            return off == img->len ? 0 : -EINVAL;
        }
        if (read_record(img, off, &body, &next) < 0)
            return -EINVAL;
        if (body.p == body.end)
            return 0; /* zero terminator */
        size_t id_off = (size_t)(body.p - img->base);
        if (eh_frame_read_bytes(&body, &id, 4) < 0)
            return -EINVAL;
        /* A CIE is parsed where it stands (so that a broken one is found
         * even if no FDE uses it) and again, cached, for its FDEs.  An
         * FDE's CIE pointer counts back from its own field. */
        size_t cie_off = id == 0 ? off : id_off - id;
        if (id != 0 && id > id_off)
            return -EINVAL;
        if (cie_off != cr_off) {
            cr_off = SIZE_MAX;
            if (parse_cie(img, cie_off, &cr) < 0)
                return -EINVAL;
            cr_off = cie_off;
        }
        if (id != 0) {
            struct eh_frame_fde fde;
            if (parse_fde(img, body, &cr, &fde) < 0)
                return -EINVAL;
            if (cr.layout_known) {
                int err = fn(img, &cr.cie, &fde, arg);
                if (err < 0)
                    return err;
            }
            ++*nfdes;
        }
        off = next;
    }
    return 0;
}

/* ---- finding .eh_frame in a loaded module -------------------------------- */

/* The readable bytes of the module from addr to the end of its PT_LOAD
 * segment, 0 if addr is in none. */
static size_t mapped_after(const struct dl_phdr_info *info, uintptr_t addr)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_R))
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (addr >= lo && addr - lo < ph->p_filesz)
            return ph->p_filesz - (addr - lo);
    }
    return 0;
}

int eh_frame_locate(const struct dl_phdr_info *info, struct eh_frame_image *img,
                    size_t *fde_count)
{
    const ElfW(Phdr) *hdr_ph = NULL;
    memset(img, 0, sizeof *img);
    *fde_count = 0;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_GNU_EH_FRAME)
            hdr_ph = &info->dlpi_phdr[i];
    if (hdr_ph == NULL)
        return 0;

    /* .eh_frame_hdr: version, eh_frame_ptr_enc, fde_count_enc, table_enc,
     * eh_frame_ptr, fde_count, then a binary-search table we don't use. */
    uintptr_t hdr = info->dlpi_addr + hdr_ph->p_vaddr;
    size_t hdr_len = hdr_ph->p_memsz;
    size_t avail = mapped_after(info, hdr);
    if (hdr_len > avail)
        hdr_len = avail;
    struct eh_frame_image himg = {(const uint8_t *)hdr, hdr_len, hdr, info};
    struct eh_frame_cursor c = {himg.base, himg.base + hdr_len};
    uint8_t version, ptr_enc, count_enc, table_enc;
    uint64_t eh_frame, count = 0;
    if (eh_frame_read_u8(&c, &version) < 0 || version != 1 ||
        eh_frame_read_u8(&c, &ptr_enc) < 0 || eh_frame_read_u8(&c, &count_enc) < 0 ||
        eh_frame_read_u8(&c, &table_enc) < 0 ||
        eh_frame_read_encoded(&himg, &c, ptr_enc, hdr, &eh_frame) < 0)
        return -EINVAL;
    if (count_enc == PE_OMIT || eh_frame_read_encoded(&himg, &c, count_enc, hdr, &count) < 0)
        count = 0;

    size_t len = mapped_after(info, (uintptr_t)eh_frame);
    if (len == 0)
        return -EINVAL;
    if (len > EH_FRAME_MAX)
        len = EH_FRAME_MAX;
    *img = (struct eh_frame_image){(const uint8_t *)(uintptr_t)eh_frame, len, (uintptr_t)eh_frame,
                                   info};
    *fde_count = (size_t)count;
    return 1;
}

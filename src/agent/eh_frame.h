/*
 * eh_frame.h — a bounded reader for the .eh_frame section of a loaded
 * module: finds it (PT_GNU_EH_FRAME -> .eh_frame_hdr), walks its CIE and
 * FDE records, decodes pointer encodings and LEB128 numbers.  It knows the
 * record format, not what the CFA programs mean: unwind_table.c runs those.
 *
 * Every read is bounded by the image (and the current record); input may
 * be garbage.  Runs on a normal thread, never in a signal handler.  The
 * image must stay mapped while it is read (for a real module: inside a
 * dl_iterate_phdr callback).
 */
#ifndef SONDE_EH_FRAME_H
#define SONDE_EH_FRAME_H

#include <link.h>
#include <stddef.h>
#include <stdint.h>

/* An .eh_frame larger than this is not one (libc's is ~200 KiB). */
#define EH_FRAME_MAX (256u << 20)

/* The bytes being parsed and where they live in the address space. */
struct eh_frame_image {
    const uint8_t *base;
    size_t len;
    uintptr_t addr;                    /* address of base[0] as loaded */
    const struct dl_phdr_info *module; /* for indirect pointers; may be NULL */
};

/* A bounded reader: [p, end) lies inside the image. */
struct eh_frame_cursor {
    const uint8_t *p, *end;
};

/* A CIE as the FDEs that use it need it. */
struct eh_frame_cie {
    size_t off;           /* of the record in the section */
    uint64_t code_align;
    int64_t data_align;
    uint64_t ra_column;   /* return address register */
    uint8_t fde_enc;      /* DW_EH_PE_* of the FDEs' pc_begin / pc_range */
    struct eh_frame_cursor insns; /* the initial instructions */
};

/* An FDE: the code [pc_begin, pc_begin + pc_range) and its CFA program. */
struct eh_frame_fde {
    uint64_t pc_begin, pc_range; /* absolute addresses, as loaded */
    struct eh_frame_cursor insns;
};

/* The primitive reads: 0, or -EINVAL (and the cursor is then unspecified)
 * if the value does not fit before c->end.  uleb/sleb reject encodings
 * longer than 10 bytes. */
int eh_frame_read_bytes(struct eh_frame_cursor *c, void *out, size_t n);
int eh_frame_skip(struct eh_frame_cursor *c, uint64_t n);
int eh_frame_read_u8(struct eh_frame_cursor *c, uint8_t *v);
int eh_frame_read_uleb(struct eh_frame_cursor *c, uint64_t *v);
int eh_frame_read_sleb(struct eh_frame_cursor *c, int64_t *v);

/* Reads a pointer encoded with enc (DW_EH_PE_*; c must be inside img).
 * datarel_base is the base for DW_EH_PE_datarel (the .eh_frame_hdr
 * start), 0 where it has no meaning.  An indirect pointer is dereferenced
 * only inside the image or one of img->module's PT_LOAD segments.  0 or
 * -EINVAL. */
int eh_frame_read_encoded(const struct eh_frame_image *img, struct eh_frame_cursor *c,
                          uint8_t enc, uintptr_t datarel_base, uint64_t *out);

/* Called for each FDE, with the CIE it uses; a negative return stops the
 * walk and is returned by eh_frame_for_each_fde. */
typedef int (*eh_frame_fde_fn)(const struct eh_frame_image *img, const struct eh_frame_cie *cie,
                               const struct eh_frame_fde *fde, void *arg);

/* Walks every record of img up to the zero terminator (or the end of the
 * image, or trailing zero padding), calling fn for each FDE.  FDEs whose
 * CIE has an augmentation without 'z' (the layout of their data is then
 * unknown) are counted but not passed to fn.  *nfdes counts the FDEs read
 * before the walk ended, so that a caller can tell bytes following an
 * unterminated section from a broken one.  0, -EINVAL for a malformed
 * record, or fn's negative return. */
int eh_frame_for_each_fde(const struct eh_frame_image *img, eh_frame_fde_fn fn, void *arg,
                          size_t *nfdes);

/* Finds the .eh_frame of a loaded module through PT_GNU_EH_FRAME: *img is
 * the section from its start to the end of the PT_LOAD segment holding it
 * (the section has no length of its own in memory; it ends at the zero
 * terminator the linker appends, crtend.o's __FRAME_END__), at most
 * EH_FRAME_MAX bytes; *fde_count is the number of FDEs .eh_frame_hdr lists
 * (0 if it does not say).  1 if found, 0 if the module has no
 * PT_GNU_EH_FRAME, -EINVAL if the header is malformed or points outside
 * the module. */
int eh_frame_locate(const struct dl_phdr_info *info, struct eh_frame_image *img,
                    size_t *fde_count);

#endif

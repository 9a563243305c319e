/*
 * qsort_cmp_nofp.c — qsort_cmp.c built with -O2 -fomit-frame-pointer
 * (PROG_FLAGS_qsort_cmp_nofp in flags.mk): the same program with no frame
 * pointers in its own code either, so only a DWARF/CFI unwinder finds main.
 */
#include "qsort_cmp.c"

# flags.mk — per-program compiler flags for tests/system/progs, included by
# the top-level Makefile (PROG_FLAGS_<name>, added after -O1 -g -pthread).

# qsort_cmp.c again, optimised and without frame pointers.
PROG_FLAGS_qsort_cmp_nofp := -O2 -fomit-frame-pointer
# qsort_cmp itself keeps frame pointers so the two builds differ.
PROG_FLAGS_qsort_cmp := -fno-omit-frame-pointer
# backtrace_symbols() names only dynamic symbols: export ours.
PROG_FLAGS_backtrace_prog := -rdynamic
# Exceptions thrown across frames of our own, no frame pointers to lean on.
PROG_FLAGS_exceptions := -O2

# flags.mk — per-program flags for bench/*.c, included by the top-level
# Makefile: BENCH_FLAGS_<name> (compiler), BENCH_LIBS_<name> (linker).

# Keep deep64's 62 recursive frames: no sibling-call or recursion folding.
BENCH_FLAGS_deep64 := -fno-optimize-sibling-calls -fno-inline
BENCH_FLAGS_busy2 := -pthread
# The launcher's own image must be small (see measure.c).
BENCH_FLAGS_measure := -static
# unwind_cost.c times the agent's own stack walker over its own tables: it
# needs the agent's internal headers and objects (libsonde_internal.a).
BENCH_FLAGS_unwind_cost := -Iinclude -Isrc -Isrc/agent -I$(B)/gen $(PKG_CFLAGS)
BENCH_LIBS_unwind_cost := $(LIBSONDE_A) $(AGENT_LIBS) $(SANFLAGS)
$(B)/bench/unwind_cost: $(LIBSONDE_A)

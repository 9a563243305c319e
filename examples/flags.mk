# flags.mk — per-program flags for examples/*.c, included by the top-level
# Makefile: EXAMPLE_FLAGS_<name> (compiler, after -O1 -g -pthread),
# EXAMPLE_LIBS_<name> (linker).

# The demo service: libmicrohttpd; frame pointers and no sibling-call
# folding so that every named function of the demo keeps its frame in a
# flame graph.  Not linked with libsonde: it calls the span API through
# weak references (see demo_service.c), which needs a PIE executable.
EXAMPLE_FLAGS_demo_service := -fno-omit-frame-pointer -fno-optimize-sibling-calls -fPIE -pie \
	$(shell pkg-config --cflags libmicrohttpd 2>/dev/null)
EXAMPLE_LIBS_demo_service := $(shell pkg-config --libs libmicrohttpd 2>/dev/null)

#define _GNU_SOURCE
/*
 * memgrow.c — a process whose working set grows when told to, for the
 * memory-trigger tests.
 *
 *   memgrow                reads commands on stdin, one per line:
 *     grow N               map N MiB more of anonymous memory and write
 *                          every page (so it is resident, RssAnon, and
 *                          charged to the process's memory cgroup)
 *     quit                 exit 0 (so does end of input, SIGTERM, SIGINT)
 *
 * Memory comes from mmap, not malloc, so nothing in between (an allocator,
 * a sanitizer's quarantine) changes how much is resident.  It is kept until
 * exit.  stdout: "memgrow_pid=P" at start, "held_mib=N" after each grow,
 * "error=..." if a mapping fails (the program goes on).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
    (void)sig;
    stop = 1;
}

/* Maps and writes n MiB; 0 or -errno. */
__attribute__((noinline)) int grow_touch(size_t mib)
{
    size_t len = mib << 20;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    long page = sysconf(_SC_PAGESIZE);
    for (size_t off = 0; off < len; off += (size_t)page)
        p[off] = (char)(off / (size_t)page + 1);
    return 0;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop; /* no SA_RESTART: a blocked read returns */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("memgrow_pid=%d\n", (int)getpid());

    size_t held = 0;
    char line[128];
    while (!stop && fgets(line, sizeof line, stdin)) {
        unsigned long n;
        if (sscanf(line, "grow %lu", &n) == 1 && n > 0 && n < (1ul << 20)) {
            int rc = grow_touch(n);
            if (rc < 0)
                printf("error=%s\n", strerror(-rc));
            else
                held += n;
            printf("held_mib=%zu\n", held);
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        } else {
            printf("error=unknown-command\n");
        }
    }
    return 0;
}

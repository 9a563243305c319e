#define _GNU_SOURCE
/*
 * pagecache.c — a process that fills the page cache and nothing else, for
 * test_memory_trigger_ignores_page_cache.
 *
 *   pagecache FILE
 *
 * Drops FILE from the page cache first (fdatasync + POSIX_FADV_DONTNEED),
 * so that reading it faults every page in again and charges it to this
 * process's memory cgroup, then reads it once from start to end in 1 MiB
 * reads (each page is touched once, so it stays on the inactive list, as
 * a file read once does), then waits for SIGTERM/SIGINT and exits 0.  Its
 * own working set stays small: one 1 MiB buffer.
 * stdout: "pagecache_pid=P" at start, "read_mib=N" once the file is read.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static char buf[1 << 20];

static void on_stop(int sig)
{
    (void)sig;
    stop = 1;
}

/* Reads fd to its end; bytes read, or -errno. */
__attribute__((noinline)) long long read_through(int fd)
{
    long long total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return total;
        total += n;
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: pagecache FILE\n");
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("pagecache_pid=%d\n", (int)getpid());

    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) {
        fprintf(stderr, "pagecache: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    long long n = read_through(fd);
    if (n < 0) {
        fprintf(stderr, "pagecache: read: %s\n", strerror((int)-n));
        return 1;
    }
    printf("read_mib=%lld\n", n >> 20);
    /* SIGTERM is blocked but while suspended: none can slip in between the
     * test of the flag and the wait. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, &old);
    while (!stop)
        sigsuspend(&old);
    close(fd);
    return 0;
}

/*
 * agent_log.c — the agent's log (SONDE_LOG) and its error messages
 * (sonde_errmsg): one line per event, written with a single write(2) so
 * that lines of several threads and processes never interleave, and the
 * calling thread's last error message, SQLite style.  Contract in
 * agent.h.  Never from a signal handler.
 */
#include "agent.h"

#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define SONDE_EXPORT __attribute__((visibility("default")))

static int log_fd = -1;
static __thread char errbuf[512];

void agent_log_open(const char *path)
{
    if (path && *path && log_fd < 0)
        log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

int agent_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    agent_log("error: %s", errbuf);
    return code;
}

int agent_error_quiet(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    return code;
}

void agent_log(const char *fmt, ...)
{
    if (log_fd < 0)
        return;
    char line[1024];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld sonde[%d]: ", tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(log_fd, line, (size_t)n);
    (void)w;
}

long agent_rss_kib(void)
{
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char buf[128];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    long size, rss;
    if (sscanf(buf, "%ld %ld", &size, &rss) != 2)
        return 0;
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

SONDE_EXPORT const char *sonde_errmsg(void)
{
    return errbuf[0] ? errbuf : "no error";
}

/*
 * config.c — sonde_config_init(): defaults, then SONDE_* environment
 * variables, each checked for type and range.  The README lists every
 * variable; keep the two in step.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "agent.h"

static int parse_long(const char *name, const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return agent_error(-EINVAL, "%s=%s: expected an integer from %ld to %ld", name, v, lo, hi);
    *out = x;
    return 0;
}

/* An app or instance name: 1..len-1 printable bytes, no control
 * characters.  Unset or "" leaves dst empty (the caller's default). */
static int copy_name(const char *name, const char *v, char *dst, size_t len)
{
    dst[0] = 0;
    if (!v || !*v)
        return 0;
    size_t n = strlen(v);
    if (n >= len)
        return agent_error(-EINVAL, "%s: longer than %zu bytes", name, len - 1);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
            return agent_error(-EINVAL, "%s: control characters are not allowed", name);
    memcpy(dst, v, n + 1);
    return 0;
}

int config_parse_signal(const char *s)
{
    if (!s || !*s)
        return -EINVAL;
    char *end;
    long n;
    if (strncasecmp(s, "SIG", 3) == 0)
        s += 3;
    if (strncasecmp(s, "RTMIN", 5) == 0) {
        n = SIGRTMIN;
        if (s[5] == '+') {
            long k = strtol(s + 6, &end, 10);
            if (end == s + 6 || *end || k < 0)
                return -EINVAL;
            n += k;
        } else if (s[5]) {
            return -EINVAL;
        }
    } else if (strcasecmp(s, "PROF") == 0) {
        n = SIGPROF;
    } else if (strcasecmp(s, "VTALRM") == 0) {
        n = SIGVTALRM;
    } else if (strcasecmp(s, "USR1") == 0) {
        n = SIGUSR1;
    } else if (strcasecmp(s, "USR2") == 0) {
        n = SIGUSR2;
    } else {
        errno = 0;
        n = strtol(s, &end, 10);
        if (errno || end == s || *end)
            return -EINVAL;
    }
    if (n < 1 || n > SIGRTMAX || n == SIGKILL || n == SIGSTOP || n == SIGSEGV || n == SIGBUS ||
        n == SIGFPE || n == SIGILL || n == SIGABRT || n == SIGCHLD)
        return -EINVAL;
    return (int)n;
}

__attribute__((visibility("default"))) int sonde_config_init(sonde_config_t *cfg)
{
    if (!cfg)
        return agent_error(-EINVAL, "sonde_config_init: cfg is NULL");
    memset(cfg, 0, sizeof *cfg);
    cfg->frequency_hz = 100;
    cfg->types = SONDE_PROFILE_CPU;
    cfg->signal = SIGRTMIN + 3;
    cfg->format = SONDE_FORMAT_PPROF;
    cfg->ring_slots = 2048;
    cfg->max_stacks = 16384;
    cfg->max_frames = 128;
    cfg->follow_fork = 0;

    int rc = 0;
    const char *v;
    long x;
    if ((v = getenv("SONDE_FREQUENCY")) && *v) {
        if (parse_long("SONDE_FREQUENCY", v, 1, 10000, &x) == 0)
            cfg->frequency_hz = (int)x;
        else
            rc = -EINVAL;
    }
    if ((v = getenv("SONDE_TYPES")) && *v) {
        int t = 0, bad = 0;
        char buf[64];
        strncpy(buf, v, sizeof buf - 1);
        buf[sizeof buf - 1] = 0;
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            if (strcasecmp(tok, "cpu") == 0)
                t |= SONDE_PROFILE_CPU;
            else if (strcasecmp(tok, "wall") == 0)
                t |= SONDE_PROFILE_WALL;
            else
                bad = 1;
        }
        if (bad || !t)
            rc = agent_error(-EINVAL, "SONDE_TYPES=%s: expected cpu, wall or cpu,wall", v);
        else
            cfg->types = t;
    }
    if ((v = getenv("SONDE_SIGNAL")) && *v) {
        int s = config_parse_signal(v);
        if (s < 0)
            rc = agent_error(-EINVAL,
                             "SONDE_SIGNAL=%s: expected a signal number or name like SIGRTMIN+3 "
                             "(not KILL, STOP, SEGV, BUS, FPE, ILL, ABRT, CHLD)",
                             v);
        else
            cfg->signal = s;
    }
    if ((v = getenv("SONDE_FORMAT")) && *v) {
        if (strcasecmp(v, "pprof") == 0)
            cfg->format = SONDE_FORMAT_PPROF;
        else if (strcasecmp(v, "collapsed") == 0)
            cfg->format = SONDE_FORMAT_COLLAPSED;
        else
            rc = agent_error(-EINVAL, "SONDE_FORMAT=%s: expected pprof or collapsed", v);
    }
    if ((v = getenv("SONDE_OUTPUT")) && *v) {
        if (strlen(v) >= sizeof cfg->output)
            rc = agent_error(-ENAMETOOLONG, "SONDE_OUTPUT: path longer than %zu bytes",
                             sizeof cfg->output - 1);
        else
            strcpy(cfg->output, v);
    }
    if ((v = getenv("SONDE_RING_SLOTS")) && *v) {
        if (parse_long("SONDE_RING_SLOTS", v, 16, 1 << 20, &x) == 0)
            cfg->ring_slots = (size_t)x;
        else
            rc = -EINVAL;
    }
    if ((v = getenv("SONDE_MAX_STACKS")) && *v) {
        if (parse_long("SONDE_MAX_STACKS", v, 16, 1 << 22, &x) == 0)
            cfg->max_stacks = (size_t)x;
        else
            rc = -EINVAL;
    }
    if ((v = getenv("SONDE_MAX_FRAMES")) && *v) {
        if (parse_long("SONDE_MAX_FRAMES", v, 1, 128, &x) == 0)
            cfg->max_frames = (int)x;
        else
            rc = -EINVAL;
    }
    if ((v = getenv("SONDE_FOLLOW_FORK")) && *v) {
        if (parse_long("SONDE_FOLLOW_FORK", v, 0, 1, &x) == 0)
            cfg->follow_fork = (int)x;
        else
            rc = -EINVAL;
    }
    if ((v = getenv("SONDE_SERVER")) && *v) {
        if (strlen(v) >= sizeof cfg->server)
            rc = agent_error(-ENAMETOOLONG, "SONDE_SERVER: longer than %zu bytes", sizeof cfg->server - 1);
        else if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0)
            rc = agent_error(-EINVAL, "SONDE_SERVER=%s: expected a URL like http://host:7070", v);
        else
            strcpy(cfg->server, v);
    }
    if (copy_name("SONDE_APP", getenv("SONDE_APP"), cfg->app, sizeof cfg->app) != 0)
        rc = -EINVAL;
    if (!cfg->app[0])
        snprintf(cfg->app, sizeof cfg->app, "%s",
                 program_invocation_short_name[0] ? program_invocation_short_name : "app");
    if (copy_name("SONDE_INSTANCE", getenv("SONDE_INSTANCE"), cfg->instance, sizeof cfg->instance) != 0)
        rc = -EINVAL;
    if (!cfg->instance[0] && gethostname(cfg->instance, sizeof cfg->instance - 1) != 0)
        strcpy(cfg->instance, "localhost");
    if ((v = getenv("SONDE_TOKEN")) && *v) {
        if (strlen(v) >= sizeof cfg->token)
            rc = agent_error(-EINVAL, "SONDE_TOKEN: longer than %zu bytes", sizeof cfg->token - 1);
        else
            strcpy(cfg->token, v);
    }
    return rc;
}

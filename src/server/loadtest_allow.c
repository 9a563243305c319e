/*
 * loadtest_allow.c — where this server may send load (loadtest.h,
 * "Allow list"): sonded --loadtest-allow, parsed once at start and
 * checked before a load test is stored and again before it runs.
 *
 * A server that sends requests where it is told is a weapon (issue 7),
 * so the list is strict in both directions:
 *   - parsing refuses anything it does not understand, naming the entry:
 *     a CIDR block with host bits set ("10.1.0.0/8" — probably a typo for
 *     something narrower or wider), a prefix out of range, a bare "*", a
 *     malformed name, an empty entry, more than LOADTEST_ALLOW_MAX;
 *   - checking allows only an exact rule: the URL's host as written
 *     matches a name entry (case-insensitively; "*.example.com" any name
 *     strictly under example.com), or the address it resolved to lies in
 *     an address/CIDR entry.  Addresses are compared as bytes under the
 *     entry's prefix; an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the
 *     IPv4 address it carries — on both sides, so "::ffff:10.0.0.0/104"
 *     in the list is 10.0.0.0/8.  0.0.0.0 and :: (which reach the local
 *     host) are allowed only by an entry that covers them.
 *
 * Immutable after parsing: any thread may check.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/loadgen.h"
#include "server/loadtest.h"

#define NAME_MAX_LEN 253 /* a DNS name without its trailing dot */

enum entry_kind { ENTRY_V4, ENTRY_V6, ENTRY_NAME };

struct allow_entry {
    enum entry_kind kind;
    uint8_t addr[16]; /* network byte order; 4 bytes used for V4 */
    int prefix;       /* bits: 0..32 or 0..128 */
    int wildcard;     /* NAME: "*.suffix" (name holds ".suffix") */
    char name[NAME_MAX_LEN + 2];
};

struct loadtest_allow {
    char *text; /* as given */
    size_t n;
    struct allow_entry e[LOADTEST_ALLOW_MAX];
};

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* 1 if the first bits of a and b are equal. */
static int prefix_equal(const uint8_t *a, const uint8_t *b, int bits)
{
    int whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)whole) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

/* 1 if addr has a bit set past its first bits (of len bytes). */
static int host_bits_set(const uint8_t *addr, size_t len, int bits)
{
    for (size_t i = 0; i < len; i++) {
        int keep = bits - (int)i * 8; /* bits of this byte inside the prefix */
        uint8_t mask = keep >= 8 ? 0xff : keep <= 0 ? 0 : (uint8_t)(0xff << (8 - keep));
        if (addr[i] & (uint8_t)~mask)
            return 1;
    }
    return 0;
}

/* Strict decimal 0..max (1..3 digits). */
static int parse_prefix(const char *s, int max, int *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 3)
        return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max || (n > 1 && s[0] == '0'))
        return -1;
    *out = v;
    return 0;
}

/* A host name: dot-separated labels of letters, digits and '-' (not at
 * either end), 1..63 bytes each, at most NAME_MAX_LEN in all, the last
 * one not all digits (no top-level domain is: "10.0.0.256" is a typo of
 * an address). */
static int name_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > NAME_MAX_LEN)
        return 0;
    const char *p = s;
    while (*p) {
        size_t n = 0;
        while (p[n] && p[n] != '.') {
            char c = p[n];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-'))
                return 0;
            n++;
        }
        if (n == 0 || n > 63 || p[0] == '-' || p[n - 1] == '-')
            return 0;
        p += n;
        if (*p == '.') {
            p++;
            if (!*p)
                return 0; /* trailing dot */
        } else if (strspn(p - n, "0123456789") == n) {
            return 0; /* an all-digit last label: a malformed address, not a name */
        }
    }
    return 1;
}

/* One entry (NUL-terminated, trimmed) into *e.  0, or -EINVAL with the
 * reason in why. */
static int parse_entry(char *s, struct allow_entry *e, char *why, size_t whylen)
{
    memset(e, 0, sizeof *e);
    char *slash = strchr(s, '/');
    if (slash)
        *slash = '\0';
    if (inet_pton(AF_INET, s, e->addr) == 1) {
        e->kind = ENTRY_V4;
        e->prefix = 32;
    } else if (inet_pton(AF_INET6, s, e->addr) == 1) {
        e->kind = ENTRY_V6;
        e->prefix = 128;
    } else if (slash) {
        snprintf(why, whylen, "'%.*s' before '/' is not an IPv4 or IPv6 address", 64, s);
        *slash = '/';
        return -EINVAL;
    } else if (s[0] == '*' && s[1] == '.' && name_ok(s + 2)) {
        e->kind = ENTRY_NAME;
        e->wildcard = 1;
        snprintf(e->name, sizeof e->name, "%s", s + 1); /* ".example.com" */
        return 0;
    } else if (name_ok(s)) {
        e->kind = ENTRY_NAME;
        snprintf(e->name, sizeof e->name, "%s", s);
        return 0;
    } else {
        snprintf(why, whylen,
                 "not an IPv4/IPv6 address, CIDR block (10.0.0.0/8) or host name "
                 "(example.com, *.example.com)");
        return -EINVAL;
    }
    if (slash) {
        int max = e->kind == ENTRY_V4 ? 32 : 128;
        if (parse_prefix(slash + 1, max, &e->prefix) < 0) {
            snprintf(why, whylen, "prefix length must be 0..%d", max);
            *slash = '/';
            return -EINVAL;
        }
        *slash = '/';
        if (host_bits_set(e->addr, e->kind == ENTRY_V4 ? 4 : 16, e->prefix)) {
            snprintf(why, whylen, "address has bits set past the /%d prefix", e->prefix);
            return -EINVAL;
        }
    }
    /* ::ffff:a.b.c.d/N (N >= 96) is the IPv4 block a.b.c.d/(N-96). */
    if (e->kind == ENTRY_V6 && e->prefix >= 96 && memcmp(e->addr, v4mapped_prefix, 12) == 0) {
        memmove(e->addr, e->addr + 12, 4);
        memset(e->addr + 4, 0, 12);
        e->prefix -= 96;
        e->kind = ENTRY_V4;
    }
    return 0;
}

int loadtest_allow_parse(const char *list, struct loadtest_allow **out, char *err, size_t errlen)
{
    *out = NULL;
    struct loadtest_allow *a = calloc(1, sizeof *a);
    char *copy = strdup(list ? list : "");
    if (!a || !copy || !(a->text = strdup(list ? list : ""))) {
        free(copy);
        loadtest_allow_free(a);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = 0;
    /* Only spaces: the empty list. */
    if (copy[strspn(copy, " \t")] != '\0') {
        char *p = copy;
        for (size_t k = 1; rc == 0; k++) {
            char *end = strchr(p, ',');
            if (end)
                *end = '\0';
            while (*p == ' ' || *p == '\t')
                p++;
            size_t n = strlen(p);
            while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
                p[--n] = '\0';
            char why[160];
            if (n == 0) {
                snprintf(err, errlen, "--loadtest-allow: entry %zu is empty", k);
                rc = -EINVAL;
            } else if (a->n == LOADTEST_ALLOW_MAX) {
                snprintf(err, errlen, "--loadtest-allow: more than %d entries",
                         LOADTEST_ALLOW_MAX);
                rc = -EINVAL;
            } else if (parse_entry(p, &a->e[a->n], why, sizeof why) < 0) {
                snprintf(err, errlen, "--loadtest-allow: entry %zu '%.*s': %s", k, 80, p, why);
                rc = -EINVAL;
            } else {
                a->n++;
            }
            if (!end)
                break;
            p = end + 1;
        }
    }
    free(copy);
    if (rc < 0) {
        loadtest_allow_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void loadtest_allow_free(struct loadtest_allow *a)
{
    if (!a)
        return;
    free(a->text);
    free(a);
}

const char *loadtest_allow_text(const struct loadtest_allow *a)
{
    return a->text;
}

/* 1 if host (as written in the URL) matches name entry e. */
static int name_match(const struct allow_entry *e, const char *host)
{
    if (!e->wildcard)
        return strcasecmp(e->name, host) == 0;
    size_t hl = strlen(host), sl = strlen(e->name); /* e->name = ".suffix" */
    return hl > sl && strcasecmp(host + hl - sl, e->name) == 0;
}

int loadtest_allow_check(const struct loadtest_allow *a, const char *host,
                         const struct sockaddr *sa, socklen_t salen)
{
    if (!a)
        return 0;
    /* The address as an IPv4 or IPv6 byte string, mapped addresses as
     * IPv4; kind -1 when there is none (or another family). */
    int kind = -1;
    uint8_t addr[16];
    if (sa && sa->sa_family == AF_INET && salen >= (socklen_t)sizeof(struct sockaddr_in)) {
        memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        kind = ENTRY_V4;
    } else if (sa && sa->sa_family == AF_INET6 &&
               salen >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        if (memcmp(b, v4mapped_prefix, 12) == 0) {
            memcpy(addr, b + 12, 4);
            kind = ENTRY_V4;
        } else {
            memcpy(addr, b, 16);
            kind = ENTRY_V6;
        }
    }
    for (size_t i = 0; i < a->n; i++) {
        const struct allow_entry *e = &a->e[i];
        if (e->kind == ENTRY_NAME) {
            if (host && name_match(e, host))
                return 1;
        } else if ((int)e->kind == kind && prefix_equal(e->addr, addr, e->prefix)) {
            return 1;
        }
    }
    return 0;
}

int loadtest_target_check(const struct loadtest_allow *a, const struct loadgen *lg, char *err,
                          size_t errlen)
{
    socklen_t salen = 0;
    const struct sockaddr *sa = loadgen_sockaddr(lg, &salen);
    if (loadtest_allow_check(a, loadgen_host(lg), sa, salen))
        return 0;
    const char *list = a ? loadtest_allow_text(a) : "";
    snprintf(err, errlen, "target %s (%s) is not allowed: sonded --loadtest-allow permits %s",
             loadgen_host(lg), loadgen_address(lg), *list ? list : "nothing");
    return -EPERM;
}

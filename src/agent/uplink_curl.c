/*
 * uplink_curl.c — loads libcurl on first use.  Contract and the reasons
 * in uplink_curl.h.
 */
#include "uplink_curl.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct uplink_curl_api uplink_curl;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int load_rc = -ENOENT;
static char load_msg[256];

/* OPENSSL_init_crypto's option: OpenSSL 3's value, stable ABI. */
#define SONDE_OPENSSL_INIT_NO_ATEXIT 0x00080000L

static void load(void)
{
    /* RTLD_NODELETE: never unloaded, whatever happens to the handle. */
    void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!h) {
        const char *e = dlerror();
        snprintf(load_msg, sizeof load_msg, "cannot load libcurl.so.4 (Debian: libcurl4): %s",
                 e ? e : "unknown error");
        return;
    }
#define SYM(field, name)                                                                  \
    do {                                                                                  \
        *(void **)&uplink_curl.field = dlsym(h, name);                                    \
        if (!uplink_curl.field) {                                                         \
            snprintf(load_msg, sizeof load_msg, "libcurl.so.4 has no %s (7.68 or later needed)", \
                     name);                                                               \
            return;                                                                       \
        }                                                                                 \
    } while (0)
    SYM(global_init, "curl_global_init");
    SYM(easy_init, "curl_easy_init");
    SYM(easy_setopt, "curl_easy_setopt");
    SYM(easy_getinfo, "curl_easy_getinfo");
    SYM(easy_cleanup, "curl_easy_cleanup");
    SYM(easy_strerror, "curl_easy_strerror");
    SYM(multi_init, "curl_multi_init");
    SYM(multi_add_handle, "curl_multi_add_handle");
    SYM(multi_remove_handle, "curl_multi_remove_handle");
    SYM(multi_perform, "curl_multi_perform");
    SYM(multi_poll, "curl_multi_poll");
    SYM(multi_wakeup, "curl_multi_wakeup");
    SYM(multi_info_read, "curl_multi_info_read");
    SYM(multi_cleanup, "curl_multi_cleanup");
    SYM(slist_append, "curl_slist_append");
    SYM(slist_free_all, "curl_slist_free_all");
#undef SYM
    /* libcurl built on OpenSSL brought libcrypto in: initialize it before
     * libcurl does, without its atexit cleanup (see uplink_curl.h).  A
     * host that initialized OpenSSL itself keeps its own choice. */
    int (*ossl_init)(uint64_t, const void *) = NULL;
    *(void **)&ossl_init = dlsym(h, "OPENSSL_init_crypto");
    if (ossl_init)
        ossl_init(SONDE_OPENSSL_INIT_NO_ATEXIT, NULL);
    if (uplink_curl.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(load_msg, sizeof load_msg, "curl_global_init failed");
        return;
    }
    load_rc = 0;
}

int uplink_curl_load(char *errmsg, size_t len)
{
    pthread_once(&once, load);
    if (load_rc != 0 && errmsg && len)
        snprintf(errmsg, len, "%s", load_msg);
    return load_rc;
}

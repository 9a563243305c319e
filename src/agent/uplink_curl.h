/*
 * uplink_curl.h — libcurl, loaded only when the agent first talks to a
 * server.
 *
 * libsonde.so is not linked against libcurl: loading it would bring ~25
 * shared libraries (OpenSSL, GnuTLS, p11-kit, Kerberos, LDAP, …) into
 * every host at start, run their constructors and, at the host's exit,
 * their destructors — for a process that may never connect (local
 * recording, a short-lived child).  Instead the uplink thread dlopen()s
 * libcurl.so.4 once the register delay has passed and calls it through
 * the table below; the macros keep the uplink's code in plain libcurl
 * calls.  OpenSSL is initialized first with OPENSSL_INIT_NO_ATEXIT (when
 * libcurl uses it), so a host that exits while the uplink is inside
 * libcurl never has OpenSSL torn down under that thread.
 *
 * Include this instead of <curl/curl.h> in the uplink's files.
 * Thread-safety: uplink_curl_load is idempotent and thread-safe (once).
 * Never from a signal handler.
 */
#ifndef SONDE_UPLINK_CURL_H
#define SONDE_UPLINK_CURL_H

#define CURL_DISABLE_TYPECHECK 1 /* the macros below replace the API's names */
#include <curl/curl.h>

struct uplink_curl_api {
    CURLcode (*global_init)(long);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    void (*easy_cleanup)(CURL *);
    const char *(*easy_strerror)(CURLcode);
    CURLM *(*multi_init)(void);
    CURLMcode (*multi_add_handle)(CURLM *, CURL *);
    CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
    CURLMcode (*multi_perform)(CURLM *, int *);
    CURLMcode (*multi_poll)(CURLM *, struct curl_waitfd *, unsigned int, int, int *);
    CURLMcode (*multi_wakeup)(CURLM *);
    CURLMsg *(*multi_info_read)(CURLM *, int *);
    CURLMcode (*multi_cleanup)(CURLM *);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
};

extern struct uplink_curl_api uplink_curl;

/* Loads libcurl (and initializes it and OpenSSL) once.  0, or -ENOENT
 * with the loader's message in errmsg when libcurl is not installed or
 * lacks a function (needs 7.68+: curl_multi_poll/wakeup). */
int uplink_curl_load(char *errmsg, size_t len);

/* curl.h defines these two as macros of themselves (argument count). */
#undef curl_easy_setopt
#undef curl_easy_getinfo
#define curl_global_init uplink_curl.global_init
#define curl_easy_init uplink_curl.easy_init
#define curl_easy_setopt uplink_curl.easy_setopt
#define curl_easy_getinfo uplink_curl.easy_getinfo
#define curl_easy_cleanup uplink_curl.easy_cleanup
#define curl_easy_strerror uplink_curl.easy_strerror
#define curl_multi_init uplink_curl.multi_init
#define curl_multi_add_handle uplink_curl.multi_add_handle
#define curl_multi_remove_handle uplink_curl.multi_remove_handle
#define curl_multi_perform uplink_curl.multi_perform
#define curl_multi_poll uplink_curl.multi_poll
#define curl_multi_wakeup uplink_curl.multi_wakeup
#define curl_multi_info_read uplink_curl.multi_info_read
#define curl_multi_cleanup uplink_curl.multi_cleanup
#define curl_slist_append uplink_curl.slist_append
#define curl_slist_free_all uplink_curl.slist_free_all

#endif

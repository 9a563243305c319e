/*
 * cmd_capture.c — `sonde capture show ID`: one slow call caught by an
 * active-profiling task (cmd_task.c; docs/api.md, "Active profiling"),
 * from GET /api/v1/captures/{id}: what the call was (trace id, interface,
 * start, response code, peer, time consumed, where it ran), then its
 * snapshot timeline — one row per snapshot: its number, its offset from
 * the call's start, the thread's state, the system call it was blocked
 * in, and the top frames of its stack (leaf first).
 *
 * On command.h like the other server commands; --json prints the
 * server's answer as is.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli/command.h"
#include "commands.h"

/* Frames the server gives per snapshot at most. */
#define FRAMES_MAX 64
#define FRAMES_DEFAULT 3

static void capture_usage(FILE *f)
{
    fprintf(f, "usage: sonde capture show ID [--frames N]\n"
               "  show        a capture's call (trace id, interface, start, response code,\n"
               "              peer, time) and its snapshots: offset from the call's start,\n"
               "              thread state, system call, top frames (leaf first)\n"
               "  --frames N  frames shown per snapshot, 1..%d (default %d)\n"
               "  `sonde task captures TASK` lists a task's captures.\n",
               FRAMES_MAX, FRAMES_DEFAULT);
    client_options_usage(f, 1);
}

/* The first n names of frames joined by " < " (callee < caller) into
 * buf, "..." after them when there are more; "-" when there are none. */
static void fmt_frames(json_t *frames, long long n, char *buf, size_t len)
{
    size_t k = 0, i;
    json_t *f;
    buf[0] = '\0';
    json_array_foreach(frames, i, f) {
        const char *name = json_string_value(f);
        int w = snprintf(buf + k, len - k, "%s%s", i ? " < " : "",
                         (long long)i >= n ? "..." : name ? name : "?");
        if (w < 0 || (size_t)w >= len - k || (long long)i >= n)
            break; /* full (cut), or the "..." is written */
        k += (size_t)w;
    }
    if (!buf[0])
        snprintf(buf, len, "-");
}

static int print_capture(const struct command *cmd, json_t *c, const void *ctx)
{
    long long nframes = *(const long long *)ctx;
    char v[12][40];
    (void)cmd;
    fmt_int(json_object_get(c, "id"), v[0], sizeof v[0]);
    fmt_int(json_object_get(c, "task_id"), v[1], sizeof v[1]);
    fmt_int(json_object_get(c, "slot"), v[2], sizeof v[2]);
    fmt_int(json_object_get(c, "pid"), v[3], sizeof v[3]);
    fmt_int(json_object_get(c, "agent_id"), v[4], sizeof v[4]);
    fmt_time_ms(json_object_get(c, "start_ms"), v[5], sizeof v[5]);
    fmt_ms(json_object_get(c, "total_ms"), v[6], sizeof v[6]);
    fmt_int(json_object_get(c, "response_code"), v[7], sizeof v[7]);
    fmt_int(json_object_get(c, "snapshots"), v[8], sizeof v[8]);
    fmt_int(json_object_get(c, "profile_bytes"), v[9], sizeof v[9]);
    char task[96], where[128];
    snprintf(task, sizeof task, "%s (slot %s)", v[1], v[2]);
    snprintf(where, sizeof where, "pid %s, agent %s", v[3], v[4]);
    struct table kv = {.cols = 2};
    table_row(&kv, (const char *[]){"capture", v[0]});
    table_row(&kv, (const char *[]){"task", task});
    table_row(&kv, (const char *[]){"app", fmt_text(c, "app")});
    table_row(&kv, (const char *[]){"instance", fmt_text(c, "instance")});
    table_row(&kv, (const char *[]){"process", where});
    table_row(&kv, (const char *[]){"trace id", fmt_text(c, "trace_id")});
    table_row(&kv, (const char *[]){"interface", fmt_text(c, "interface")});
    table_row(&kv, (const char *[]){"started", v[5]});
    table_row(&kv, (const char *[]){"time", v[6]});
    table_row(&kv, (const char *[]){"response", v[7]});
    table_row(&kv, (const char *[]){"peer", fmt_text(c, "peer")});
    table_row(&kv, (const char *[]){"snapshots", v[8]});
    table_row(&kv, (const char *[]){"state", fmt_text(c, "state")});
    int rc = table_print(&kv);

    json_t *timeline = json_object_get(c, "timeline");
    printf("\n");
    if (json_array_size(timeline) == 0) {
        printf("no snapshots stored (yet)\n");
        return rc;
    }
    struct table tab = {.cols = 6};
    table_row(&tab, (const char *[]){"#", "OFFSET", "STATE", "SYSCALL", "THREAD", "TOP FRAMES"});
    size_t i;
    json_t *s;
    json_array_foreach(timeline, i, s) {
        char num[32], off[32], frames[1024];
        fmt_int(json_object_get(s, "snapshot"), num, sizeof num);
        fmt_ms(json_object_get(s, "offset_ms"), off, sizeof off);
        fmt_frames(json_object_get(s, "frames"), nframes, frames, sizeof frames);
        table_row(&tab, (const char *[]){num, off, fmt_text(s, "state"),
                                         fmt_text(s, "syscall"), fmt_text(s, "thread"),
                                         frames});
    }
    int rc2 = table_print(&tab);
    return rc ? rc : rc2;
}

int cmd_capture(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        capture_usage(stdout);
        return 0;
    }
    if (argc < 2 || strcmp(argv[1], "show") != 0) {
        if (argc < 2)
            fprintf(stderr, "sonde capture: which one: show?\n");
        else
            fprintf(stderr, "sonde capture: unknown subcommand '%s' (show)\n", argv[1]);
        capture_usage(stderr);
        return 2;
    }
    struct command cmd;
    command_init(&cmd, "capture show", capture_usage, COMMAND_POSITIONAL);
    const char *idarg = NULL, *v;
    long long id, nframes = FRAMES_DEFAULT;
    int rc, k;
    for (int i = 2; i < argc; i++) {
        if (client_arg_value("--frames", argc, argv, &i, &v)) {
            if (parse_int(v, 1, FRAMES_MAX, &nframes) != 0)
                return command_usage_error(&cmd, "--frames must be a count in 1..64, not '%s'",
                                           v);
        } else if ((k = command_arg(&cmd, argc, argv, &i, &rc)) < 0) {
            return rc;
        } else if (k == 0 && !idarg) {
            idarg = argv[i];
        } else if (k == 0) {
            return command_usage_error(&cmd, "unexpected argument '%s'", argv[i]);
        }
    }
    if (!idarg)
        return command_usage_error(&cmd, "no capture id given%s", NULL);
    if (parse_int(idarg, 1, INT64_MAX, &id) != 0)
        return command_usage_error(&cmd, "a capture id is a positive integer, not '%s'", idarg);
    char path[64];
    snprintf(path, sizeof path, "/api/v1/captures/%lld", id);
    return command_run(&cmd, "GET", path, NULL, print_capture, &nframes);
}

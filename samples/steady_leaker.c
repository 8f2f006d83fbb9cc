/*
 * steady_leaker.c: a process that leaks at a steady rate until its time is up; the leaking
 * program the process-tree samples start (exec_after_alloc.c, run_leaker.sh) and the one the
 * attach tests start before or after the recorder.
 *
 * Every 10 ms for SECONDS, `remember_session` mallocs a SESSION_BYTES (1000 B) session record
 * and forgets it (the bug), and `parse_header` mallocs a 200 B scratch buffer and frees it.
 * With --wait it first prints `ready PID` and waits for a line on stdin (read(2), so that no
 * stdio buffer is allocated), so that a recorder can attach with -p before it starts.
 *
 * What it leaks: one 1000-byte block per 10 ms tick, about 100 a second, from malloc <-
 * remember_session <- main; nothing else (valgrind --leak-check=full: "definitely lost:
 * L x 1000 bytes in L blocks", L the number it prints). The exact number depends on the
 * clock, so it prints it when done:
 *   steady_leaker pid P: leaked L blocks of 1000 bytes
 * A correct report: a `leak` candidate through remember_session with exactly L blocks live
 * at the end; nothing from parse_header.
 *
 * Usage: steady_leaker [--wait] [SECONDS]   (default 2)
 * Built with `gcc -O1 -g -fno-omit-frame-pointer`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TICK_NS 10000000L
#define SESSION_BYTES 1000
#define SCRATCH_BYTES 200

static void *volatile sink;

static void say(const char *format, long a, long b) {
    char line[160];
    int n = snprintf(line, sizeof line, format, a, b);
    if (n > 0 && write(STDOUT_FILENO, line, (size_t)n) < 0) {
        /* stdout closed: nothing to report to */
    }
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void parse_header(long tick) {
    char *scratch = malloc(SCRATCH_BYTES);
    if (!scratch) return;
    memset(scratch, (int)(tick & 0xff), SCRATCH_BYTES);
    sink = scratch;
    free(scratch);
}

/* The bug: the session record is never stored anywhere nor freed. */
__attribute__((noinline)) int remember_session(long tick) {
    char *session = malloc(SESSION_BYTES);
    if (!session) return 0;
    memset(session, (int)(tick & 0xff), SESSION_BYTES);
    sink = session;
    sink = NULL;
    return 1;
}

int main(int argc, char **argv) {
    int wait = argc > 1 && strcmp(argv[1], "--wait") == 0;
    double seconds = argc > 1 + wait ? atof(argv[1 + wait]) : 2.0;
    if (wait) {
        say("ready %ld\n", (long)getpid(), 0);
        char line[64];
        if (read(STDIN_FILENO, line, sizeof line) < 0) {
            /* stdin closed: start anyway */
        }
    }
    double end = now_seconds() + seconds;
    struct timespec pause = {0, TICK_NS};
    long leaked = 0;
    for (long tick = 0; now_seconds() < end; tick++) {
        parse_header(tick);
        leaked += remember_session(tick);
        nanosleep(&pause, NULL);
    }
    say("steady_leaker pid %ld: leaked %ld blocks of 1000 bytes\n", (long)getpid(), leaked);
    return 0;
}

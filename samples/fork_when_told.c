/*
 * fork_when_told.c: a parent that waits to be told, then forks a child that leaks; for
 * attaching to the parent (`memtrail-record -p PARENT --follow`) before the fork.
 *
 * The parent prints `ready PID` and waits for a line on stdin (read(2): no stdio buffer is
 * allocated). Then it forks one child (fork, no exec) and waits for it. The child runs for
 * SECONDS: every 10 ms `child_leak` mallocs a CHILD_BYTES (2000 B) block and forgets it, and
 * `child_scratch` mallocs 300 B and frees it. The parent allocates nothing after the fork.
 *
 * What it leaks: in the child only, one 2000-byte block per 10 ms tick, about 100 a second,
 * from malloc <- child_leak <- run_child <- main; the exact number is printed by the child:
 *   fork_when_told child pid C (parent P): leaked L blocks of 2000 bytes
 * Nothing in the parent (valgrind --trace-children=yes --leak-check=full: the child's "L x 2000
 * bytes in L blocks" definitely lost; the parent's heap all freed).
 * A correct report of a recording attached to the parent with --follow: the child's process
 * (parent pid P) has a `leak` candidate through child_leak with exactly L blocks live at the
 * end; a recording without --follow sees neither the child nor its leak.
 *
 * Usage: fork_when_told [SECONDS]   (default 2); exits with the child's status.
 * Built with `gcc -O1 -g -fno-omit-frame-pointer`.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TICK_NS 10000000L
#define CHILD_BYTES 2000
#define SCRATCH_BYTES 300

static void *volatile sink;

static void say(const char *format, long a, long b, long c) {
    char line[160];
    int n = snprintf(line, sizeof line, format, a, b, c);
    if (n > 0 && write(STDOUT_FILENO, line, (size_t)n) < 0) {
        /* stdout closed: nothing to report to */
    }
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void child_scratch(long tick) {
    char *scratch = malloc(SCRATCH_BYTES);
    if (!scratch) return;
    memset(scratch, (int)(tick & 0xff), SCRATCH_BYTES);
    sink = scratch;
    free(scratch);
}

/* The bug: the block is never stored anywhere nor freed. */
__attribute__((noinline)) int child_leak(long tick) {
    char *block = malloc(CHILD_BYTES);
    if (!block) return 0;
    memset(block, (int)(tick & 0xff), CHILD_BYTES);
    sink = block;
    sink = NULL;
    return 1;
}

__attribute__((noinline)) int run_child(double seconds) {
    double end = now_seconds() + seconds;
    struct timespec pause = {0, TICK_NS};
    long leaked = 0;
    for (long tick = 0; now_seconds() < end; tick++) {
        child_scratch(tick);
        leaked += child_leak(tick);
        nanosleep(&pause, NULL);
    }
    say("fork_when_told child pid %ld (parent %ld): leaked %ld blocks of 2000 bytes\n",
        (long)getpid(), (long)getppid(), leaked);
    return 0;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    say("ready %ld\n", (long)getpid(), 0, 0);
    char line[64];
    if (read(STDIN_FILENO, line, sizeof line) < 0) {
        /* stdin closed: go on */
    }
    pid_t child = fork();
    if (child < 0) return 1;
    if (child == 0) exit(run_child(seconds));
    int status;
    while (waitpid(child, &status, 0) < 0) {
        if (errno != EINTR) return 1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/*
 * exec_after_alloc.c: a process that allocates blocks, keeps them, then execs another program.
 *
 * `keep_before_exec` mallocs KEPT_BLOCKS (64) blocks of KEPT_BYTES (2048 B), one every 5 ms
 * (about 0.3 s), and keeps them in a static table; then the process execs PROGRAM with ARGS
 * (execv: same process, new image). The exec releases the old image's memory with it: those
 * blocks are gone, not leaked, and never freed by a call to free.
 *
 * What it leaks: nothing before the exec (64 x 2048 = 131,072 bytes are live at the exec and
 * released by it); after the exec, whatever PROGRAM leaks (the tests run steady_leaker.c).
 * valgrind --trace-children=yes sees only the image after the exec.
 * A correct report: no candidate through keep_before_exec; 64 blocks, 131,072 bytes released
 * by the exec; PROGRAM's leak in the same process.
 *
 * It prints before the exec (write(2), no stdio buffer is allocated):
 *   exec_after_alloc pid P: exec PROGRAM after keeping 64 blocks of 2048 bytes
 * and exits 127 if the exec fails.
 *
 * Usage: exec_after_alloc PROGRAM [ARGS...]
 * Built with `gcc -O1 -g -fno-omit-frame-pointer`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KEPT_BLOCKS 64
#define KEPT_BYTES 2048

static char *kept[KEPT_BLOCKS];

__attribute__((noinline)) int keep_before_exec(void) {
    struct timespec pause = {0, 5000000L};
    for (int i = 0; i < KEPT_BLOCKS; i++) {
        kept[i] = malloc(KEPT_BYTES);
        if (!kept[i]) return -1;
        memset(kept[i], i, KEPT_BYTES);
        nanosleep(&pause, NULL);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        static const char usage[] = "usage: exec_after_alloc PROGRAM [ARGS...]\n";
        if (write(STDERR_FILENO, usage, sizeof usage - 1) < 0) return 2;
        return 2;
    }
    if (keep_before_exec() != 0) return 1;
    char line[4096];
    int n = snprintf(line, sizeof line,
                     "exec_after_alloc pid %ld: exec %s after keeping %d blocks of %d bytes\n",
                     (long)getpid(), argv[1], KEPT_BLOCKS, KEPT_BYTES);
    if (n >= (int)sizeof line) n = (int)sizeof line - 1;
    if (n > 0 && write(STDOUT_FILENO, line, (size_t)n) < 0) {
        /* stdout closed: exec anyway */
    }
    execv(argv[1], argv + 1);
    perror("exec_after_alloc: execv");
    return 127;
}

/* fork_loop: forks a short-lived child every 20 ms, for SECONDS (default 30) seconds.
 *
 * Each child allocates and frees a block, then exits; the parent reaps it. Used to kill the
 * recorder while children keep being followed (and held at their fork for a moment): no
 * process may stay stopped once the recorder is gone (its watchdog resumes them).
 *
 * Leaks nothing. Prints "ready PID" once running.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Through a volatile pointer: a compiler may remove a malloc/free pair it can see whole. */
static char *volatile block;

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 30;
    char line[64];
    int n = snprintf(line, sizeof line, "ready %d\n", (int)getpid());
    if (write(1, line, (size_t)n) < 0) return 1;
    double end = now() + seconds;
    while (now() < end) {
        pid_t pid = fork();
        if (pid == 0) {
            block = malloc(100);
            memset(block, 1, 100);
            free(block);
            _exit(0);
        }
        if (pid > 0) waitpid(pid, NULL, 0);
        usleep(20000);
    }
    return 0;
}

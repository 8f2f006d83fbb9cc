/*
 * fibonacci_fixed.c: the classic leak, fixed.
 *
 * The same program as fibonacci.c, except that `child` frees each buffer `fibonacci` returns.
 *
 * What it leaks: nothing. A correct report shows calloc <- fibonacci <- child with many
 * allocations and frees but no outstanding bytes at the end (nothing growing), so no leak.
 *
 * Usage: fibonacci [SECONDS]   (default 3; 0 runs until killed)
 * Built with `gcc -O1 -g -fno-omit-frame-pointer -pthread`.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define STEPS_PER_SECOND 200
#define BUFFER_ELEMENTS 1024

static volatile long long checksum;

__attribute__((noinline)) long long *fibonacci(long long a, long long b) {
    long long *buffer = calloc(BUFFER_ELEMENTS, sizeof(long long));
    if (!buffer) return NULL;
    buffer[0] = a + b;
    return buffer;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void *child(void *arg) {
    double seconds = *(double *)arg;
    double end = now_seconds() + seconds;
    long long a = 0, b = 1;
    struct timespec pause = {0, 1000000000L / STEPS_PER_SECOND};
    while (seconds <= 0 || now_seconds() < end) {
        long long *result = fibonacci(a, b);
        if (!result) break;
        a = b;
        b = result[0] % 1000000007LL;
        checksum += b;
        free(result); /* The fix: fibonacci.c never frees it. */
        nanosleep(&pause, NULL);
    }
    return NULL;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 3.0;
    pthread_t thread;
    if (pthread_create(&thread, NULL, child, &seconds) != 0) return 1;
    pthread_join(thread, NULL);
    printf("checksum %lld\n", checksum);
    return 0;
}

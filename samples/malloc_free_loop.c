/*
 * malloc_free_loop.c: N malloc(64)/free pairs in a tight loop, timed from inside.
 *
 * Used to measure what tracing adds per pair (for example the free probe's placement: at the
 * entry of free, which the kernel single-steps, or after glibc's NULL check). Prints
 * "pairs=N ns_per_pair=X". Leaks nothing; a correct recording holds N mallocs of 64 bytes
 * and N frees, all matched.
 *
 * Usage: malloc_free_loop [N]   (default 1000000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void *volatile sink;

int main(int argc, char **argv) {
    long pairs = argc > 1 ? atol(argv[1]) : 1000000;
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long i = 0; i < pairs; i++) {
        sink = malloc(64);
        free(sink);
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    double ns = (end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec);
    printf("pairs=%ld ns_per_pair=%.1f\n", pairs, ns / (pairs > 0 ? pairs : 1));
    return 0;
}

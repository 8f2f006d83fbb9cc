/*
 * sample_bytes.c: many allocations of known total size, for testing `--sample-bytes N`.
 *
 * Two threads each run ITERATIONS steps (default 250,000). A step mallocs 16-4096 bytes
 * (xorshift sizes, reproducible), every 4th step reallocs that block to twice its size, and
 * frees it; every 100th step also mallocs 4999 bytes and never frees them (the only odd size
 * over 4096: the leak a sampled trace should still show, and nothing else).
 *
 * A sampled recording therefore holds about allocated_bytes / N sampled allocations, every free
 * it holds matches an allocation it holds, and its only live blocks at the end are 4999 bytes.
 *
 * Usage: sample_bytes [ITERATIONS]
 * Prints "allocated_bytes=B calls=C kept=K" (malloc + realloc calls and the bytes they asked
 * for, over both threads; K blocks of 4999 bytes kept).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define THREADS 2

struct work {
    unsigned long long seed;
    long iterations;
    unsigned long long bytes, calls, kept;
};

static void *volatile sink;

static void *run(void *arg) {
    struct work *w = arg;
    unsigned long long rng = w->seed;
    for (long i = 0; i < w->iterations; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        size_t size = 16 + (size_t)(rng % 4081);
        char *p = malloc(size);
        if (!p) abort();
        p[0] = 1;
        w->bytes += size;
        w->calls++;
        if (i % 4 == 0) {
            char *q = realloc(p, size * 2);
            if (!q) abort();
            p = q;
            w->bytes += size * 2;
            w->calls++;
        }
        sink = p;
        free(p);
        if (i % 100 == 99) {
            char *kept = malloc(4999);
            if (!kept) abort();
            kept[0] = 1;
            sink = kept;
            w->bytes += 4999;
            w->calls++;
            w->kept++;
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    long iterations = argc > 1 ? atol(argv[1]) : 250000;
    struct work work[THREADS];
    pthread_t threads[THREADS];
    for (int t = 0; t < THREADS; t++) {
        work[t] = (struct work){.seed = 0x9E3779B97F4A7C15ull + (unsigned long long)t * 7919,
                                .iterations = iterations};
        if (pthread_create(&threads[t], NULL, run, &work[t]) != 0) return 2;
    }
    unsigned long long bytes = 0, calls = 0, kept = 0;
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
        bytes += work[t].bytes;
        calls += work[t].calls;
        kept += work[t].kept;
    }
    printf("allocated_bytes=%llu calls=%llu kept=%llu\n", bytes, calls, kept);
    return 0;
}

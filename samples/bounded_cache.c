/*
 * bounded_cache.c: a cache that grows, then plateaus: not a leak.
 *
 * A worker thread inserts an 8 KiB entry every INSERT_EVERY_MS ms for SECONDS into a cache of
 * SLOTS slots (`cache_insert`: one calloc); once the cache is full, each insert first evicts
 * and frees the oldest entry. The cache fills in SLOTS x 4 ms = 0.8 s, then its size stays at
 * SLOTS entries until the program exits with the cache still full.
 *
 * What it leaks: nothing that grows. At exit, SLOTS = 200 entries of 8192 B (1.56 MiB) from
 * calloc <- cache_insert <- worker are still live, by design.
 * A correct report: that stack is live at the end but no `leak`: it grew for the first
 * 0.8 s, then stayed flat (`growing-then-stable`: a bounded cache or pool).
 *
 * Usage: bounded_cache [SECONDS]   (default 2.5; at least 1.5, so that it is full early)
 * Built with `gcc -O1 -g -fno-omit-frame-pointer -pthread` (the tests also build it without).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define SLOTS 200
#define ENTRY_BYTES 8192
#define INSERT_EVERY_MS 4

static char *slots[SLOTS];
static volatile long checksum;

__attribute__((noinline)) char *cache_insert(long key) {
    char *entry = calloc(1, ENTRY_BYTES);
    if (entry) entry[0] = (char)key;
    return entry;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void *worker(void *arg) {
    double end = now_seconds() + *(double *)arg;
    struct timespec pause = {0, INSERT_EVERY_MS * 1000000L};
    for (long key = 0; now_seconds() < end; key++) {
        int slot = (int)(key % SLOTS);
        free(slots[slot]); /* evicts the oldest entry once the cache is full */
        slots[slot] = cache_insert(key);
        if (slots[slot]) checksum += slots[slot][0];
        nanosleep(&pause, NULL);
    }
    return NULL;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 2.5;
    pthread_t thread;
    if (pthread_create(&thread, NULL, worker, &seconds) != 0) return 1;
    pthread_join(thread, NULL);
    printf("checksum %ld\n", checksum);
    return 0;
}

/*
 * workload.c: the analyzer benchmark's program. N malloc/free pairs (default 5,000,000) over
 * ten distinct call paths, sizes 16-4096 bytes, each block freed soon after it was allocated
 * (at once, or after 63 more allocations through a ring of slots); path 9 keeps one of its blocks
 * in 4,096 live (a small, steady leak: 123 blocks for 5 M pairs), so a leak report has something to say.
 *
 * Every path is its own noinline function that calls malloc and then writes to the block (so
 * the call is not a tail call and the function's frame is on the stack), with a different
 * constant each (so the compiler cannot fold identical functions together).
 *
 * Build: gcc -O2 -g -fno-omit-frame-pointer bench/workload.c -o workload
 * Usage: workload [PAIRS [DEPTH]]   Prints "pairs=N kept=K loop_ns=T" (T: the pairs' own time,
 * CLOCK_MONOTONIC, without start-up and exit; what a tracer adds to it is paid in the
 * program's own thread). DEPTH (default 0) runs the pairs
 * that many extra calls deep (frames of about 128 bytes), for benchmarks of deep stacks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NOINLINE __attribute__((noinline))
#define RING 64

static void *volatile ring[RING];
static unsigned long long rng = 0x9E3779B97F4A7C15ull;

static size_t next_size(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return 16 + (size_t)(rng % 4081); /* 16 .. 4096 */
}

#define PATH(k)                                                                                \
    NOINLINE static void *path##k(size_t n) {                                                  \
        char *p = malloc(n);                                                                   \
        if (p)                                                                                 \
            p[0] = (char)(k + 1);                                                              \
        return p;                                                                              \
    }
PATH(0)
PATH(1)
PATH(2)
PATH(3)
PATH(4)
PATH(5)
PATH(6)
PATH(7)
PATH(8)
PATH(9)

/* Short-lived: freed by the caller right away. */
NOINLINE static void request_parse(size_t n) { free(path0(n)); }
NOINLINE static void request_headers(size_t n) { free(path1(n)); }
NOINLINE static void response_build(size_t n) { free(path2(n)); }
NOINLINE static void log_format(size_t n) { free(path3(n)); }
NOINLINE static void json_encode(size_t n) { free(path4(n)); }

/* Freed RING allocations later, through the ring. */
NOINLINE static void *cache_fill(size_t n) { return path5(n); }
NOINLINE static void *buffer_grow(size_t n) { return path6(n); }
NOINLINE static void *session_new(size_t n) { return path7(n); }
NOINLINE static void *queue_push(size_t n) { return path8(n); }
NOINLINE static void *registry_add(size_t n) { return path9(n); }

NOINLINE static long run_pairs(long pairs) {
    long kept = 0, slot = 0;
    for (long i = 0; i < pairs; i++) {
        size_t n = next_size();
        void *p;
        switch (i % 10) {
        case 0: request_parse(n); continue;
        case 1: request_headers(n); continue;
        case 2: response_build(n); continue;
        case 3: log_format(n); continue;
        case 4: json_encode(n); continue;
        case 5: p = cache_fill(n); break;
        case 6: p = buffer_grow(n); break;
        case 7: p = session_new(n); break;
        case 8: p = queue_push(n); break;
        default:
            p = registry_add(n);
            if ((i / 10) % 4096 == 0) { /* a leak: never freed, and the ring slot still is */
                kept++;
                continue;
            }
        }
        slot = (slot + 1) % RING;
        free(ring[slot]);
        ring[slot] = p;
    }
    for (int s = 0; s < RING; s++)
        free(ring[s]);
    return kept;
}

/* Runs the pairs `depth` calls deeper, each frame about 128 bytes: deep stacks for unwinding. */
NOINLINE static long run_deeper(long pairs, int depth) {
    volatile char frame[96];
    frame[0] = (char)depth;
    long kept = depth > 0 ? run_deeper(pairs, depth - 1) : run_pairs(pairs);
    return kept + frame[0] * 0; /* used after the call: not a tail call */
}

int main(int argc, char **argv) {
    long pairs = argc > 1 ? atol(argv[1]) : 5000000;
    int depth = argc > 2 ? atoi(argv[2]) : 0;
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long kept = depth > 0 ? run_deeper(pairs, depth) : run_pairs(pairs);
    clock_gettime(CLOCK_MONOTONIC, &end);
    long long loop_ns = (end.tv_sec - start.tv_sec) * 1000000000LL + (end.tv_nsec - start.tv_nsec);
    printf("pairs=%ld kept=%ld loop_ns=%lld\n", pairs, kept, loop_ns);
    return 0;
}

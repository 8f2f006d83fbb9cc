/*
 * shared_mappings.c: anonymous shared mappings made over and over and never unmapped.
 *
 * Each job (JOBS_PER_SECOND a second for SECONDS) gets a SEGMENT_BYTES segment of shared
 * memory from `map_segment` (mmap with MAP_SHARED | MAP_ANONYMOUS, the kind a process shares
 * with the children it forks), writes into it, and never calls munmap.
 *
 * What it leaks: 50 mappings of 65536 B a second, from mmap <- map_segment <- run_job <- main.
 * They are not heap blocks: malloc statistics miss them, and their pages count as RssShmem,
 * not RssAnon (`memtrail-record suspects` adds both).
 * A correct report: the first candidate is a `leak` of 65536-byte mmap blocks through
 * map_segment and run_job, growing until the end.
 *
 * Usage: shared_mappings [SECONDS]   (default 2)
 * Built with `gcc -O1 -g -fno-omit-frame-pointer` (the tests also build it without).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define JOBS_PER_SECOND 50
#define SEGMENT_BYTES 65536

static volatile long checksum;

__attribute__((noinline)) unsigned char *map_segment(void) {
    void *segment = mmap(NULL, SEGMENT_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                         -1, 0);
    return segment == MAP_FAILED ? NULL : segment;
}

/* The bug: the segment is never munmap'ed. */
__attribute__((noinline)) void run_job(long job) {
    unsigned char *segment = map_segment();
    if (!segment) return;
    memset(segment, (int)(job & 0xff), 4096);
    checksum += segment[0];
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double end = now_seconds() + (argc > 1 ? atof(argv[1]) : 2.0);
    struct timespec pause = {0, 1000000000L / JOBS_PER_SECOND};
    for (long job = 1; now_seconds() < end; job++) {
        run_job(job);
        nanosleep(&pause, NULL);
    }
    printf("checksum %ld\n", checksum);
    return 0;
}

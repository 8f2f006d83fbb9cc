/*
 * aligned_blocks.c: aligned allocations (posix_memalign, aligned_alloc) that are leaked.
 *
 * An I/O loop submits BATCHES_PER_SECOND batches a second for SECONDS. Each batch takes a
 * cache-line-aligned descriptor from `new_descriptor` (posix_memalign, 64-byte alignment,
 * 512 B) and a page-aligned data buffer from `new_io_page` (aligned_alloc, 4096-byte
 * alignment, 8192 B). The completion path forgets both.
 *
 * What it leaks: 100 descriptors of 512 B and 100 buffers of 8192 B a second, from
 * posix_memalign <- new_descriptor <- submit_batch and aligned_alloc <- new_io_page <-
 * submit_batch. glibc's aligned_alloc is the same function as memalign, so a recorder
 * probing glibc reports those calls as memalign.
 * A correct report: two `leak` candidates, the first (larger) one new_io_page's 8192-byte
 * blocks, the second new_descriptor's 512-byte ones, both growing until the end.
 *
 * Usage: aligned_blocks [SECONDS]   (default 2)
 * Built with `gcc -O1 -g -fno-omit-frame-pointer` (the tests also build it without).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCHES_PER_SECOND 100
#define DESCRIPTOR_BYTES 512
#define PAGE_BYTES 8192

static volatile long checksum;

__attribute__((noinline)) void *new_descriptor(void) {
    void *descriptor = NULL;
    if (posix_memalign(&descriptor, 64, DESCRIPTOR_BYTES) != 0) return NULL;
    memset(descriptor, 0, DESCRIPTOR_BYTES);
    return descriptor;
}

__attribute__((noinline)) void *new_io_page(void) {
    return aligned_alloc(4096, PAGE_BYTES);
}

/* Fills a batch; the bug: nothing ever frees the descriptor or the page. */
__attribute__((noinline)) void submit_batch(long batch) {
    unsigned char *descriptor = new_descriptor();
    unsigned char *page = new_io_page();
    if (!descriptor || !page) return;
    page[0] = (unsigned char)batch;
    descriptor[0] = page[0];
    checksum += descriptor[0];
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double end = now_seconds() + (argc > 1 ? atof(argv[1]) : 2.0);
    struct timespec pause = {0, 1000000000L / BATCHES_PER_SECOND};
    for (long batch = 1; now_seconds() < end; batch++) {
        submit_batch(batch);
        nanosleep(&pause, NULL);
    }
    printf("checksum %ld\n", checksum);
    return 0;
}

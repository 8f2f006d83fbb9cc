/*
 * allocator_counts.c: calls the allocation API every allocator implements (glibc, jemalloc,
 * tcmalloc, mimalloc) an exact, known number of times, so a recording through any of them can
 * be checked call by call. Built by tests/tests/allocators_e2e.rs with `gcc -O1 -g`, linked
 * against, or LD_PRELOADed with, the allocator under test (or `-static`).
 *
 * With -DJEMALLOC_EXTENDED (link with -ljemalloc), it also calls jemalloc's own API.
 *
 * A correct recording holds exactly:
 *   malloc         300 + 5 leaked (64 B)           = 305
 *   calloc         200 + 2 leaked (3 x 40 B)       = 202
 *   realloc        100 from NULL + 100 growing     = 200 realloc records
 *   posix_memalign 50, aligned_alloc 40, memalign 30, valloc 20
 *   free           300 + 200 + 100 + 50 + 40 + 30 + 20 = 740 (free(NULL) x100 not counted)
 * and with JEMALLOC_EXTENDED in addition:
 *   mallocx 60 (+ 1 leaked, 4096 B), rallocx 60, xallocx 60 (resized in place, or not),
 *   sdallocx 30, dallocx 30
 * Left allocated: 5 x 64 B malloc, 2 x 120 B calloc (and 1 x 4096 B mallocx).
 * All of it happens between two marker blocks, malloc(1234567) freed at once before and
 * malloc(1234568) after: what the program's start-up (stdio, libstdc++, an allocator's own
 * initialization) allocates differs from one allocator to the next and is not counted.
 * Usage: allocator_counts [--wait]  (--wait: print "ready", wait for a line on stdin first)
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef JEMALLOC_EXTENDED
#include <jemalloc/jemalloc.h>
#endif

static void *volatile sink;
static void *volatile null_pointer;

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--wait") == 0) {
        char line[64];
        printf("ready\n");
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin)) {
            /* stdin closed: start anyway */
        }
    }
    sink = malloc(1234567);
    free(sink);
    for (int i = 0; i < 300; i++) { sink = malloc(48 + i % 16); free(sink); }
    for (int i = 0; i < 100; i++) free(null_pointer);
    for (int i = 0; i < 200; i++) { sink = calloc(4, 25); free(sink); }
    for (int i = 0; i < 100; i++) {
        sink = realloc(null_pointer, 64);
        sink = realloc(sink, 4096);
        free(sink);
    }
    for (int i = 0; i < 50; i++) {
        void *p = NULL;
        if (posix_memalign(&p, 64, 256) != 0) return 2;
        sink = p;
        free(sink);
    }
    for (int i = 0; i < 40; i++) { sink = aligned_alloc(64, 128); free(sink); }
    for (int i = 0; i < 30; i++) { sink = memalign(32, 96); free(sink); }
    for (int i = 0; i < 20; i++) { sink = valloc(100); free(sink); }
#ifdef JEMALLOC_EXTENDED
    for (int i = 0; i < 30; i++) {
        void *p = mallocx(100, 0);
        p = rallocx(p, 200, 0);
        sink = p;
        xallocx(p, 210, 0, 0);
        sdallocx(p, 210, 0);
    }
    for (int i = 0; i < 30; i++) {
        void *p = mallocx(1000, MALLOCX_ZERO);
        p = rallocx(p, 3000, 0);
        sink = p;
        xallocx(p, 3000, 0, 0);
        dallocx(p, 0);
    }
    sink = mallocx(4096, 0);
#endif
    for (int i = 0; i < 5; i++) sink = malloc(64);
    for (int i = 0; i < 2; i++) sink = calloc(3, 40);
    sink = malloc(1234568);
    free(sink);
    printf("done\n");
    fflush(stdout);
    return 0;
}

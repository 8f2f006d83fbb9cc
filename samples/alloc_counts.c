/*
 * alloc_counts.c: calls every traced allocation API an exact, known number of times.
 *
 * Built by the recorder tests with `gcc -O1 -g -fno-omit-frame-pointer`. Every pointer goes
 * through a volatile sink so the compiler cannot fold or remove a call.
 *
 * What it leaks, deliberately: 7 malloc(77), 3 calloc(3, 33) and 2 anonymous mmaps of 8 KiB.
 * Everything else is released. A correct recording holds exactly (see tests/tests/record_*.rs):
 *   malloc        1000 + 50 (realloc'd to 0) + 7 leaked           = 1057 allocations
 *   calloc        500 + 3 leaked                                   =  503
 *   realloc       200 from NULL + 200 growing + 50 to size 0       =  450 (Realloc records)
 *   reallocarray  100 from NULL                                    =  100 (Realloc records)
 *   posix_memalign 150, memalign 110, aligned_alloc 120, valloc 90, pvalloc 80
 *                 (glibc: aligned_alloc is memalign's alias; a recorder that probes the shared
 *                 address once reports the 230 calls together under one name)
 *   mmap          60 + 2 leaked anonymous mappings; 5 file mappings are not reported
 *   free          1000 + 500 + 200 + 100 + 150 + 110 + 120 + 90 + 80 = 2350 (free(NULL) x1000
 *                 not counted), munmap 60 of the anonymous mappings
 * and a correct leak report names 7 x 77 B from malloc, 3 x 99 B from calloc, 2 x 8 KiB mmap.
 *
 * Usage: alloc_counts [--wait]   (--wait: read one line from stdin before starting, so a
 * recorder can attach with -p first; then print "done" and wait for another line.)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void *volatile sink;
static void *volatile null_pointer;

static void wait_line(void) {
    char line[64];
    if (!fgets(line, sizeof line, stdin)) {
        /* stdin closed: continue anyway */
    }
}

int main(int argc, char **argv) {
    int wait = argc > 1 && strcmp(argv[1], "--wait") == 0;
    if (wait) {
        printf("ready %d\n", (int)getpid());
        fflush(stdout);
        wait_line();
    }

    for (int i = 0; i < 1000; i++) { sink = malloc(48 + i % 16); free(sink); }
    for (int i = 0; i < 500; i++) { sink = calloc(4, 25); free(sink); }
    for (int i = 0; i < 200; i++) {
        sink = realloc(null_pointer, 64);
        sink = realloc(sink, 4096);
        free(sink);
    }
    for (int i = 0; i < 50; i++) { sink = malloc(32); sink = realloc(sink, 0); }
    for (int i = 0; i < 100; i++) { sink = reallocarray(null_pointer, 10, 8); free(sink); }
    for (int i = 0; i < 150; i++) {
        void *p = NULL;
        if (posix_memalign(&p, 64, 256) != 0) return 2;
        sink = p;
        free(sink);
    }
    for (int i = 0; i < 110; i++) { sink = memalign(32, 96); free(sink); }
    for (int i = 0; i < 120; i++) { sink = aligned_alloc(64, 128); free(sink); }
    for (int i = 0; i < 90; i++) { sink = valloc(100); free(sink); }
    for (int i = 0; i < 80; i++) { sink = pvalloc(100); free(sink); }
    for (int i = 0; i < 60; i++) {
        void *m = mmap(NULL, 16384, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) return 2;
        sink = m;
        munmap(m, 16384);
    }
    int fd = open(argv[0], O_RDONLY);
    if (fd < 0) return 2;
    for (int i = 0; i < 5; i++) {
        void *m = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) return 2;
        sink = m;
        munmap(m, 4096);
    }
    close(fd);
    for (int i = 0; i < 1000; i++) free(null_pointer);

    /* The deliberate leaks. */
    for (int i = 0; i < 7; i++) sink = malloc(77);
    for (int i = 0; i < 3; i++) sink = calloc(3, 33);
    for (int i = 0; i < 2; i++)
        sink = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (wait) {
        printf("done\n");
        fflush(stdout);
        wait_line();
    }
    return 0;
}

/*
 * own_allocator.c: a program with its own malloc/free/calloc/realloc (a bump allocator
 * compiled into the executable), standing in for statically linked or custom allocators.
 *
 * Recorded with `memtrail-record --lib <this executable>`, the probes go on these functions
 * instead of libc's. main makes 100 malloc(40) + free pairs and leaks 4 malloc(4000).
 * What it leaks: 4 x 4000 bytes from main (its free never reuses memory, but the trace only
 * cares about calls). A correct recording holds at least 104 mallocs (stdio may add some),
 * 100 matching frees, and 4 blocks of 4000 bytes left allocated.
 *
 * Built with `gcc -O1 -g -fno-omit-frame-pointer`.
 */
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>

static char *arena;
static size_t used;
#define ARENA_SIZE (64u << 20)

__attribute__((noinline)) void *malloc(size_t size) {
    if (!arena) {
        void *m = mmap(NULL, ARENA_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) return NULL;
        arena = m;
    }
    size_t total = (size + 16 + 15) & ~(size_t)15;
    if (used + total > ARENA_SIZE) return NULL;
    char *block = arena + used;
    used += total;
    *(size_t *)block = size;
    return block + 16;
}

static volatile size_t frees;

__attribute__((noinline)) void free(void *p) {
    if (p) frees++;
}

__attribute__((noinline)) void *calloc(size_t n, size_t size) {
    void *p = malloc(n * size);
    if (p) memset(p, 0, n * size);
    return p;
}

__attribute__((noinline)) void *realloc(void *old, size_t size) {
    void *p = malloc(size);
    if (p && old) {
        size_t old_size = *(size_t *)((char *)old - 16);
        memcpy(p, old, old_size < size ? old_size : size);
    }
    return p;
}

static void *volatile sink;

int main(void) {
    for (int i = 0; i < 100; i++) { sink = malloc(40); free(sink); }
    for (int i = 0; i < 4; i++) sink = malloc(4000);
    return 0;
}

/*
 * unwind_c.c: known call paths for unwinding without frame pointers (C).
 *
 * Built by the tests with `gcc -O2 -g -fomit-frame-pointer -pthread`. Each level has a
 * different kind of frame, so each CFI rule the unwinder follows is exercised:
 *   level_three: a 4 KiB local array (CFA = rsp + about 4 KiB);
 *   level_two:   alloca (a variable-sized frame: gcc keeps rbp and the CFA is rbp-based);
 *   level_one:   values live across the call (callee-saved registers pushed).
 * Allocations, each of a size no other call here uses:
 *   12345 B: malloc <- level_three <- level_two <- level_one <- main
 *   23456 B: malloc <- level_three <- level_two <- level_one <- worker <- start_thread
 * Neither block is freed. Usage: unwind_c   Prints "checksum N".
 */
#include <alloca.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline))

static void *volatile kept[2];
static volatile unsigned long checksum;

NOINLINE void *level_three(size_t n) {
    volatile char scratch[4096];
    scratch[n % 4096] = (char)n;
    char *block = malloc(n);
    if (block)
        block[0] = scratch[n % 4096];
    return block;
}

NOINLINE void *level_two(size_t n, size_t extra) {
    char *dynamic = alloca(extra);
    memset(dynamic, (int)n, extra);
    void *block = level_three(n);
    checksum += (unsigned char)dynamic[extra - 1];
    return block;
}

NOINLINE void *level_one(size_t n) {
    unsigned long a = checksum, b = a * 3 + n, c = b ^ (a << 7);
    void *block = level_two(n, 64 + (n & 63));
    checksum += a + b + c;
    return block;
}

NOINLINE void *worker(void *arg) {
    (void)arg;
    kept[1] = level_one(23456);
    return NULL;
}

int main(void) {
    kept[0] = level_one(12345);
    pthread_t thread;
    if (pthread_create(&thread, NULL, worker, NULL) != 0)
        return 1;
    pthread_join(thread, NULL);
    printf("checksum %lu\n", checksum);
    return 0;
}

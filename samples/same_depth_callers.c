/*
 * same_depth_callers.c: two call paths that reach malloc with the same registers.
 *
 * via_left and via_right have the same body (kept apart by noipa) and are called one after
 * the other from the same loop, so at malloc's return the instruction pointer (in allocate),
 * the stack pointer and the frame pointer are equal on both paths; only the return address
 * one frame further up, into via_left or via_right, tells them apart. An unwinder that
 * remembers walks by their starting registers must still tell them apart. Each path
 * allocates its own size:
 *   1111 B: malloc <- allocate <- via_left  <- main
 *   2222 B: malloc <- allocate <- via_right <- main
 * ROUNDS times each, every block freed. Usage: same_depth_callers [ROUNDS]  (default 2000)
 * Prints "checksum N".
 */
#include <stdio.h>
#include <stdlib.h>

#define PATH_FUNCTION __attribute__((noinline, noipa))

static volatile unsigned long checksum;

PATH_FUNCTION void *allocate(size_t n) {
    char *block = malloc(n);
    if (block)
        block[0] = (char)n;
    return block;
}

PATH_FUNCTION void *via_left(size_t n) {
    char *block = allocate(n);
    checksum += (unsigned long)n;
    return block;
}

PATH_FUNCTION void *via_right(size_t n) {
    char *block = allocate(n);
    checksum += (unsigned long)n;
    return block;
}

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 2000;
    for (long i = 0; i < rounds; i++) {
        free(via_left(1111));
        free(via_right(2222));
    }
    printf("checksum %lu\n", checksum);
    return 0;
}

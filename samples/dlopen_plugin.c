/*
 * dlopen_plugin.c: a shared library loaded at run time by dlopen_main.c.
 *
 * What it leaks: plugin_leak() mallocs PLUGIN_LEAKS = 10 blocks of 123 bytes and never frees
 * them. A correct recording attributes them to plugin_leak in this library, although the
 * library was mapped only after recording started.
 *
 * Built with `gcc -O1 -g -fno-omit-frame-pointer -shared -fPIC`.
 */
#include <stdlib.h>

void *volatile plugin_sink;

__attribute__((noinline)) void plugin_leak(void) {
    for (int i = 0; i < 10; i++) plugin_sink = malloc(123);
}

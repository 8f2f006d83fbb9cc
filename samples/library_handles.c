/*
 * library_handles.c: a program that forgets to release a third-party library's handles.
 *
 * `render_page` opens a widget from libwidget.so (widget_library.c), renders into it and
 * returns, PAGES_PER_SECOND times a second for SECONDS, without calling widget_close(): each
 * page leaks the library's handle and render buffer. With --close it releases them.
 *
 * What it leaks (default): per page, a 3000-byte calloc and a 56-byte malloc, both inside
 * widget_open in libwidget.so, called from render_page <- serve <- main: 100 pages a second.
 * A correct report: the first candidate is a `leak` of 3000-byte blocks, its frames
 * widget_open [libwidget.so] then render_page; the 56-byte handles are a second `leak`
 * through the same functions. With --close: no `leak` candidate.
 *
 * Usage: library_handles [--close] [SECONDS]   (default 2)
 * Built with `gcc -O1 -g -fno-omit-frame-pointer -o library_handles library_handles.c
 *   -L. -lwidget -Wl,-rpath,'$ORIGIN'` next to libwidget.so (the tests also build both
 * without frame pointers).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "widget_library.h"

#define PAGES_PER_SECOND 100

static volatile long checksum;
static int close_widgets;

__attribute__((noinline)) long render_page(long page) {
    struct widget *widget = widget_open("page");
    if (!widget) return -1;
    long sum = widget_render(widget, page);
    /* The bug: without --close, widget_close(widget) is never called. */
    if (close_widgets) widget_close(widget);
    return sum;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void serve(double seconds) {
    double end = now_seconds() + seconds;
    struct timespec pause = {0, 1000000000L / PAGES_PER_SECOND};
    for (long page = 1; now_seconds() < end; page++) {
        checksum += render_page(page);
        nanosleep(&pause, NULL);
    }
}

int main(int argc, char **argv) {
    int next = 1;
    if (argc > 1 && strcmp(argv[1], "--close") == 0) {
        close_widgets = 1;
        next = 2;
    }
    serve(argc > next ? atof(argv[next]) : 2.0);
    printf("checksum %ld\n", checksum);
    return 0;
}

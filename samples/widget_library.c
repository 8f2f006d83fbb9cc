/*
 * widget_library.c: a small "third-party" shared library (libwidget.so) whose handles need an
 * explicit release. See widget_library.h for the API; library_handles.c is its user.
 *
 * widget_open() makes two allocations: the handle (malloc, 56 B) and its render buffer
 * (calloc, WIDGET_BUFFER_BYTES); widget_close() frees both.
 *
 * What it leaks on its own: nothing. Whatever a caller forgets to widget_close() shows in a
 * correct report as allocated by widget_open in libwidget.so, called from the caller's
 * function (library_handles.c's render_page).
 *
 * Built with `gcc -O1 -g -fno-omit-frame-pointer -shared -fPIC -o libwidget.so`
 * (the tests also build it without frame pointers).
 */
#include <stdlib.h>
#include <string.h>

#include "widget_library.h"

#define WIDGET_BUFFER_BYTES 3000

struct widget {
    char name[40];
    size_t length;
    unsigned char *buffer;
};

struct widget *widget_open(const char *name) {
    struct widget *widget = malloc(sizeof *widget);
    if (!widget) return NULL;
    strncpy(widget->name, name, sizeof widget->name - 1);
    widget->name[sizeof widget->name - 1] = '\0';
    widget->length = WIDGET_BUFFER_BYTES;
    widget->buffer = calloc(1, WIDGET_BUFFER_BYTES);
    if (!widget->buffer) {
        free(widget);
        return NULL;
    }
    return widget;
}

long widget_render(struct widget *widget, long value) {
    long sum = 0;
    for (size_t i = 0; i < widget->length; i += 64) {
        widget->buffer[i] = (unsigned char)(value + i);
        sum += widget->buffer[i];
    }
    return sum;
}

void widget_close(struct widget *widget) {
    if (!widget) return;
    free(widget->buffer);
    free(widget);
}

/*
 * widget_library.h: the API of a "third-party" shared library (widget_library.c, built as
 * libwidget.so), used by library_handles.c.
 *
 * A handle from widget_open() owns memory inside the library and must be released with
 * widget_close(); the library has no way to know when the caller is done with it.
 */
#ifndef WIDGET_LIBRARY_H
#define WIDGET_LIBRARY_H

struct widget;

/* Opens a widget for `name`; NULL on failure. Release it with widget_close(). */
struct widget *widget_open(const char *name);
/* Renders `value` into the widget; returns a checksum of its buffer. */
long widget_render(struct widget *widget, long value);
/* Releases everything widget_open() allocated. */
void widget_close(struct widget *widget);

#endif

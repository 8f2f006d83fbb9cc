/*
 * realloc_buffer.c: a buffer grown with realloc, never released.
 *
 * For each request (REQUESTS_PER_SECOND a second for SECONDS), `build_response` assembles a
 * text response in a growable buffer: `append_text` doubles it with realloc when the next
 * piece does not fit (starting from NULL, so the first realloc allocates), 64 B up to 4 KiB.
 * The response is "sent" (checksummed) and the buffer is never freed.
 *
 * What it leaks: the final buffer of every request, 4096 B, 100 a second. Each realloc frees
 * the previous, smaller buffer (those are not leaks), so all that stays live comes from
 * realloc <- append_text <- build_response <- serve <- main.
 * A correct report: the first candidate is a `leak` of 4096-byte blocks allocated by realloc
 * from append_text; the intermediate sizes are freed.
 *
 * Usage: realloc_buffer [SECONDS]   (default 2)
 * Built with `gcc -O1 -g -fno-omit-frame-pointer` (the tests also build it without).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REQUESTS_PER_SECOND 100
#define LINES_PER_RESPONSE 80

struct text {
    char *data;
    size_t length, capacity;
};

static volatile long checksum;

/* Appends `piece`, doubling the buffer with realloc as needed; 0 on failure. */
__attribute__((noinline)) int append_text(struct text *text, const char *piece) {
    size_t n = strlen(piece);
    if (text->length + n + 1 > text->capacity) {
        size_t capacity = text->capacity ? text->capacity : 64;
        while (capacity < text->length + n + 1) capacity *= 2;
        char *grown = realloc(text->data, capacity);
        if (!grown) return 0;
        text->data = grown;
        text->capacity = capacity;
    }
    memcpy(text->data + text->length, piece, n + 1);
    text->length += n;
    return 1;
}

__attribute__((noinline)) struct text build_response(long request) {
    struct text text = {0};
    char line[96];
    for (int i = 0; i < LINES_PER_RESPONSE; i++) {
        snprintf(line, sizeof line, "request %08ld: line %02d of the response body\n", request, i);
        if (!append_text(&text, line)) break;
    }
    return text;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void serve(double seconds) {
    double end = now_seconds() + seconds;
    struct timespec pause = {0, 1000000000L / REQUESTS_PER_SECOND};
    for (long request = 1; now_seconds() < end; request++) {
        struct text response = build_response(request);
        if (response.data) checksum += response.data[response.length / 2];
        /* The leak: response.data is never freed. */
        nanosleep(&pause, NULL);
    }
}

int main(int argc, char **argv) {
    serve(argc > 1 ? atof(argv[1]) : 2.0);
    printf("checksum %ld\n", checksum);
    return 0;
}

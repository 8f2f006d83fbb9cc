/*
 * error_path.cpp: a leak on an error path (an exception thrown between new and delete), and
 * the RAII version that cannot leak.
 *
 * A server loop (`serve`) handles REQUESTS_PER_SECOND requests a second for SECONDS.
 * `handle_request` gets a 4 KiB buffer from `new_buffer` (operator new[]), parses the request
 * into it and deletes it; one request in four is malformed, `parse` throws, the exception
 * unwinds past the `delete[]`, and the buffer leaks. `serve` catches and counts the error, so
 * the program looks healthy. With --raii, `handle_request_raii` holds the same buffer in a
 * std::unique_ptr<char[]>, which frees it while the exception unwinds: nothing leaks.
 *
 * What it leaks (default): 50 blocks of 4096 B a second (one request in four), from
 * operator new[] <- new_buffer <- handle_request <- serve <- main. With frame pointers
 * `new_buffer` is not in the stack: libstdc++'s operator new keeps no frame pointer, so the
 * frame-pointer walk goes from it straight to the caller of `new_buffer`.
 * A correct report: one `leak` candidate, 4096-byte blocks growing until the end, whose frames
 * run through handle_request and serve; the exception machinery's own allocations are freed.
 * With --raii: no `leak` candidate (every buffer is freed, on both paths).
 *
 * Usage: error_path [--raii] [SECONDS]   (default 2)
 * Built with `g++ -O1 -g -fno-omit-frame-pointer` (the tests also build it without).
 */
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <stdexcept>

#define REQUESTS_PER_SECOND 200
#define BUFFER_BYTES 4096

static volatile long checksum;

__attribute__((noinline)) char *new_buffer() { return new char[BUFFER_BYTES]; }

/* Throws for one request in four, like a parser meeting bad input. */
__attribute__((noinline)) void parse(char *buffer, int request) {
    std::memset(buffer, request & 0xff, 64);
    if (request % 4 == 0) throw std::runtime_error("malformed request");
    checksum += buffer[0];
}

/* The bug: the delete[] is skipped when parse throws. */
__attribute__((noinline)) void handle_request(int request) {
    char *buffer = new_buffer();
    parse(buffer, request);
    delete[] buffer;
}

/* The fix: the buffer is owned by a unique_ptr and freed on every path. */
__attribute__((noinline)) void handle_request_raii(int request) {
    std::unique_ptr<char[]> buffer(new_buffer());
    parse(buffer.get(), request);
}

static double now_seconds() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) long serve(bool raii, double seconds) {
    long errors = 0;
    double end = now_seconds() + seconds;
    timespec pause = {0, 1000000000L / REQUESTS_PER_SECOND};
    for (int request = 1; now_seconds() < end; request++) {
        try {
            if (raii)
                handle_request_raii(request);
            else
                handle_request(request);
        } catch (const std::exception &) {
            errors++;
        }
        nanosleep(&pause, nullptr);
    }
    return errors;
}

int main(int argc, char **argv) {
    bool raii = argc > 1 && std::strcmp(argv[1], "--raii") == 0;
    int next = raii ? 2 : 1;
    double seconds = argc > next ? std::atof(argv[next]) : 2.0;
    long errors = serve(raii, seconds);
    std::printf("%ld malformed requests\n", errors);
    return 0;
}

/*
 * prefork_server.c: a parent and four forked workers sharing requests over socketpairs; one
 * worker leaks on a rare request kind.
 *
 * The parent forks WORKERS workers (fork, no exec), each with its own SOCK_SEQPACKET
 * socketpair, waits until every worker has said it is ready (one byte back on its socket, as
 * a real server waits for its workers before accepting), then sends REQUESTS requests spread
 * evenly over SECONDS. Request i is:
 *   - kind RARE when i % RARE_EVERY == RARE_EVERY - 1 (every 50th request): always sent to
 *     worker RARE_WORKER (2), the one worker that serves that kind;
 *   - otherwise kind LOOKUP (STATS when i % 5 == 4), sent to worker i % WORKERS.
 * The parent builds each request in a malloc'd message it frees after sending it. When all
 * are sent it closes the sockets, waits for every worker and exits 0 (1 if a worker failed).
 *
 * A worker serves requests until its socket is closed:
 *   - LOOKUP: a scratch buffer (malloc 64..319 B, freed), and a 512 B result kept in the
 *     worker's cache of CACHE_SLOTS entries, the oldest freed when the cache is full;
 *   - STATS: a calloc(16, 64) table, freed;
 *   - RARE (`handle_rare_request`): a RARE_BYTES (4096 B) audit record that is never freed:
 *     the bug. Only worker 2 receives this kind.
 * Before exiting (exit 0) a worker frees every cache entry: its cache is live for the whole
 * run but is not a leak.
 *
 * What it leaks: in worker 2 only, floor(REQUESTS / 50) blocks of 4096 B, one per rare
 * request, spread over the whole run: with the defaults 40 blocks, 163,840 bytes, all from
 * malloc <- handle_rare_request <- serve_requests <- run_worker <- main. Nothing else: the
 * parent, the other three workers and worker 2 otherwise free everything they allocate
 * (valgrind --trace-children=yes --leak-check=full: "definitely lost: 163,840 bytes in 40
 * blocks" in worker 2, "All heap blocks were freed" in the four other processes).
 * A correct report of a recording that follows the workers: worker 2's process has a `leak`
 * candidate through handle_rare_request with exactly those bytes; the parent and workers 0, 1,
 * 3 have no `leak`. A recording of the parent alone sees none of it.
 *
 * It prints (write(2), no stdio buffer is allocated) one line per worker when it exits:
 *   worker W pid P: N requests, L leaked blocks of 4096 bytes
 * and the parent's last line: `served REQUESTS requests with 4 workers`.
 *
 * Usage: prefork_server [REQUESTS [SECONDS]]   (default 2000 requests over 2 seconds)
 * Built with `gcc -O1 -g -fno-omit-frame-pointer`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 4
#define RARE_WORKER 2
#define RARE_EVERY 50
#define RARE_BYTES 4096
#define CACHE_SLOTS 32
#define RESULT_BYTES 512

enum kind { LOOKUP = 1, STATS = 2, RARE = 3 };

struct request {
    uint32_t id;
    uint32_t kind;
    char key[24];
};

static void *volatile sink;

/* printf-like output without stdio: stdout's buffer would be a block allocated before the
 * fork and inherited by every worker. */
static void say(const char *format, long a, long b, long c, long d) {
    char line[160];
    int n = snprintf(line, sizeof line, format, a, b, c, d);
    if (n > 0 && write(STDOUT_FILENO, line, (size_t)n) < 0) {
        /* stdout closed: nothing to report to */
    }
}

/* A worker's cache of recent results: live for the whole run, freed before exit. */
static char *cache[CACHE_SLOTS];
static unsigned cache_next;

__attribute__((noinline)) static void cache_put(char *result) {
    free(cache[cache_next]);
    cache[cache_next] = result;
    cache_next = (cache_next + 1) % CACHE_SLOTS;
}

__attribute__((noinline)) static void cache_clear(void) {
    for (unsigned i = 0; i < CACHE_SLOTS; i++) {
        free(cache[i]);
        cache[i] = NULL;
    }
}

__attribute__((noinline)) static void handle_lookup(const struct request *r) {
    char *scratch = malloc(64 + r->id % 256);
    if (!scratch) return;
    memcpy(scratch, r->key, sizeof r->key);
    char *result = malloc(RESULT_BYTES);
    if (result) {
        memset(result, (int)(r->id & 0xff), RESULT_BYTES);
        cache_put(result);
    }
    free(scratch);
}

__attribute__((noinline)) static void handle_stats(const struct request *r) {
    uint64_t *table = calloc(16, 64);
    if (!table) return;
    table[r->id % 128] = r->id;
    sink = table;
    free(table);
}

/* The bug: the audit record is built and forgotten. */
__attribute__((noinline)) void handle_rare_request(const struct request *r) {
    char *audit = malloc(RARE_BYTES);
    if (!audit) return;
    memset(audit, 0, RARE_BYTES);
    memcpy(audit, r->key, sizeof r->key);
    sink = audit;
    sink = NULL;
}

/* Serves requests until the parent closes the socket; returns the number served. */
__attribute__((noinline)) long serve_requests(int socket, long *leaked) {
    long served = 0;
    struct request r;
    for (;;) {
        ssize_t n = recv(socket, &r, sizeof r, 0);
        if (n == 0) break;
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if ((size_t)n != sizeof r) continue;
        switch (r.kind) {
        case LOOKUP: handle_lookup(&r); break;
        case STATS: handle_stats(&r); break;
        case RARE:
            handle_rare_request(&r);
            (*leaked)++;
            break;
        default: break;
        }
        served++;
    }
    return served;
}

__attribute__((noinline)) static int run_worker(int number, int socket) {
    char ready = 'R';
    if (send(socket, &ready, 1, MSG_NOSIGNAL) != 1) return 1;
    long leaked = 0;
    long served = serve_requests(socket, &leaked);
    cache_clear();
    close(socket);
    say("worker %ld pid %ld: %ld requests, %ld leaked blocks of 4096 bytes\n", number,
        (long)getpid(), served, leaked);
    return 0;
}

static void sleep_until(const struct timespec *deadline) {
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, deadline, NULL) == EINTR) {
    }
}

/* Sends `requests` requests over `seconds`, one malloc'd message each. */
__attribute__((noinline)) static int dispatch(const int *sockets, long requests, double seconds) {
    struct timespec start, deadline;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long i = 0; i < requests; i++) {
        double at = seconds * (double)i / (double)requests;
        long ns = start.tv_nsec + (long)((at - (long)at) * 1e9);
        deadline.tv_sec = start.tv_sec + (long)at + ns / 1000000000L;
        deadline.tv_nsec = ns % 1000000000L;
        sleep_until(&deadline);

        struct request *r = malloc(sizeof *r);
        if (!r) return -1;
        memset(r, 0, sizeof *r);
        r->id = (uint32_t)i;
        int worker;
        if (i % RARE_EVERY == RARE_EVERY - 1) {
            r->kind = RARE;
            worker = RARE_WORKER;
        } else {
            r->kind = i % 5 == 4 ? STATS : LOOKUP;
            worker = (int)(i % WORKERS);
        }
        snprintf(r->key, sizeof r->key, "key-%ld", i);
        ssize_t sent;
        do {
            sent = send(sockets[worker], r, sizeof *r, MSG_NOSIGNAL);
        } while (sent < 0 && errno == EINTR);
        free(r);
        if (sent != (ssize_t)sizeof *r) return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    long requests = argc > 1 ? atol(argv[1]) : 2000;
    double seconds = argc > 2 ? atof(argv[2]) : 2.0;
    if (requests < 0 || seconds < 0) return 2;

    int sockets[WORKERS];
    pid_t pids[WORKERS];
    for (int w = 0; w < WORKERS; w++) {
        int pair[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, pair) != 0) return 1;
        pid_t pid = fork();
        if (pid < 0) return 1;
        if (pid == 0) {
            close(pair[0]);
            for (int earlier = 0; earlier < w; earlier++) close(sockets[earlier]);
            exit(run_worker(w, pair[1]));
        }
        close(pair[1]);
        sockets[w] = pair[0];
        pids[w] = pid;
    }

    /* Requests flow once every worker runs: a worker that starts late (a slow machine, a
     * tracer attaching to it) does not receive its share in one burst. */
    for (int w = 0; w < WORKERS; w++) {
        char ready;
        ssize_t n;
        do {
            n = recv(sockets[w], &ready, 1, 0);
        } while (n < 0 && errno == EINTR);
        if (n != 1) return 1;
    }
    int failed = dispatch(sockets, requests, seconds) != 0;
    for (int w = 0; w < WORKERS; w++) close(sockets[w]);
    for (int w = 0; w < WORKERS; w++) {
        int status;
        while (waitpid(pids[w], &status, 0) < 0) {
            if (errno != EINTR) return 1;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = 1;
    }
    say("served %ld requests with %ld workers\n", requests, WORKERS, 0, 0);
    return failed;
}

/*
 * producer_consumer.c: messages allocated by one thread and freed by another; with --drop,
 * the consumer discards some of them without freeing them.
 *
 * A producer thread builds MESSAGES_PER_SECOND messages a second for SECONDS (`new_message`:
 * one malloc of MESSAGE_BYTES) and passes them through a bounded queue to a consumer thread,
 * which handles each one and frees it. With --drop, the consumer skips messages it considers
 * stale (one in eight) with `continue`, before the free: those are never freed.
 *
 * What it leaks: nothing by default: every message is freed, by the other thread. With
 * --drop: 62.5 blocks of 1024 B a second, allocated at malloc <- new_message <- producer
 * (the report names where the memory was allocated; the bug is in `consumer`, which a
 * malloc/free tracer cannot see, since it never calls free).
 * A correct report: by default, no `leak` candidate (new_message's blocks are all freed,
 * although on another thread); with --drop, the first candidate is a `leak` from
 * new_message <- producer, growing until the end.
 *
 * Usage: producer_consumer [--drop] [SECONDS]   (default 2)
 * Built with `gcc -O1 -g -fno-omit-frame-pointer -pthread` (the tests also build it without).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MESSAGES_PER_SECOND 500
#define MESSAGE_BYTES 1024
#define QUEUE_SLOTS 32

struct message {
    long sequence;
    char payload[MESSAGE_BYTES - sizeof(long)];
};

static struct {
    struct message *slots[QUEUE_SLOTS];
    int head, count;
    pthread_mutex_t lock;
    pthread_cond_t changed;
} queue = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};

static int drop_stale;
static double seconds = 2.0;
static volatile long checksum;

static void push(struct message *m) {
    pthread_mutex_lock(&queue.lock);
    while (queue.count == QUEUE_SLOTS) pthread_cond_wait(&queue.changed, &queue.lock);
    queue.slots[(queue.head + queue.count) % QUEUE_SLOTS] = m;
    queue.count++;
    pthread_cond_broadcast(&queue.changed);
    pthread_mutex_unlock(&queue.lock);
}

static struct message *pop(void) {
    pthread_mutex_lock(&queue.lock);
    while (queue.count == 0) pthread_cond_wait(&queue.changed, &queue.lock);
    struct message *m = queue.slots[queue.head];
    queue.head = (queue.head + 1) % QUEUE_SLOTS;
    queue.count--;
    pthread_cond_broadcast(&queue.changed);
    pthread_mutex_unlock(&queue.lock);
    return m;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) struct message *new_message(long sequence) {
    struct message *m = malloc(sizeof *m);
    if (!m) return NULL;
    m->sequence = sequence;
    memset(m->payload, (int)(sequence & 0x7f), sizeof m->payload);
    return m;
}

__attribute__((noinline)) void *producer(void *arg) {
    (void)arg;
    double end = now_seconds() + seconds;
    struct timespec pause = {0, 1000000000L / MESSAGES_PER_SECOND};
    for (long sequence = 1; now_seconds() < end; sequence++) {
        struct message *m = new_message(sequence);
        if (!m) break;
        push(m);
        nanosleep(&pause, NULL);
    }
    push(NULL); /* end of stream */
    return NULL;
}

__attribute__((noinline)) void *consumer(void *arg) {
    (void)arg;
    for (;;) {
        struct message *m = pop();
        if (!m) break;
        /* The bug of --drop: a stale message is skipped before the free below. */
        if (drop_stale && m->sequence % 8 == 0) continue;
        checksum += m->payload[0];
        free(m);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int next = 1;
    if (argc > 1 && strcmp(argv[1], "--drop") == 0) {
        drop_stale = 1;
        next = 2;
    }
    if (argc > next) seconds = atof(argv[next]);
    pthread_t threads[2];
    if (pthread_create(&threads[0], NULL, producer, NULL)) return 1;
    if (pthread_create(&threads[1], NULL, consumer, NULL)) return 1;
    pthread_join(threads[0], NULL);
    pthread_join(threads[1], NULL);
    printf("checksum %ld\n", checksum);
    return 0;
}

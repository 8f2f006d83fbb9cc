/*
 * threads_free_elsewhere.c: blocks allocated on one thread and freed on another.
 *
 * A producer thread mallocs PER_PRODUCER blocks of 200 bytes and hands them through a queue to
 * a consumer thread, which frees them; PRODUCERS producer/consumer pairs run at once. Frees
 * made by another thread are still frees of the same blocks.
 *
 * What it leaks: nothing; exactly PRODUCERS * PER_PRODUCER = 4 * 2000 = 8000 mallocs of 200
 * bytes, all freed by a thread other than the one that allocated them. A correct recording
 * matches every free to its malloc (zero outstanding bytes from the producer stack).
 *
 * Built with `gcc -O1 -g -fno-omit-frame-pointer -pthread`.
 */
#include <pthread.h>
#include <stdlib.h>

#define PRODUCERS 4
#define PER_PRODUCER 2000
#define QUEUE 64

struct queue {
    void *slots[QUEUE];
    int head, tail, count;
    pthread_mutex_t lock;
    pthread_cond_t changed;
};

static struct queue queues[PRODUCERS];

__attribute__((noinline)) static void *produce_block(void) { return malloc(200); }

static void *producer(void *arg) {
    struct queue *q = arg;
    for (int i = 0; i < PER_PRODUCER; i++) {
        void *block = produce_block();
        pthread_mutex_lock(&q->lock);
        while (q->count == QUEUE) pthread_cond_wait(&q->changed, &q->lock);
        q->slots[q->tail] = block;
        q->tail = (q->tail + 1) % QUEUE;
        q->count++;
        pthread_cond_broadcast(&q->changed);
        pthread_mutex_unlock(&q->lock);
    }
    return NULL;
}

static void *consumer(void *arg) {
    struct queue *q = arg;
    for (int i = 0; i < PER_PRODUCER; i++) {
        pthread_mutex_lock(&q->lock);
        while (q->count == 0) pthread_cond_wait(&q->changed, &q->lock);
        void *block = q->slots[q->head];
        q->head = (q->head + 1) % QUEUE;
        q->count--;
        pthread_cond_broadcast(&q->changed);
        pthread_mutex_unlock(&q->lock);
        free(block);
    }
    return NULL;
}

int main(void) {
    pthread_t threads[2 * PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        pthread_mutex_init(&queues[i].lock, NULL);
        pthread_cond_init(&queues[i].changed, NULL);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        if (pthread_create(&threads[2 * i], NULL, producer, &queues[i])) return 1;
        if (pthread_create(&threads[2 * i + 1], NULL, consumer, &queues[i])) return 1;
    }
    for (int i = 0; i < 2 * PRODUCERS; i++) pthread_join(threads[i], NULL);
    return 0;
}

/* An xmalloc-test-like producer/consumer run (this project's own code, after the benchmark of
   that name): P producer threads allocate blocks of random sizes in [MIN, MAX] and pass them in
   batches through one queue to C consumer threads, which free them: every free is of a block
   another thread allocated.

   usage: xmalloc PRODUCERS CONSUMERS BLOCKS_PER_PRODUCER MIN MAX
   prints the number of blocks freed. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BATCH = 64 };

struct batch {
    struct batch *next;
    size_t n;
    void *blocks[BATCH];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready = PTHREAD_COND_INITIALIZER;
static struct batch *queue;
static size_t producers_left;
static size_t per_producer, min_size, max_size;
static uint64_t freed;

static void push(struct batch *b) {
    pthread_mutex_lock(&lock);
    b->next = queue;
    queue = b;
    pthread_cond_signal(&ready);
    pthread_mutex_unlock(&lock);
}

static void *produce(void *arg) {
    uint64_t s = 0x9e3779b97f4a7c15ULL * ((uintptr_t)arg + 1);
    struct batch *b = malloc(sizeof *b);
    b->n = 0;
    for (size_t i = 0; i < per_producer; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        size_t n = min_size + s % (max_size - min_size + 1);
        char *p = malloc(n);
        if (p == NULL) {
            fprintf(stderr, "xmalloc: malloc(%zu) failed\n", n);
            exit(1);
        }
        memset(p, (int)(i & 0xff), n < 32 ? n : 32);
        b->blocks[b->n++] = p;
        if (b->n == BATCH) {
            push(b);
            b = malloc(sizeof *b);
            b->n = 0;
        }
    }
    push(b);
    pthread_mutex_lock(&lock);
    producers_left--;
    pthread_cond_broadcast(&ready);
    pthread_mutex_unlock(&lock);
    return NULL;
}

static void *consume(void *arg) {
    (void)arg;
    uint64_t mine = 0;
    for (;;) {
        pthread_mutex_lock(&lock);
        while (queue == NULL && producers_left > 0)
            pthread_cond_wait(&ready, &lock);
        struct batch *b = queue;
        if (b != NULL)
            queue = b->next;
        pthread_mutex_unlock(&lock);
        if (b == NULL)
            break;
        for (size_t i = 0; i < b->n; i++)
            free(b->blocks[i]);
        mine += b->n;
        free(b);
    }
    __atomic_fetch_add(&freed, mine, __ATOMIC_RELAXED);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: xmalloc PRODUCERS CONSUMERS BLOCKS_PER_PRODUCER MIN MAX\n");
        return 2;
    }
    size_t np = strtoul(argv[1], 0, 10), nc = strtoul(argv[2], 0, 10);
    per_producer = strtoul(argv[3], 0, 10);
    min_size = strtoul(argv[4], 0, 10);
    max_size = strtoul(argv[5], 0, 10);
    producers_left = np;
    pthread_t *t = calloc(np + nc, sizeof *t);
    for (size_t i = 0; i < nc; i++)
        pthread_create(&t[i], NULL, consume, NULL);
    for (size_t i = 0; i < np; i++)
        pthread_create(&t[nc + i], NULL, produce, (void *)(uintptr_t)i);
    for (size_t i = 0; i < np + nc; i++)
        pthread_join(t[i], NULL);
    printf("%llu\n", (unsigned long long)freed);
    free(t);
    return 0;
}

/* A larson-like server simulation (this project's own code, after the workload Larson and
   Krishnan describe): each of T threads owns S slots of blocks; a step frees a random slot's
   block and allocates a new one of a random size in [MIN, MAX], writing it. After each round
   of STEPS steps a thread hands its slots to a new thread and exits, so blocks are freed by
   threads that did not allocate them and threads come and go.

   usage: larson THREADS ROUNDS STEPS SLOTS MIN MAX
   prints the sum of the bytes allocated (the same for every allocator). */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct worker {
    char **slots;
    size_t nslots, steps, min, max;
    unsigned long rounds_left;
    uint64_t seed, bytes;
};

static uint64_t next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void *run(void *arg) {
    struct worker *w = arg;
    for (size_t i = 0; i < w->steps; i++) {
        size_t k = next(&w->seed) % w->nslots;
        size_t n = w->min + next(&w->seed) % (w->max - w->min + 1);
        free(w->slots[k]);
        w->slots[k] = malloc(n);
        if (w->slots[k] == NULL) {
            fprintf(stderr, "larson: malloc(%zu) failed\n", n);
            exit(1);
        }
        memset(w->slots[k], (int)(i & 0xff), n < 64 ? n : 64);
        w->bytes += n;
    }
    if (--w->rounds_left > 0) {
        /* Hand the slots to a new thread and end this one. */
        pthread_t t;
        if (pthread_create(&t, NULL, run, w) != 0) {
            perror("pthread_create");
            exit(1);
        }
        pthread_detach(t);
    } else {
        for (size_t k = 0; k < w->nslots; k++)
            free(w->slots[k]);
        free(w->slots);
        __atomic_store_n(&w->slots, NULL, __ATOMIC_RELEASE);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: larson THREADS ROUNDS STEPS SLOTS MIN MAX\n");
        return 2;
    }
    size_t threads = strtoul(argv[1], 0, 10), rounds = strtoul(argv[2], 0, 10);
    size_t steps = strtoul(argv[3], 0, 10), slots = strtoul(argv[4], 0, 10);
    size_t min = strtoul(argv[5], 0, 10), max = strtoul(argv[6], 0, 10);
    struct worker *w = calloc(threads, sizeof *w);
    for (size_t i = 0; i < threads; i++) {
        w[i] = (struct worker){calloc(slots, sizeof(char *)), slots, steps, min, max, rounds,
                               0x9e3779b97f4a7c15ULL * (i + 1), 0};
        for (size_t k = 0; k < slots; k++) {
            w[i].slots[k] = malloc(min);
            w[i].bytes += min;
        }
    }
    pthread_t *t = calloc(threads, sizeof *t);
    for (size_t i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, run, &w[i]);
    for (size_t i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    /* The last thread of each chain is detached: wait until every chain has freed its slots. */
    for (;;) {
        size_t open = 0;
        for (size_t i = 0; i < threads; i++)
            open += __atomic_load_n(&w[i].slots, __ATOMIC_ACQUIRE) != NULL;
        if (open == 0)
            break;
        sched_yield();
    }
    uint64_t bytes = 0;
    for (size_t i = 0; i < threads; i++)
        bytes += w[i].bytes;
    printf("%llu\n", (unsigned long long)bytes);
    free(t);
    free(w);
    return 0;
}

/* A minimal LD_PRELOAD recorder for the glibc comparison test: logs every malloc-family call of
 * a single-threaded program as lines "a PTR SIZE", "c PTR SIZE", "m PTR ALIGN SIZE",
 * "r OLD NEW SIZE", "f PTR" (hex) to $PT_RECORD_OUT, through a static buffer and write(2) (it
 * never allocates), forwarding to glibc's own __libc_* entry points. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>
#include <stdlib.h>
#include <errno.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

static char buf[1 << 20];
static size_t len;
static int fd = -2;

static void flush(void) {
    if (fd == -2) {
        const char *p = getenv("PT_RECORD_OUT");
        fd = p ? open(p, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644) : -1;
    }
    if (fd >= 0) {
        size_t w = 0;
        while (w < len) {
            ssize_t n = write(fd, buf + w, len - w);
            if (n <= 0) break;
            w += (size_t)n;
        }
    }
    len = 0;
}

static void hex(unsigned long v) {
    char b[20];
    int i = 20;
    do { b[--i] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v);
    memcpy(buf + len, b + i, (size_t)(20 - i));
    len += (size_t)(20 - i);
}

static void rec(char op, int n, unsigned long a, unsigned long b, unsigned long c) {
    if (len + 80 > sizeof buf) flush();
    buf[len++] = op;
    buf[len++] = ' ';
    hex(a);
    if (n > 1) { buf[len++] = ' '; hex(b); }
    if (n > 2) { buf[len++] = ' '; hex(c); }
    buf[len++] = '\n';
}

__attribute__((destructor)) static void done(void) { flush(); }

void *malloc(size_t n) { void *p = __libc_malloc(n); rec('a', 2, (unsigned long)p, n, 0); return p; }
void free(void *p) { if (p) rec('f', 1, (unsigned long)p, 0, 0); __libc_free(p); }
void *calloc(size_t n, size_t s) { void *p = __libc_calloc(n, s); rec('c', 2, (unsigned long)p, n * s, 0); return p; }
void *realloc(void *o, size_t n) { void *p = __libc_realloc(o, n); rec('r', 3, (unsigned long)o, (unsigned long)p, n); return p; }
void *memalign(size_t a, size_t n) { void *p = __libc_memalign(a, n); rec('m', 3, (unsigned long)p, a, n); return p; }
void *aligned_alloc(size_t a, size_t n) { return memalign(a, n); }
void *valloc(size_t n) { return memalign(4096, n); }
int posix_memalign(void **out, size_t a, size_t n) {
    void *p = memalign(a, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

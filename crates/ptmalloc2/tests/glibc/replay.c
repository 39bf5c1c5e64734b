/* Replays a trace in the project's text format through the real malloc and prints, for every
 * a/c/m/r event, "OP ID SIZE OFFSET" where OFFSET is the user pointer minus the program break
 * taken before the first malloc (decimal), "MMAP" for an mmapped chunk, "NULL" for a NULL result.
 *
 * It allocates nothing itself: the trace is read with read(2) into a static buffer, results go to
 * a static array, and the output is formatted by hand and written with write(2) at the end
 * (printf would malloc its stdout buffer). Usage: replay TRACE   (GLIBC_TUNABLES as you like).
 *
 * An optional leading "tN " thread field is skipped. With PT_REPLAY_FOOTPRINT set in the
 * environment it also prints, on every line and for every free ("f ID FP"), the heap's footprint
 * after the event: the program break's extent plus the mapped chunks' bytes (prev_size + size of
 * each IS_MMAPPED chunk: whole pages), what glibc's heap is.
 *
 * For the bad-input tests it also understands three private events:
 *   F ID          free the block but keep its pointer (so a later F frees it again)
 *   X ID OFF      free(pointer + OFF)
 *   W ID OFF VAL  store the word VAL at pointer + OFF (OFF may be negative: headers) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TRACE (64u << 20)
#define MAX_IDS (1u << 21)
#define MAX_OUT (1u << 21)

static char trace[MAX_TRACE];
static void *ptrs[MAX_IDS];
static struct rec { char op; unsigned long id, size; long off; unsigned long fp; } out[MAX_OUT];
static unsigned long mapped[MAX_IDS]; /* bytes of the mapping of block ID, if mapped */
static unsigned long nout;
static char obuf[1 << 16];
static size_t olen;

static void die(const char *m) {
    write(2, m, strlen(m));
    write(2, "\n", 1);
    _exit(2);
}

static void flush(void) {
    size_t w = 0;
    while (w < olen) {
        ssize_t n = write(1, obuf + w, olen - w);
        if (n <= 0) _exit(3);
        w += (size_t)n;
    }
    olen = 0;
}

static void put(const char *s, size_t n) {
    if (olen + n > sizeof obuf) flush();
    memcpy(obuf + olen, s, n);
    olen += n;
}

static void putnum(unsigned long v) {
    char b[24];
    int i = 24;
    do { b[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    put(b + i, (size_t)(24 - i));
}

static const char *cur, *end;

static int number(unsigned long *v) {
    while (cur < end && *cur == ' ') cur++;
    if (cur >= end || *cur < '0' || *cur > '9') return 0;
    unsigned long x = 0;
    while (cur < end && *cur >= '0' && *cur <= '9') x = x * 10 + (unsigned long)(*cur++ - '0');
    *v = x;
    return 1;
}

static int snumber(long *v) {
    while (cur < end && *cur == ' ') cur++;
    int neg = 0;
    if (cur < end && *cur == '-') { neg = 1; cur++; }
    unsigned long x;
    if (!number(&x)) return 0;
    *v = neg ? -(long)x : (long)x;
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) die("usage: replay TRACE");
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) die("cannot open trace");
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, trace + len, MAX_TRACE - len);
        if (n < 0) die("read failed");
        if (n == 0) break;
        len += (size_t)n;
        if (len == MAX_TRACE) die("trace too large");
    }
    close(fd);
    int footprint = getenv("PT_REPLAY_FOOTPRINT") != NULL;
    unsigned long mapped_total = 0;
    char *base = sbrk(0);
    cur = trace;
    end = trace + len;
    while (cur < end) {
        const char *eol = memchr(cur, '\n', (size_t)(end - cur));
        const char *line_end = eol ? eol : end;
        if (cur == line_end || *cur == '#') { cur = line_end + 1; continue; }
        if (*cur == 't') {
            while (cur < line_end && *cur != ' ') cur++;
            while (cur < line_end && *cur == ' ') cur++;
        }
        char op = *cur++;
        unsigned long id = 0, a = 0, b = 0;
        if (!number(&id) || id >= MAX_IDS) die("bad id");
        void *p = NULL;
        switch (op) {
        case 'a': if (!number(&a)) die("bad size"); p = malloc(a); break;
        case 'c': if (!number(&a)) die("bad size"); p = calloc(1, a); break;
        case 'm': if (!number(&b) || !number(&a)) die("bad memalign"); p = memalign(b, a); break;
        case 'r': if (!number(&a)) die("bad size"); p = realloc(ptrs[id], a); break;
        case 'f': free(ptrs[id]); ptrs[id] = NULL; break;
        case 'F': free(ptrs[id]); break;
        case 'X': { long off; if (!snumber(&off)) die("bad offset"); free((char *)ptrs[id] + off); break; }
        case 'W': {
            long off, val;
            if (!snumber(&off) || !snumber(&val)) die("bad write");
            *(long *)((char *)ptrs[id] + off) = val;
            break;
        }
        default: die("bad op");
        }
        if (op == 'F' || op == 'X' || op == 'W') { cur = line_end + 1; continue; }
        /* The block ID named before this event is gone (freed, or moved by realloc: a failed
         * realloc keeps it), and p, if any, is its new block. */
        if (op == 'f' || (op == 'r' && (p != NULL || a == 0))) {
            mapped_total -= mapped[id];
            mapped[id] = 0;
        }
        if (p != NULL && (((size_t *)p)[-1] & 2)) {
            mapped[id] = ((size_t *)p)[-2] + (((size_t *)p)[-1] & ~(size_t)7);
            mapped_total += mapped[id];
        }
        if (op != 'f' || footprint) {
            if (op != 'f') ptrs[id] = p;
            if (nout >= MAX_OUT) die("too many events");
            long off;
            if (op == 'f') off = 0;
            else if (p == NULL) off = -1;
            else if (((size_t *)p)[-1] & 2) off = -2;
            else off = (long)((char *)p - base);
            out[nout].op = op; out[nout].id = id; out[nout].size = a; out[nout].off = off;
            out[nout].fp = (unsigned long)((char *)sbrk(0) - base) + mapped_total;
            nout++;
        }
        cur = line_end + 1;
    }
    for (unsigned long i = 0; i < nout; i++) {
        put(&out[i].op, 1); put(" ", 1);
        putnum(out[i].id);
        if (out[i].op != 'f') {
            put(" ", 1);
            putnum(out[i].size); put(" ", 1);
            if (out[i].off == -1) put("NULL", 4);
            else if (out[i].off == -2) put("MMAP", 4);
            else putnum((unsigned long)out[i].off);
        }
        if (footprint) { put(" ", 1); putnum(out[i].fp); }
        put("\n", 1);
    }
    flush();
    return 0;
}

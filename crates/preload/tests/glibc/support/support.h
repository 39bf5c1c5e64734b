/* Allocation wrappers that exit on failure, memory shared with subprocesses, a failure flag
   that survives into the driver, and a write that needs no allocation: this project's shim of
   glibc's support/support.h. */
#ifndef SHIM_SUPPORT_SUPPORT_H
#define SHIM_SUPPORT_SUPPORT_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SHIM_UNUSED __attribute__ ((unused))

/* Failures recorded by any process of the test (shared: set up by the driver before it forks). */
static volatile int *shim_failures;

static SHIM_UNUSED void
support_record_failure (void)
{
  if (shim_failures != NULL)
    __atomic_fetch_add (shim_failures, 1, __ATOMIC_RELAXED);
}

static SHIM_UNUSED void
shim_oom (const char *what, size_t n)
{
  printf ("error: %s of %zu bytes failed: %s\n", what, n, strerror (errno));
  exit (1);
}

static SHIM_UNUSED void *
xmalloc (size_t n)
{
  void *p = malloc (n);
  if (p == NULL)
    shim_oom ("malloc", n);
  return p;
}

static SHIM_UNUSED void *
xcalloc (size_t n, size_t s)
{
  void *p = calloc (n, s);
  if (p == NULL)
    shim_oom ("calloc", n * s);
  return p;
}

static SHIM_UNUSED void *
xrealloc (void *o, size_t n)
{
  void *p = realloc (o, n);
  if (p == NULL && n != 0)
    shim_oom ("realloc", n);
  return p;
}

static SHIM_UNUSED char *
xstrdup (const char *s)
{
  char *p = strdup (s);
  if (p == NULL)
    shim_oom ("strdup", strlen (s) + 1);
  return p;
}

/* Writes MESSAGE to stdout with write(2) alone (usable in a signal handler). */
static SHIM_UNUSED void
write_message (const char *message)
{
  size_t n = strlen (message);
  while (n > 0)
    {
      ssize_t w = write (STDOUT_FILENO, message, n);
      if (w <= 0)
        return;
      message += w;
      n -= (size_t) w;
    }
}

/* SIZE bytes shared with the processes this one forks. */
static SHIM_UNUSED void *
support_shared_allocate (size_t size)
{
  void *p = mmap (NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    shim_oom ("mmap (MAP_SHARED)", size);
  return p;
}

static SHIM_UNUSED void
support_shared_free (void *p)
{
  (void) p; /* The size is not known here: left to the process's exit. */
}
#endif

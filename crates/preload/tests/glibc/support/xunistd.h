/* System calls that exit on failure: this project's shim of glibc's support/xunistd.h. */
#ifndef SHIM_SUPPORT_XUNISTD_H
#define SHIM_SUPPORT_XUNISTD_H
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <support/check.h>

static SHIM_UNUSED pid_t
xfork (void)
{
  pid_t p = fork ();
  if (p < 0)
    FAIL_EXIT1 ("fork: %s", strerror (errno));
  return p;
}

static SHIM_UNUSED pid_t
xwaitpid (pid_t pid, int *status, int flags)
{
  pid_t r = waitpid (pid, status, flags);
  if (r < 0)
    FAIL_EXIT1 ("waitpid: %s", strerror (errno));
  return r;
}

/* glibc's xopen fails the test on error, so its result is never negative. */
static SHIM_UNUSED int
xopen (const char *path, int flags, mode_t mode)
{
  int fd = open (path, flags, mode);
  if (fd < 0)
    FAIL_EXIT1 ("open (\"%s\"): %s", path, strerror (errno));
  return fd;
}

static SHIM_UNUSED void
xclose (int fd)
{
  if (close (fd) != 0)
    FAIL_EXIT1 ("close: %s", strerror (errno));
}

static SHIM_UNUSED void *
xmmap (void *addr, size_t length, int prot, int flags, int fd)
{
  void *p = mmap (addr, length, prot, flags, fd, 0);
  if (p == MAP_FAILED)
    FAIL_EXIT1 ("mmap of %zu bytes: %s", length, strerror (errno));
  return p;
}

static SHIM_UNUSED void
xmunmap (void *addr, size_t length)
{
  if (munmap (addr, length) != 0)
    FAIL_EXIT1 ("munmap: %s", strerror (errno));
}
#endif

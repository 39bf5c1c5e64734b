/* pthread calls that exit on failure: this project's shim of glibc's support/xthread.h. */
#ifndef SHIM_SUPPORT_XTHREAD_H
#define SHIM_SUPPORT_XTHREAD_H
#include <pthread.h>
#include <support/check.h>

#define SHIM_X(call)                                                             \
  do {                                                                           \
    int shim_e = (call);                                                         \
    if (shim_e != 0) {                                                           \
      printf ("error: %s:%d: %s: %s\n", __FILE__, __LINE__, #call, strerror (shim_e)); \
      exit (1);                                                                  \
    }                                                                            \
  } while (0)

static SHIM_UNUSED pthread_t
xpthread_create (pthread_attr_t *attr, void *(*fn) (void *), void *arg)
{
  pthread_t t;
  SHIM_X (pthread_create (&t, attr, fn, arg));
  return t;
}

static SHIM_UNUSED void *
xpthread_join (pthread_t t)
{
  void *r;
  SHIM_X (pthread_join (t, &r));
  return r;
}

static SHIM_UNUSED void
xpthread_barrier_init (pthread_barrier_t *b, pthread_barrierattr_t *a, unsigned n)
{
  SHIM_X (pthread_barrier_init (b, a, n));
}

static SHIM_UNUSED int
xpthread_barrier_wait (pthread_barrier_t *b)
{
  int r = pthread_barrier_wait (b);
  if (r != 0 && r != PTHREAD_BARRIER_SERIAL_THREAD)
    SHIM_X (r);
  return r == PTHREAD_BARRIER_SERIAL_THREAD;
}

static SHIM_UNUSED void
xpthread_barrier_destroy (pthread_barrier_t *b)
{
  SHIM_X (pthread_barrier_destroy (b));
}

static SHIM_UNUSED void
xpthread_barrierattr_init (pthread_barrierattr_t *a)
{
  SHIM_X (pthread_barrierattr_init (a));
}

static SHIM_UNUSED void
xpthread_barrierattr_setpshared (pthread_barrierattr_t *a, int pshared)
{
  SHIM_X (pthread_barrierattr_setpshared (a, pshared));
}

static SHIM_UNUSED void
xpthread_barrierattr_destroy (pthread_barrierattr_t *a)
{
  SHIM_X (pthread_barrierattr_destroy (a));
}

static SHIM_UNUSED void
xpthread_mutex_lock (pthread_mutex_t *m)
{
  SHIM_X (pthread_mutex_lock (m));
}

static SHIM_UNUSED void
xpthread_mutex_unlock (pthread_mutex_t *m)
{
  SHIM_X (pthread_mutex_unlock (m));
}
#endif

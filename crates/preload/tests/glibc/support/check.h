/* Checks that report a failure and go on (TEST_VERIFY, TEST_COMPARE) or exit (the _EXIT
   forms, FAIL_EXIT1): this project's shim of glibc's support/check.h. */
#ifndef SHIM_SUPPORT_CHECK_H
#define SHIM_SUPPORT_CHECK_H
#include <stdio.h>
#include <stdlib.h>
#include <support/support.h>

#define TEST_VERIFY(expr)                                                        \
  do {                                                                           \
    if (!(expr)) {                                                               \
      printf ("error: %s:%d: not true: %s\n", __FILE__, __LINE__, #expr);        \
      support_record_failure ();                                                 \
    }                                                                            \
  } while (0)

#define TEST_VERIFY_EXIT(expr)                                                   \
  do {                                                                           \
    if (!(expr)) {                                                               \
      printf ("error: %s:%d: not true: %s\n", __FILE__, __LINE__, #expr);        \
      exit (1);                                                                  \
    }                                                                            \
  } while (0)

#define TEST_COMPARE(left, right)                                                \
  do {                                                                           \
    long long shim_l = (long long) (left), shim_r = (long long) (right);         \
    if (shim_l != shim_r) {                                                      \
      printf ("error: %s:%d: %s == %s: %lld != %lld\n", __FILE__, __LINE__,       \
              #left, #right, shim_l, shim_r);                                    \
      support_record_failure ();                                                 \
    }                                                                            \
  } while (0)

#define FAIL(...)                                                                \
  do {                                                                           \
    printf ("error: %s:%d: ", __FILE__, __LINE__);                               \
    printf (__VA_ARGS__);                                                        \
    puts ("");                                                                   \
    support_record_failure ();                                                   \
  } while (0)
#define FAIL_RET(...) do { FAIL (__VA_ARGS__); return 1; } while (0)
#define FAIL_EXIT(status, ...) do { FAIL (__VA_ARGS__); exit (status); } while (0)
#define FAIL_EXIT1(...) FAIL_EXIT (1, __VA_ARGS__)
#define FAIL_UNSUPPORTED(...)                                                    \
  do { printf ("warning: unsupported: "); printf (__VA_ARGS__); puts (""); exit (77); } while (0)
#endif

/* What a test may set before including <support/test-driver.c>: this project's shim of
   glibc's support/test-driver.h. */
#ifndef SHIM_SUPPORT_TEST_DRIVER_H
#define SHIM_SUPPORT_TEST_DRIVER_H
/* Seconds a test may run unless it defines TIMEOUT. */
#define DEFAULT_TIMEOUT 20
#define EXIT_UNSUPPORTED 77
#endif

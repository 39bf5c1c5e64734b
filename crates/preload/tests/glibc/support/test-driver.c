/* The driver: main runs the test (TEST_FUNCTION, or do_test) in a child process, as glibc's
   driver does by default, kills it after TIMEOUT seconds, and exits with its status: 1 if any
   check failed, 77 if unsupported. This project's shim of glibc's support/test-driver.c. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <support/support.h>
#include <support/test-driver.h>

#ifndef TIMEOUT
#define TIMEOUT DEFAULT_TIMEOUT
#endif

static int
shim_run_test (void)
{
#ifdef TEST_FUNCTION
  return TEST_FUNCTION;
#else
  return do_test ();
#endif
}

int
main (void)
{
  shim_failures = mmap (NULL, sizeof (int), PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shim_failures == MAP_FAILED)
    {
      perror ("mmap");
      return 1;
    }
  fflush (stdout);
  pid_t child = fork ();
  if (child < 0)
    {
      perror ("fork");
      return 1;
    }
  if (child == 0)
    {
      setpgid (0, 0);
      int status = shim_run_test ();
      fflush (stdout);
      exit (status);
    }
  /* Poll for the child's end until the deadline (no signal handler of ours: the test may use
     SIGALRM itself, in the child). */
  struct timespec tick = { 0, 10 * 1000 * 1000 };
  int status = 0;
  for (long waited = 0;; waited += 10)
    {
      pid_t r = waitpid (child, &status, WNOHANG);
      if (r == child)
        break;
      if (r < 0)
        {
          perror ("waitpid");
          return 1;
        }
      if (waited >= TIMEOUT * 1000L)
        {
          printf ("error: timed out after %d s: killed\n", TIMEOUT);
          kill (-child, SIGKILL);
          kill (child, SIGKILL);
          waitpid (child, &status, 0);
          return 1;
        }
      nanosleep (&tick, NULL);
    }
  if (WIFSIGNALED (status))
    {
      printf ("error: the test died of signal %d (%s)\n", WTERMSIG (status),
              strsignal (WTERMSIG (status)));
      return 1;
    }
  int code = WEXITSTATUS (status);
  if (code == 0 && *shim_failures > 0)
    {
      printf ("error: %d check(s) failed\n", *shim_failures);
      return 1;
    }
  return code;
}

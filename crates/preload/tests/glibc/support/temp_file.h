/* Temporary files removed when the test ends: this project's shim of glibc's
   support/temp_file.h. */
#ifndef SHIM_SUPPORT_TEMP_FILE_H
#define SHIM_SUPPORT_TEMP_FILE_H
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <support/support.h>

/* The files to remove (a few at most). */
static char *shim_temp_files[16];
static pid_t shim_temp_owner;

static SHIM_UNUSED void
shim_remove_temp_files (void)
{
  if (getpid () != shim_temp_owner)
    return; /* A forked child: the files are its parent's. */
  for (size_t i = 0; i < 16 && shim_temp_files[i] != NULL; i++)
    unlink (shim_temp_files[i]);
}

static SHIM_UNUSED void
add_temp_file (const char *name)
{
  for (size_t i = 0; i < 16; i++)
    if (shim_temp_files[i] == NULL)
      {
        if (i == 0)
          {
            shim_temp_owner = getpid ();
            atexit (shim_remove_temp_files);
          }
        shim_temp_files[i] = strdup (name);
        return;
      }
}

/* Creates a file named after BASE in $TMPDIR (or /tmp), opened for reading and writing;
   its name goes to *FILENAME (malloc'd) if FILENAME is not NULL. */
static SHIM_UNUSED int
create_temp_file (const char *base, char **filename)
{
  const char *dir = getenv ("TMPDIR");
  if (dir == NULL || *dir == '\0')
    dir = "/tmp";
  size_t n = strlen (dir) + strlen (base) + 16;
  char *name = xmalloc (n);
  snprintf (name, n, "%s/%sXXXXXX", dir, base);
  int fd = mkstemp (name);
  if (fd < 0)
    {
      printf ("error: mkstemp (\"%s\"): %s\n", name, strerror (errno));
      free (name);
      return -1;
    }
  add_temp_file (name);
  if (filename != NULL)
    *filename = name;
  else
    free (name);
  return fd;
}
#endif

/* Elements of an array (this project's shim). */
#ifndef SHIM_ARRAY_LENGTH_H
#define SHIM_ARRAY_LENGTH_H
#define array_length(a) (sizeof (a) / sizeof ((a)[0]))
#define array_end(a) (&(a)[array_length (a)])
#endif

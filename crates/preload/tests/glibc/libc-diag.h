/* The diagnostic pragmas glibc's tests use around deliberate misuse (this project's shim). */
#ifndef SHIM_LIBC_DIAG_H
#define SHIM_LIBC_DIAG_H
#define SHIM_PRAGMA(x) _Pragma (#x)
#define DIAG_PUSH_NEEDS_COMMENT SHIM_PRAGMA (GCC diagnostic push)
#define DIAG_POP_NEEDS_COMMENT SHIM_PRAGMA (GCC diagnostic pop)
#define DIAG_IGNORE_NEEDS_COMMENT(version, option) SHIM_PRAGMA (GCC diagnostic ignored option)
#define DIAG_IGNORE_Os_NEEDS_COMMENT(version, option) DIAG_IGNORE_NEEDS_COMMENT (version, option)
#define DIAG_PUSH_NEEDS_COMMENT_CLANG
#define DIAG_POP_NEEDS_COMMENT_CLANG
#define DIAG_IGNORE_NEEDS_COMMENT_CLANG(version, option)
#endif

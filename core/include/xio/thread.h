/*
 * thread.h - the library's own threads (thread.c).
 */
#ifndef XIO_CORE_THREAD_H
#define XIO_CORE_THREAD_H

#include <stddef.h>

/* Start fn on a detached thread called name, with a stack of stack bytes
 * and every signal blocked, and return once it runs (boundedly). 0, or
 * -errno. */
int xio__thread_start(void *(*fn)(void), const char *name, size_t stack);

#endif /* XIO_CORE_THREAD_H */

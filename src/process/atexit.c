/* mp_atexit: exit handlers that belong to the process that registered
 * them (see include/mproc/process.h).
 *
 * glibc's atexit list is copied into a forked child with the rest of the
 * parent's memory, and the library cannot pick the child's own entries out
 * of it; so mproc keeps its own list. A child starts with it empty (every
 * start method passes through mp__child_main, which forgets it) and runs
 * it when it ends normally; the main program runs it at exit() through one
 * glibc handler registered on first use. Each entry runs once, last
 * registered first, whichever way comes first. */
#include <stdlib.h>

#include "process/process.h"

#define ATEXIT_MAX 32

typedef struct handler {
  void (*fn)(void *arg);
  void *arg;
} handler_t;

/* count next to lock: a new child's mp__atexit_forget writes both, and
 * then faults in one page, not two. */
static struct {
  pthread_mutex_t lock; /* guards the entries and count */
  unsigned count;
  bool hooked; /* glibc's atexit runs mp__atexit_run in this process */
  handler_t entries[ATEXIT_MAX];
} handlers = {.lock = PTHREAD_MUTEX_INITIALIZER};

int mp_atexit(void (*fn)(void *arg), void *arg) {
  if (!fn)
    return MP_EINVAL;
  pthread_mutex_lock(&handlers.lock);
  int rc = 0;
  if (!handlers.hooked)
    handlers.hooked = atexit(mp__atexit_run) == 0;
  if (!handlers.hooked)
    rc = -ENOMEM;
  else if (handlers.count == ATEXIT_MAX)
    rc = -ENOMEM;
  else
    handlers.entries[handlers.count++] = (handler_t){fn, arg};
  pthread_mutex_unlock(&handlers.lock);
  return rc;
}

void mp__atexit_run(void) {
  for (;;) {
    pthread_mutex_lock(&handlers.lock);
    if (handlers.count == 0) {
      pthread_mutex_unlock(&handlers.lock);
      return;
    }
    handler_t e = handlers.entries[--handlers.count];
    pthread_mutex_unlock(&handlers.lock);
    e.fn(e.arg);
  }
}

void mp__atexit_forget(void) {
  /* In a new child (one thread): plain stores. The glibc hook, if the
   * parent had one, stays: it runs the child's own list at its exit(). */
  handlers.lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
  handlers.count = 0;
}

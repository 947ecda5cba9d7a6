/* The after-fork registry (see internal.h): one pthread_atfork for the
 * whole library, so that every area's fork handling is listed in one place
 * and runs in a known order. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/internal.h"

#define ATFORK_MAX 16

static struct {
  pthread_mutex_t lock; /* guards registration */
  mp__atfork_t *handlers[ATFORK_MAX];
  _Atomic unsigned count;
  bool installed;
} table = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void run_prepare(void) {
  for (unsigned i = table.count; i-- > 0;)
    if (table.handlers[i]->prepare)
      table.handlers[i]->prepare();
}

static void run_parent(void) {
  for (unsigned i = 0; i < table.count; i++)
    if (table.handlers[i]->parent)
      table.handlers[i]->parent();
}

static void run_child(void) {
  for (unsigned i = 0; i < table.count; i++)
    if (table.handlers[i]->child)
      table.handlers[i]->child();
}

void mp__atfork_add(mp__atfork_t *h) {
  pthread_mutex_lock(&table.lock);
  unsigned n = table.count;
  bool known = atomic_load(&h->registered);
  if (!known && n == ATFORK_MAX) {
    fputs("mproc: internal error: after-fork table full\n", stderr);
    abort();
  }
  if (!known) {
    table.handlers[n] = h;
    table.count = n + 1; /* published after the entry */
  }
  if (!table.installed && pthread_atfork(run_prepare, run_parent, run_child))
    abort();
  table.installed = true;
  atomic_store_explicit(&h->registered, true, memory_order_release);
  pthread_mutex_unlock(&table.lock);
}

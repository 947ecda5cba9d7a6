/* The fds that every child must find at the same number (pipe ends of
 * connections, a pool's wake-up fd): spawn and the forkserver pass them
 * explicitly; fork inherits them anyway. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

static struct {
  pthread_mutex_t lock;
  int *fds;
  size_t count, cap;
} inherited = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0};

int mp__inherit_fd_add(int fd) {
  pthread_mutex_lock(&inherited.lock);
  int rc = 0;
  if (inherited.count == inherited.cap) {
    size_t cap = inherited.cap ? inherited.cap * 2 : 16;
    int *fds = realloc(inherited.fds, cap * sizeof *fds);
    if (!fds)
      rc = -ENOMEM;
    else
      inherited.fds = fds, inherited.cap = cap;
  }
  if (rc == 0)
    inherited.fds[inherited.count++] = fd;
  pthread_mutex_unlock(&inherited.lock);
  return rc;
}

void mp__inherit_fd_remove(int fd) {
  pthread_mutex_lock(&inherited.lock);
  for (size_t i = 0; i < inherited.count; i++) {
    if (inherited.fds[i] == fd) {
      inherited.fds[i] = inherited.fds[--inherited.count];
      break;
    }
  }
  pthread_mutex_unlock(&inherited.lock);
}

int mp__inherit_fd_copy(int **out, size_t reserve) {
  pthread_mutex_lock(&inherited.lock);
  size_t n = inherited.count;
  int *fds = malloc((reserve + n + 1) * sizeof *fds);
  if (fds && n)
    memcpy(fds + reserve, inherited.fds, n * sizeof *fds);
  pthread_mutex_unlock(&inherited.lock);
  *out = fds;
  return fds ? (int)n : -ENOMEM;
}

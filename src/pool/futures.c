/* Futures: waiting for the first of several results
 * (concurrent.futures.wait(FIRST_COMPLETED), as_completed) and results
 * among the other objects of mp_wait.
 *
 * A result's ready word lives in shared memory, one per job, and a thread
 * can sleep on one futex word only. So a result that is asked for an fd
 * gets an eventfd, written by the pool thread when the result is ready:
 * the job is flagged MP__JOB_NOTIFY (as for callbacks), so its completion
 * goes through the pool thread, which writes the fd when it releases the
 * request (request.c). Results nobody asks an fd of cost nothing more. */
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "pool/parent.h"

/* Makes r's eventfd (pool lock held) and makes sure it is written once the
 * result is ready: by the pool thread, or here if it is ready already. */
static int make_ready_fd(struct mp_async *r) {
  mp_pool_t *pool = r->pool;
  assert(mp__pthread_mutex_busy(&pool->lock));
  int fd = mp__fd_high(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (fd < 0)
    return -errno;
  r->ready_fd = fd;
  r->has_ready_fd = true;
  /* Without callbacks the pool thread hears of the completion only when
   * asked. The flag and the completion are both under the queue lock: the
   * worker either sees the flag or has completed the job before. */
  if (!r->has_callbacks && !r->thread_done &&
      mp__pool_lock(pool->ps, MP__NO_HOLDER) == 0) {
    if (atomic_load(&r->job->done) < r->job->n)
      atomic_fetch_or(&r->job->flags, MP__JOB_NOTIFY);
    mp__pool_unlock(pool->ps);
  }
  /* Ready already (or the pool thread released it before the fd existed):
   * nobody else writes it. */
  if (mp__pool_request_ready(r) || r->thread_done)
    mp__pool_request_signal(r);
  return fd;
}

int mp_async_fd(mp_async_t *a) {
  if (!a)
    return MP_EINVAL;
  pthread_mutex_lock(&a->pool->lock);
  int fd = a->has_ready_fd ? a->ready_fd : make_ready_fd(a);
  pthread_mutex_unlock(&a->pool->lock);
  return fd;
}

/* The first ready result, in the order given: its index, or -1. */
static ptrdiff_t first_ready(mp_async_t *const *asyncs, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (mp_async_ready(asyncs[i]))
      return (ptrdiff_t)i;
  return -1;
}

int mp_async_wait_any(mp_async_t *const *asyncs, size_t n, double timeout,
                      size_t *index) {
  if (!asyncs || n == 0 || isnan(timeout))
    return MP_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!asyncs[i])
      return MP_EINVAL;
  ptrdiff_t found = first_ready(asyncs, n);
  if (found < 0 && timeout == 0)
    return MP_ETIMEDOUT;
  struct pollfd *fds = found < 0 ? calloc(n, sizeof *fds) : NULL;
  int rc = found < 0 && !fds ? -ENOMEM : 0;
  for (size_t i = 0; found < 0 && rc == 0 && i < n; i++) {
    int fd = mp_async_fd(asyncs[i]);
    fds[i] = (struct pollfd){.fd = fd, .events = POLLIN};
    rc = fd < 0 ? fd : 0;
  }
  mp__deadline_t deadline = mp__deadline_in(timeout);
  while (found < 0 && rc == 0) {
    /* The fds say when to look; the results' own words say what is ready
     * (a fd stays readable once written). */
    int ready = poll(fds, (nfds_t)n, mp__deadline_poll_ms(&deadline));
    if (ready < 0 && errno != EINTR)
      rc = -errno;
    else if (ready > 0)
      found = first_ready(asyncs, n);
    else if (mp__deadline_expired(&deadline))
      rc = MP_ETIMEDOUT;
  }
  free(fds);
  if (rc == 0 && index)
    *index = (size_t)found;
  return rc;
}

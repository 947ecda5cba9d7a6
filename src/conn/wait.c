/* mp_wait: multiprocessing.connection.wait over connections, process
 * sentinels and raw fds, with one poll() (as Python's PollSelector). */
#include <poll.h>
#include <stdlib.h>

#include "conn/internal.h"

#define WAIT_STACK 16

/* The fd to poll for one object; *ready_now when it is known to be ready
 * without polling. */
static int object_fd(const mp_waitable_t *w, bool *ready_now) {
  *ready_now = false;
  switch (w->kind) {
  case MP_WAITABLE_CONN:
    return mp__conn_wait_fd(w->u.conn, ready_now);
  case MP_WAITABLE_PROCESS:
    return mp_process_sentinel(w->u.process);
  case MP_WAITABLE_FD:
    return w->u.fd >= 0 ? w->u.fd : MP_EINVAL;
  default:
    return MP_EINVAL;
  }
}

/* Python's wait([]) sleeps for the timeout (forever with None: refused
 * here, nothing would ever end it). */
static int wait_nothing(double timeout) {
  if (timeout < 0 || timeout > 1e300) /* forever, or +inf */
    return MP_EINVAL;
  mp__deadline_t d = mp__deadline_in(timeout);
  struct pollfd interrupt[1];
  int rc = mp__poll(interrupt, 0, &d);
  return rc < 0 ? rc : 0;
}

/* Counts the ready objects and stores their indices. */
static int collect(const struct pollfd *fds, const bool *ready_now, size_t n,
                   size_t *ready_out) {
  int count = 0;
  for (size_t i = 0; i < n; i++) {
    if (fds[i].revents & POLLNVAL)
      return -EBADF;
    if (ready_now[i] || (fds[i].revents & (POLLIN | POLLHUP | POLLERR))) {
      if (ready_out)
        ready_out[count] = i;
      count++;
    }
  }
  return count;
}

int mp_wait(const mp_waitable_t *objs, size_t n, double timeout,
            size_t *ready_out) {
  int rc_timeout = mp__timeout_check(timeout);
  if (rc_timeout < 0)
    return rc_timeout;
  if (!objs && n > 0)
    return MP_EINVAL;
  if (n == 0)
    return wait_nothing(timeout);
  if (n > INT32_MAX)
    return MP_EINVAL;
  struct pollfd stack_fds[WAIT_STACK + 1]; /* + 1: mp__poll's */
  bool stack_ready[WAIT_STACK];
  struct pollfd *fds = stack_fds;
  bool *ready_now = stack_ready;
  if (n > WAIT_STACK) {
    fds = calloc(n + 1, sizeof *fds);
    ready_now = calloc(n, sizeof *ready_now);
  }
  int rc = -ENOMEM;
  if (!fds || !ready_now)
    goto out;
  bool any_now = false;
  for (size_t i = 0; i < n; i++) {
    rc = object_fd(&objs[i], &ready_now[i]);
    if (rc < 0)
      goto out;
    fds[i] = (struct pollfd){.fd = rc, .events = POLLIN};
    any_now |= ready_now[i];
  }
  /* With something ready already, only collect what else is ready now. */
  mp__deadline_t d = mp__deadline_in(any_now ? 0 : timeout);
  rc = mp__poll(fds, n, &d);
  if (rc >= 0)
    rc = collect(fds, ready_now, n, ready_out);
out:
  if (fds != stack_fds)
    free(fds);
  if (ready_now != stack_ready)
    free(ready_now);
  return rc;
}

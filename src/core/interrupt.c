/* Interrupting waits: mp_interrupt() and mp_interrupt_clear(), the C form
 * of Python's KeyboardInterrupt (see include/mproc/error.h).
 *
 * The state is one process-local word, 0 or 1. Two kinds of waits watch it:
 *  - futex waits (futex.c) watch the word itself with futex_waitv, so the
 *    kernel checks it atomically with the word they sleep on: an interrupt
 *    between the waiter's last look and its sleep is never missed;
 *  - poll waits (mp__poll) watch an eventfd that mp_interrupt writes
 *    (write() is async-signal-safe), made at the first poll wait.
 * Both are woken by mp_interrupt, from a signal handler or a thread,
 * whatever the handler's SA_RESTART: the waits do not rely on EINTR.
 *
 * The word says whether the process is interrupted; the eventfd only wakes.
 * The two can disagree for a moment when mp_interrupt and
 * mp_interrupt_clear race (a handler runs in the middle of a clear): a
 * poll wait that finds the eventfd readable while the word is 0 drains it
 * and looks again (rearm), and so does the clear, so that the eventfd is
 * readable exactly when the word is set once the race is over.
 *
 * A fork child starts uninterrupted, with no eventfd of its parent's. */
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/internal.h"

_Atomic uint32_t mp__interrupt_word;
static _Atomic int interrupt_fd = -1;

static void forget_in_child(void) {
  atomic_store(&mp__interrupt_word, 0);
  int fd = atomic_exchange(&interrupt_fd, -1);
  if (fd >= 0)
    close(fd);
}

static mp__atfork_t interrupt_atfork = {.child = forget_in_child};

void mp_interrupt(void) {
  int saved = errno; /* a signal handler must leave errno as it was */
  atomic_store(&mp__interrupt_word, 1);
  /* Private, as the waits watch it (see futex.c). */
  syscall(SYS_futex, &mp__interrupt_word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL,
          NULL, 0);
  int fd = atomic_load(&interrupt_fd);
  if (fd >= 0) {
    uint64_t one = 1;
    ssize_t unused = write(fd, &one, sizeof one);
    (void)unused; /* EAGAIN: the counter is full, so readable anyway */
  }
  errno = saved;
}

/* Makes the eventfd agree with the word: drained, then written again if
 * an interrupt came meanwhile. */
static void rearm(int fd) {
  uint64_t count;
  while (read(fd, &count, sizeof count) > 0)
    ;
  if (atomic_load(&mp__interrupt_word)) {
    uint64_t one = 1;
    ssize_t unused = write(fd, &one, sizeof one);
    (void)unused;
  }
}

void mp_interrupt_clear(void) {
  int saved = errno;
  atomic_store(&mp__interrupt_word, 0);
  int fd = atomic_load(&interrupt_fd);
  if (fd >= 0)
    rearm(fd);
  errno = saved;
}

bool mp__interrupted(const mp__deadline_t *deadline) {
  return deadline && deadline->interruptible &&
         atomic_load_explicit(&mp__interrupt_word, memory_order_acquire);
}

int mp__interrupt_fd(void) {
  int fd = atomic_load(&interrupt_fd);
  if (fd >= 0)
    return fd;
  mp__atfork_register(&interrupt_atfork);
  int made = mp__fd_high(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (made < 0)
    return -errno;
  if (!atomic_compare_exchange_strong(&interrupt_fd, &fd, made)) {
    close(made); /* another thread made it first */
    return fd;
  }
  /* An interrupt that came before the fd existed wrote nothing: the word
   * (seq_cst after the store of the fd) tells. */
  if (atomic_load(&mp__interrupt_word))
    rearm(made);
  return made;
}

int mp__poll(struct pollfd *fds, size_t n, const mp__deadline_t *deadline) {
  bool watch = deadline->interruptible;
  if (watch) {
    int fd = mp__interrupt_fd();
    if (fd < 0)
      return fd;
    fds[n] = (struct pollfd){.fd = fd, .events = POLLIN};
  }
  /* Something ready wins over the interrupt: the wait got what it waited
   * for, as a wait that need not sleep does. */
  for (;;) {
    bool stop = mp__interrupted(deadline);
    int ms = stop ? 0 : mp__deadline_poll_ms(deadline);
    int rc = poll(fds, (nfds_t)(n + watch), ms);
    if (rc < 0 && errno != EINTR)
      return -errno;
    if (rc > 0 && watch && fds[n].revents) {
      rc--;
      if (mp__interrupted(deadline))
        stop = true;
      else
        rearm(fds[n].fd); /* a stale wake: the interrupt was cleared */
    }
    if (rc > 0)
      return rc;
    if (stop)
      return MP_EINTR;
    if (rc == 0 && mp__deadline_expired(deadline))
      return 0;
  }
}

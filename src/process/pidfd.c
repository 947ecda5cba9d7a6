/* pidfds: how a process watches its children and lets them watch it.
 *
 * A pidfd names one process for good (a signal sent through it can never
 * reach a reused pid) and becomes readable when that process ends. Without
 * pidfds (a kernel before 5.3, a container whose seccomp profile refuses
 * pidfd_open with EPERM, or valgrind, which does not know the call) a child
 * is watched as Python's fork Popen does: it holds the write end of a pipe
 * whose read end is its sentinel, and it is reaped by pid. */
#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compat.h"
#include "process/process.h"

int mp__pidfd_open(pid_t pid) {
  return mp__fd_high((int)syscall(SYS_pidfd_open, pid, 0));
}

int mp__pidfd_send_signal(int pidfd, int sig) {
  return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* This process's own pidfd, given to its children. Opened once, under its
 * own lock: the start methods ask for it while they hold the family lock. */
static struct {
  pthread_mutex_t lock;
  bool opened; /* asked for once: fd holds the answer */
  int fd;      /* the pidfd, or -errno when it cannot be had */
} self = {PTHREAD_MUTEX_INITIALIZER, false, -1};

/* In a forked child the pidfd names the parent: the child's own start
 * (mp__start_fork) already took it as its parent's, and the child opens its
 * own when it needs one. The forking thread held no lock here (fork is
 * never called with it held), but another thread might have. */
static void forget_in_child(void) {
  self.lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
  self.opened = false;
  self.fd = -1;
}

static mp__atfork_t pidfd_atfork = {.child = forget_in_child};

int mp__self_pidfd(void) {
  pthread_mutex_lock(&self.lock);
  if (!self.opened) {
    self.opened = true;
    mp__atfork_register(&pidfd_atfork);
    int fd = mp__pidfd_open(getpid());
    /* Every way of not offering pidfds reads as "none here". */
    self.fd = fd >= 0 ? fd : MP__UNSUPPORTED(errno) ? -ENOSYS : -errno;
  }
  int fd = self.fd;
  pthread_mutex_unlock(&self.lock);
  return fd;
}

int mp__watch_child(mp_process_t *p) {
  int pidfd = mp__pidfd_open(p->pid);
  if (pidfd < 0 && MP__UNSUPPORTED(errno) && p->sentinel >= 0)
    return 0; /* watched through the pipe made in mp_process_start */
  if (pidfd < 0) {
    int err = errno;
    kill(p->pid, SIGKILL);
    while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
      ;
    p->pid = 0;
    return -err;
  }
  p->pidfd = p->sentinel = pidfd;
  return 0;
}

/* Process objects: multiprocessing.Process and the module functions around
 * it (current_process, parent_process, active_children).
 *
 * Children are tracked in one list per process (Python's `_children`),
 * guarded by the family lock. A child stays in the list from start until it
 * is found dead by join, is_alive, exitcode or active_children, so that the
 * exit function can terminate daemons and join the rest. There is no SIGCHLD
 * handler: every child has a pidfd, polled for the end and reaped with
 * waitid(P_PIDFD), or where there are none a pipe sentinel and its pid. */
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compat.h"
#include "process/process.h"

static struct family {
  pthread_mutex_t lock;   /* guards everything below */
  mp_process_t *children; /* started, not yet found dead */
  unsigned counter;       /* last number given to a child (Python's
                             _process_counter) */
  mp_process_t *current;  /* this process's own object */
  mp_process_t *parent;   /* NULL in the main program */
  bool exit_registered;
} family = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
};

static mp_process_t main_process;
static int authkey_error; /* the main process's authkey could not be made */
static pthread_once_t main_once = PTHREAD_ONCE_INIT;

/* ---- small helpers ------------------------------------------------------ */

static void init_main_process(void) {
  mp_process_t *m = &main_process;
  m->kind = MP__PROCESS_MAIN;
  m->state = MP__PROCESS_STARTED;
  m->name = strdup("MainProcess");
  m->pid = getpid();
  m->pidfd = m->sentinel = -1;
  m->creator_pid = 0;
  pthread_mutex_init(&m->lock, NULL);
  /* Python: os.urandom(32). Without randomness there is no authkey: every
   * start then fails with the error (never a loop). */
  authkey_error = mp__random(m->authkey, sizeof m->authkey);
  if (!family.current)
    family.current = m;
}

mp_process_t *mp_current_process(void) {
  pthread_once(&main_once, init_main_process);
  return family.current;
}

mp_process_t *mp_parent_process(void) {
  mp_current_process();
  return family.parent;
}

int mp_cpu_count(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    return CPU_COUNT(&set);
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

/* Without pidfds (a kernel before 5.3, a sandbox refusing them, or
 * valgrind, which does not know the call) a child is watched as Python's fork
 * Popen does: it holds the write end of a pipe whose read end is its sentinel,
 * and it is reaped by pid. */
static bool without_pidfd(void) {
  return mp__self_pidfd() == -ENOSYS;
}

/* ---- construction ----------------------------------------------------------
 */

static char *default_name(const char *base, const unsigned *identity,
                          unsigned depth) {
  char buf[64 + MP__MAX_DEPTH * 11];
  int len = snprintf(buf, sizeof buf, "%s-", base);
  for (unsigned i = 0; i < depth && len < (int)sizeof buf; i++)
    len += snprintf(buf + len, sizeof buf - (size_t)len, i ? ":%u" : "%u",
                    identity[i]);
  return strdup(buf);
}

static mp_process_t *process_alloc(const char *base,
                                   const mp_process_opts_t *opts) {
  mp_process_t *cur = mp_current_process();
  mp_process_t *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->kind = MP__PROCESS_CHILD;
  p->state = MP__PROCESS_INITIAL;
  p->pidfd = p->sentinel = -1;
  p->creator_pid = getpid();
  p->daemon = opts && opts->daemon;
  p->end_with_parent = opts && opts->end_with_parent;
  p->ctx = opts ? opts->ctx : NULL;
  memcpy(p->authkey, cur->authkey, sizeof p->authkey);
  pthread_mutex_init(&p->lock, NULL);

  /* Python numbers every Process made in this process, named or not, and
   * prefixes the creator's own identity: Process-1:2 is the second child
   * made by Process-1. */
  p->depth = cur->depth < MP__MAX_DEPTH ? cur->depth + 1 : MP__MAX_DEPTH;
  memcpy(p->identity, cur->identity, (p->depth - 1) * sizeof(unsigned));
  pthread_mutex_lock(&family.lock);
  p->identity[p->depth - 1] = ++family.counter;
  pthread_mutex_unlock(&family.lock);

  p->name = opts && opts->name ? strdup(opts->name)
                               : default_name(base, p->identity, p->depth);
  if (!p->name) {
    free(p);
    return NULL;
  }
  return p;
}

mp_process_t *mp_process_new(void (*target)(void *arg), const void *arg,
                             size_t arg_size, const mp_process_opts_t *opts) {
  mp__check_bootstrapped();
  if (!target || (!arg && arg_size > 0)) {
    errno = EINVAL;
    return NULL;
  }
  mp_process_t *p = process_alloc("Process", opts);
  if (!p)
    return NULL;
  p->target = target;
  p->arg_size = arg_size;
  if (arg_size > 0) {
    p->arg = malloc(arg_size);
    if (!p->arg) {
      mp_process_free(p);
      errno = ENOMEM;
      return NULL;
    }
    memcpy(p->arg, arg, arg_size);
  }
  return p;
}

mp_process_t *mp_process_new_type(const mp_process_type_t *type,
                                  const mp_process_opts_t *opts) {
  mp__check_bootstrapped();
  if (!type || !type->run || !type->name) {
    errno = EINVAL;
    return NULL;
  }
  mp_process_t *p = process_alloc(type->name, opts);
  if (!p)
    return NULL;
  p->type = type;
  if (type->data_size > 0) {
    p->data = calloc(1, type->data_size);
    if (!p->data) {
      mp_process_free(p);
      errno = ENOMEM;
      return NULL;
    }
  }
  return p;
}

void *mp_process_data(mp_process_t *p) {
  if (!p)
    return NULL;
  return p->data;
}

/* ---- the children list ----------------------------------------------------
 */

static void list_add(mp_process_t *p) {
  p->prev = NULL;
  p->next = family.children;
  if (family.children)
    family.children->prev = p;
  family.children = p;
}

static void list_remove(mp_process_t *p) {
  if (p->prev)
    p->prev->next = p->next;
  else if (family.children == p)
    family.children = p->next;
  else
    return; /* not in the list */
  if (p->next)
    p->next->prev = p->prev;
  p->prev = p->next = NULL;
}

static bool is_tracked(const mp_process_t *p) {
  return p->prev || family.children == p;
}

/* ---- reaping
 * ------------------------------------------------------------------- */

static int status_to_exitcode(const siginfo_t *info) {
  if (info->si_code == CLD_EXITED)
    return info->si_status;
  return -info->si_status; /* CLD_KILLED, CLD_DUMPED */
}

/* waitid(P_PIDFD) needs Linux 5.4; pidfd_open came in 5.3 (and a
 * kernel may have it backported alone): EINVAL then, and the child is
 * reaped by pid (its pid is its own while it is unreaped). */
static _Atomic bool no_pidfd_wait;

static int wait_child(mp_process_t *p, siginfo_t *info, int flags) {
  int rc;
  do {
    if (p->pidfd >= 0 && !atomic_load(&no_pidfd_wait)) {
      rc = waitid((idtype_t)MP__P_PIDFD, (id_t)p->pidfd, info, flags);
      if (rc < 0 && errno == EINVAL) {
        atomic_store(&no_pidfd_wait, true);
        errno = EINTR; /* once more, by pid */
      }
    } else {
      rc = waitid(P_PID, (id_t)p->pid, info, flags);
    }
  } while (rc < 0 && errno == EINTR);
  return rc;
}

/* A child without a pidfd is watched through a pipe (see pidfd.c) that
 * reports its end when the child's fds are closed, a moment before the
 * kernel turns it into a zombie that waitid can see. Once the pipe says
 * so, waitid is retried for up to MAX_REAP_WAIT_NS (the child is exiting;
 * the bound is for a child that closed the pipe's end itself and lives
 * on), so that is_alive, exitcode and join agree with the sentinel. */
#define MAX_REAP_WAIT_NS 1000000000L

static bool sentinel_ended(const mp_process_t *p) {
  struct pollfd pfd = {.fd = p->sentinel, .events = POLLIN};
  return p->pidfd < 0 && p->sentinel >= 0 && poll(&pfd, 1, 0) > 0;
}

/* Reaps p if it has ended. Returns true once p is reaped. Must be called
 * without the family lock held by this thread only when `untrack` is true. */
static bool try_reap(mp_process_t *p) {
  pthread_mutex_lock(&p->lock);
  if (!p->reaped && p->via_server) {
    /* The forkserver reaped it and writes its exit code to the sentinel
     * (non-blocking); EOF without a code means the server died first. */
    int32_t code;
    ssize_t n = read(p->sentinel, &code, sizeof code);
    if (n == (ssize_t)sizeof code || n == 0) {
      p->exitcode = n == 0 ? 255 : code;
      p->reaped = true;
    }
  } else if (!p->reaped && p->pid > 0) {
    siginfo_t info = {0};
    int rc = wait_child(p, &info, WEXITED | WNOHANG);
    if (rc == 0 && info.si_pid == 0 && sentinel_ended(p)) {
      for (long slept = 0, step = 20000;
           rc == 0 && info.si_pid == 0 && slept < MAX_REAP_WAIT_NS;
           slept += step, step *= 2) {
        nanosleep(&(struct timespec){0, step}, NULL);
        rc = wait_child(p, &info, WEXITED | WNOHANG);
      }
    }
    if (rc == 0 && info.si_pid != 0) {
      p->exitcode = status_to_exitcode(&info);
      p->reaped = true;
    } else if (rc < 0 && errno == ECHILD) {
      /* Someone else stole the status with a raw wait() on every child;
       * the process is gone and its code is lost. */
      p->exitcode = 255;
      p->reaped = true;
    }
  }
  if (p->reaped && p->start_block) { /* the child read it, or never will */
    mp__shm_free(p->start_block);
    p->start_block = NULL;
  }
  bool reaped = p->reaped;
  bool report = reaped && !p->exit_logged;
  p->exit_logged |= reaped;
  pthread_mutex_unlock(&p->lock);
  if (report)
    mp__debug_log(MP_DEBUG_INFO, "process %s (pid %d) ended with exit code %d",
                  p->name, (int)p->pid, p->exitcode);
  return reaped;
}

static void destroy(mp_process_t *p);

/* Drops a reaped child from the list (Python's _children.discard). An
 * object the user already freed goes with it. */
static void untrack(mp_process_t *p) {
  pthread_mutex_lock(&family.lock);
  list_remove(p);
  bool owned = p->library_owned;
  pthread_mutex_unlock(&family.lock);
  if (owned)
    destroy(p);
}

/* ---- checks shared by the methods -----------------------------------------
 */

static bool is_closed(const mp_process_t *p) {
  return p->state == MP__PROCESS_CLOSED;
}

/* Python: "can only join a child process" and "can only join a started
 * process". */
static int check_started_child(const mp_process_t *p) {
  if (p->kind != MP__PROCESS_CHILD || is_closed(p) ||
      p->state != MP__PROCESS_STARTED || p->creator_pid != getpid())
    return MP_ESTATE;
  return 0;
}

/* ---- start ------------------------------------------------------------------
 */

static void exit_function(void);

static int start_checks(mp_process_t *p) {
  if (p->kind != MP__PROCESS_CHILD || p->state != MP__PROCESS_INITIAL ||
      p->creator_pid != getpid())
    return MP_ESTATE;
  if (mp_current_process()->daemon)
    return MP_ESTATE; /* daemonic processes are not allowed to have children */
  return 0;
}

/* The program's main() did not call mp_main(): a spawned child (or the
 * forkserver) would run main() again. Said once, refused every time. */
static int no_main(void) {
  static atomic_flag said = ATOMIC_FLAG_INIT;
  if (!atomic_flag_test_and_set(&said))
    fprintf(stderr,
            "mproc: main() did not call mp_main(argc, argv) before starting a "
            "process with the spawn or forkserver method: call it first "
            "thing in main() (the C form of Python's `if __name__ == "
            "\"__main__\":` guard). The start fails with MP_ENOMAIN.\n");
  return MP_ENOMAIN;
}

int mp_process_start(mp_process_t *p) {
  if (!p)
    return MP_EINVAL;
  mp__check_bootstrapped();
  int rc = start_checks(p);
  if (rc < 0)
    return rc;
  const mp_context_t *ctx = p->ctx ? p->ctx : mp__default_context();
  if (!ctx)
    return MP_EINVAL; /* MPROC_START_METHOD names no method */
  if (ctx->method != MP__METHOD_FORK && !mp__boot_main_called())
    return no_main();
  /* Every child gets the arena, also the ones started before anything was
   * allocated, so that later allocations reach them. */
  if (authkey_error < 0)
    return authkey_error;
  if ((rc = mp__arena_ensure()) < 0 ||
      ((rc = mp__self_pidfd()) < 0 && rc != -ENOSYS))
    return rc;
  /* Whatever the parent has buffered is written once, by the parent. */
  fflush(NULL);

  pthread_mutex_lock(&family.lock);
  if (!family.exit_registered) {
    family.exit_registered = true;
    atexit(exit_function);
  }
  int alive[2] = {-1, -1};
  if (ctx->method != MP__METHOD_FORKSERVER && without_pidfd()) {
    if (mp__fd_pair_high(pipe2(alive, O_CLOEXEC), alive) < 0 ||
        mp__inherit_fd_add(alive[1]) < 0) {
      rc = -errno;
      goto out;
    }
    p->sentinel = alive[0];
  }
  const mp_process_t *self = mp_current_process();
  if (ctx->method != MP__METHOD_FORK && mp__debug_on(MP_DEBUG_INFO)) {
    if (p->type)
      mp__debug_scan_pointers(p->data, p->type->data_size, "data block",
                              p->name);
    else
      mp__debug_scan_pointers(p->arg, p->arg_size, "arg bytes", p->name);
  }
  switch (ctx->method) {
  case MP__METHOD_SPAWN:
    rc = mp__start_spawn(p, self);
    break;
  case MP__METHOD_FORKSERVER:
    rc = mp__start_forkserver(p, self);
    break;
  default:
    rc = mp__start_fork(p, self);
    break;
  }
  if (rc == 0) {
    p->state = MP__PROCESS_STARTED;
    list_add(p);
    mp__debug_log(MP_DEBUG_INFO, "started process %s (pid %d) with %s", p->name,
                  (int)p->pid, ctx->name);
  }
out:
  if (alive[1] >= 0) {
    mp__inherit_fd_remove(alive[1]);
    close(alive[1]);
  }
  if (rc < 0 && alive[0] >= 0) {
    close(alive[0]);
    p->sentinel = -1;
  }
  pthread_mutex_unlock(&family.lock);
  return rc;
}

/* The fork start method. Signals are blocked across fork() so that no
 * handler of the parent runs in the child before it is set up. */
int mp__start_fork(mp_process_t *p, const mp_process_t *self) {
  if (!p)
    return MP_EINVAL;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t parent_pid = getpid();
  int parent_pidfd = mp__self_pidfd(); /* the child's copy watches us */
  pid_t pid = fork();
  if (pid == 0) {
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    mp__child_start_t start = {parent_pid, self->name,
                               parent_pidfd < 0 ? -1 : parent_pidfd, parent_pid,
                               false};
    mp__child_main(p, &start);
  }
  int err = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (pid < 0)
    return -err;
  p->pid = pid;
  return mp__watch_child(p);
}

/* ---- the child side
 * ------------------------------------------------------------ */

/* The child owns none of its parent's children: their fds are closed and
 * the list is forgotten (the objects stay readable, but join and friends
 * answer MP_ESTATE there, as Python's "can only join a child process"). */
static void forget_parents_children(void) {
  for (mp_process_t *c = family.children; c; c = c->next) {
    if (c->sentinel >= 0 && c->sentinel != c->pidfd)
      close(c->sentinel);
    if (c->pidfd >= 0)
      close(c->pidfd);
  }
  family.children = NULL;
}

/* The child's view of its parent lives in static storage: the child
 * writes as few pages as it can, since every page it writes after fork is a
 * copy-on-write fault. */
static mp_process_t parent_process;

/* name: a string the child never frees (under fork, the parent's own
 * object's name, still in the child's copy of the parent's memory). */
static mp_process_t *make_parent_object(pid_t pid, char *name, int pidfd) {
  mp_process_t *pp = &parent_process;
  pp->kind = MP__PROCESS_PARENT;
  pp->state = MP__PROCESS_STARTED;
  pp->name = name;
  pp->pid = pid;
  pp->pidfd = pp->sentinel = pidfd;
  pp->lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
  return pp;
}

/* The child's few system calls go through syscall(), which the parent has
 * already bound: a first call of open() or _exit() in every child would
 * resolve its symbol there again (lazy binding), a dozen page faults for
 * each, in each child. */
static void redirect_stdin_to_devnull(void) {
  /* Python closes the child's stdin and opens os.devnull in its place, so
   * that children never compete for the terminal's input. */
  long fd = syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd > STDIN_FILENO) {
    syscall(SYS_dup3, fd, STDIN_FILENO, 0);
    syscall(SYS_close, fd);
  }
}

_Noreturn void mp__child_main(mp_process_t *p, const mp__child_start_t *start) {
  /* The forking thread held the family lock; no other thread exists here.
   * Plain stores, not pthread_mutex_init: see make_parent_object. A new
   * program has no children or count of its parent's to forget (nothing
   * can start a process before mp_main), and writing them would only fault
   * in pages; its atexit list may hold what its own constructors
   * registered, forgotten as a forked child's. */
  p->lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
  if (!start->fresh) {
    family.lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
    forget_parents_children();
    family.counter = 0;
  }
  mp__atexit_forget();
  family.parent = make_parent_object(start->parent_pid, start->parent_name,
                                     start->parent_pidfd);
  if (p->sentinel >= 0) /* the read end of its own "alive" pipe */
    close(p->sentinel);
  p->sentinel = p->pidfd = -1;
  if (p->ctx) /* as Python's _bootstrap: the context's method is ours */
    mp__set_default_method(p->ctx->method);
  p->kind = MP__PROCESS_SELF;
  p->pid = (pid_t)syscall(SYS_getpid); /* see redirect_stdin_to_devnull */
  p->state = MP__PROCESS_STARTED;
  p->prev = p->next = NULL;
  family.current = p;

  if (p->daemon || p->end_with_parent) {
    /* Beyond Python: a daemon (or a child asked to) dies with its parent
     * even when the parent is killed and cannot run its exit function. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != start->direct_parent)
      _exit(0);
  }
  redirect_stdin_to_devnull();

  if (p->type)
    p->type->run(p);
  else
    p->target(p->arg);
  mp__atexit_run(); /* before the children are joined, as Python's atexit */
  exit_function();  /* flushes stdio first */
  syscall(SYS_exit_group, 0);
  _exit(0); /* not reached */
}

/* ---- join, signals, state
 * -------------------------------------------------------- */

/* Without pidfds the end of a parent, or of a child whose pipe sentinel a
 * grandchild keeps open, is also looked for by pid at this interval. */
#define PARENT_POLL_S 0.1

/* Polls the sentinel fd (-1: none) until the deadline, or for at most
 * PARENT_POLL_S when by_pid (the caller also looks for the end by pid).
 * As mp__poll: > 0 readable, 0 not yet, MP_EINTR or -errno. */
static int poll_sentinel(int fd, const mp__deadline_t *d, bool by_pid) {
  struct pollfd pfd[2] = {{.fd = fd, .events = POLLIN}};
  if (!by_pid)
    return mp__poll(pfd, 1, d);
  mp__deadline_t slice = mp__deadline_in(PARENT_POLL_S);
  slice.interruptible = d->interruptible;
  mp__deadline_t until = mp__deadline_earlier(d, &slice);
  return mp__poll(pfd, 1, &until);
}

int mp__process_join_until(mp_process_t *p, const mp__deadline_t *d) {
  if (p->kind == MP__PROCESS_PARENT) {
    /* The parent is no child of ours: wait for its pidfd only (without
     * pidfds, look for it by pid now and then). */
    for (;;) {
      int n = poll_sentinel(p->sentinel, d, p->sentinel < 0);
      if (n > 0 || (p->sentinel < 0 && kill(p->pid, 0) < 0 && errno == ESRCH))
        return 0;
      if (n < 0)
        return n;
      if (mp__deadline_expired(d))
        return MP_ETIMEDOUT;
    }
  }
  int rc = check_started_child(p);
  if (rc < 0)
    return rc;
  /* Poll first: a process that already ended makes it return at once, and
   * one waitid then reaps it. The deadline is checked on every round: a
   * sentinel can stay readable while its child is not reapable yet (a pipe
   * whose end the child closed itself). A pipe sentinel stays open while a
   * grandchild holds a copy of its end: the child is then also asked for
   * by pid now and then. */
  for (;;) {
    int n = poll_sentinel(p->sentinel, d, p->pidfd < 0 && !p->via_server);
    if (try_reap(p))
      break;
    if (n < 0)
      return n; /* MP_EINTR, or the poll failed */
    if (mp__deadline_expired(d))
      return MP_ETIMEDOUT;
    if (n > 0) /* readable, not reapable: do not spin on it */
      nanosleep(&(struct timespec){0, 1000000}, NULL);
  }
  untrack(p);
  return 0;
}

int mp_process_join(mp_process_t *p, double timeout) {
  if (!p)
    return MP_EINVAL;
  int rc = mp__timeout_check(timeout);
  if (rc < 0)
    return rc;
  mp__deadline_t d = mp__deadline_in(timeout);
  return mp__process_join_until(p, &d);
}

/* Signals an unreaped child: through its pidfd, which can never reach
 * another process that reused the pid; by pid without pidfds (safe while
 * it is unreaped: its pid is still its own). */
static int signal_child(mp_process_t *p, int sig) {
  int rc = p->pidfd >= 0 ? mp__pidfd_send_signal(p->pidfd, sig) : -1;
  if (p->pidfd < 0 || (rc < 0 && MP__UNSUPPORTED(errno)))
    rc = kill(p->pid, sig);
  return rc < 0 && errno != ESRCH ? -errno : 0;
}

static int send_signal(mp_process_t *p, int sig) {
  int rc = check_started_child(p);
  if (rc < 0)
    return rc;
  pthread_mutex_lock(&p->lock);
  if (!p->reaped)
    rc = signal_child(p, sig);
  pthread_mutex_unlock(&p->lock);
  return rc;
}

int mp_process_terminate(mp_process_t *p) {
  if (!p)
    return MP_EINVAL;
  return send_signal(p, SIGTERM);
}

int mp_process_kill(mp_process_t *p) {
  if (!p)
    return MP_EINVAL;
  return send_signal(p, SIGKILL);
}

int mp_process_interrupt(mp_process_t *p) {
  if (!p)
    return MP_EINVAL;
  return send_signal(p, SIGINT);
}

bool mp_process_is_alive(mp_process_t *p) {
  if (!p)
    return false;
  if (p == family.current)
    return true;
  if (p->kind == MP__PROCESS_PARENT) {
    struct pollfd pfd = {.fd = p->sentinel, .events = POLLIN};
    if (p->sentinel < 0) /* no pidfds: ask by pid */
      return kill(p->pid, 0) == 0 || errno == EPERM;
    return poll(&pfd, 1, 0) == 0;
  }
  if (check_started_child(p) < 0)
    return false;
  if (!try_reap(p))
    return true;
  untrack(p);
  return false;
}

int mp_process_exitcode(const mp_process_t *cp, int *code) {
  if (!cp)
    return MP_EINVAL;
  mp_process_t *p = (mp_process_t *)cp;
  if (check_started_child(p) < 0 || !try_reap(p))
    return MP_ESTATE;
  *code = p->exitcode;
  untrack(p);
  return 0;
}

static void release_fds(mp_process_t *p) {
  if (p->sentinel >= 0 && p->sentinel != p->pidfd)
    close(p->sentinel);
  if (p->pidfd >= 0)
    close(p->pidfd);
  p->sentinel = p->pidfd = -1;
}

int mp_process_close(mp_process_t *p) {
  if (!p)
    return MP_EINVAL;
  if (p->kind != MP__PROCESS_CHILD)
    return MP_ESTATE;
  if (is_closed(p))
    return 0;
  if (p->state == MP__PROCESS_STARTED) {
    if (p->creator_pid != getpid())
      return MP_ESTATE;
    if (!try_reap(p))
      return MP_ESTATE; /* "Cannot close a process while it is running" */
    untrack(p);
  }
  pthread_mutex_lock(&p->lock);
  release_fds(p);
  p->state = MP__PROCESS_CLOSED;
  pthread_mutex_unlock(&p->lock);
  return 0;
}

static void destroy(mp_process_t *p) {
  release_fds(p);
  if (p->start_block && p->creator_pid == getpid())
    mp__shm_free(p->start_block); /* a fork child's copy is not its own */
  pthread_mutex_destroy(&p->lock);
  free(p->name);
  free(p->arg);
  free(p->data);
  free(p);
}

void mp_process_free(mp_process_t *p) {
  if (!p || p->kind != MP__PROCESS_CHILD)
    return;
  if (p->state == MP__PROCESS_STARTED && p->creator_pid == getpid()) {
    pthread_mutex_lock(&family.lock);
    if (is_tracked(p) && !try_reap(p)) {
      /* Still running: the library keeps it and reaps it later. */
      p->library_owned = true;
      pthread_mutex_unlock(&family.lock);
      return;
    }
    list_remove(p);
    pthread_mutex_unlock(&family.lock);
  }
  destroy(p);
}

pid_t mp_process_pid(const mp_process_t *p) {
  if (!p)
    return -1;
  if (is_closed(p))
    return -1;
  if (p == family.current)
    return getpid();
  return p->state == MP__PROCESS_STARTED ? p->pid : 0;
}

const char *mp_process_name(const mp_process_t *p) {
  if (!p)
    return NULL;
  return p->name;
}

int mp_process_set_name(mp_process_t *p, const char *name) {
  if (!p)
    return MP_EINVAL;
  if (!name)
    return MP_EINVAL;
  char *copy = strdup(name);
  if (!copy)
    return -ENOMEM;
  char *old = p->name;
  p->name = copy;
  free(old);
  return 0;
}

bool mp_process_end_with_parent(const mp_process_t *p) {
  return p && p->end_with_parent;
}

int mp_process_set_end_with_parent(mp_process_t *p, bool on) {
  if (!p)
    return MP_EINVAL;
  if (p->kind != MP__PROCESS_CHILD || p->state != MP__PROCESS_INITIAL)
    return MP_ESTATE;
  p->end_with_parent = on;
  return 0;
}

bool mp_process_daemon(const mp_process_t *p) {
  if (!p)
    return false;
  return p->daemon;
}

int mp_process_set_daemon(mp_process_t *p, bool daemon) {
  if (!p)
    return MP_EINVAL;
  if (p->kind != MP__PROCESS_CHILD || p->state != MP__PROCESS_INITIAL)
    return MP_ESTATE; /* "process has already started" */
  p->daemon = daemon;
  return 0;
}

int mp_process_sentinel(const mp_process_t *p) {
  if (!p)
    return MP_EINVAL;
  if (p->kind == MP__PROCESS_PARENT)
    return p->sentinel;
  if (p->kind != MP__PROCESS_CHILD || p->state != MP__PROCESS_STARTED)
    return MP_ESTATE;
  return p->sentinel;
}

const unsigned char *mp_process_authkey(const mp_process_t *p, size_t *len) {
  if (!p || is_closed(p) || p->kind == MP__PROCESS_PARENT) {
    if (len)
      *len = 0;
    return NULL;
  }
  if (len)
    *len = sizeof p->authkey;
  return p->authkey;
}

/* ---- the module's view of the children
 * --------------------------------------- */

size_t mp_active_children(mp_process_t **out, size_t cap) {
  mp_current_process();
  size_t alive = 0;
  pthread_mutex_lock(&family.lock);
  mp_process_t *next;
  for (mp_process_t *c = family.children; c; c = next) {
    next = c->next;
    if (try_reap(c)) {
      list_remove(c);
      if (c->library_owned)
        destroy(c);
      continue;
    }
    if (alive < cap && out)
      out[alive] = c;
    alive++;
  }
  pthread_mutex_unlock(&family.lock);
  return alive;
}

/* Python's util._exit_function: at normal exit, daemonic children are
 * terminated and then every child is joined. Runs from atexit, and at the
 * end of a child that returned from its target. */
static void exit_function(void) {
  /* What this process printed is written before it waits for its
   * children, not after they all ended. */
  fflush(NULL);
  pthread_mutex_lock(&family.lock);
  for (mp_process_t *c = family.children; c; c = c->next)
    if (c->daemon && !try_reap(c))
      signal_child(c, SIGTERM);
  pthread_mutex_unlock(&family.lock);
  for (;;) {
    pthread_mutex_lock(&family.lock);
    mp_process_t *c = family.children;
    if (c)
      list_remove(c);
    pthread_mutex_unlock(&family.lock);
    if (!c)
      break;
    while (!try_reap(c)) {
      struct pollfd pfd = {.fd = c->sentinel, .events = POLLIN};
      poll(&pfd, 1, -1);
    }
    if (c->library_owned)
      destroy(c);
  }
}

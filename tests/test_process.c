/* Process objects: multiprocessing.Process semantics, under the start
 * method named by MPROC_START_METHOD. Children report back through memory
 * from mp_raw_alloc, passed by pointer in their arg. */
#include <dirent.h>
#include <link.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/fnref.h"
#include "support.h"
#include "testing.h"

/* What a child writes for the parent to check. */
typedef struct report {
  _Atomic int done;
  int rc;
  pid_t pid;
  pid_t parent_pid;
  int parent_alive;
  char name[64];
  char parent_name[64];
  char extra[64];
  unsigned char authkey[32];
  size_t authkey_len;
  int pidfds;
} report_t;

static report_t *new_report(void) {
  report_t *r = mp_raw_alloc(sizeof *r);
  assert_non_null(r);
  return r;
}

static void copy_name(char *dst, const char *src) {
  snprintf(dst, 64, "%s", src ? src : "(null)");
}

/* ---- targets ------------------------------------------------------------ */

static void return_at_once(void *arg) {
  (void)arg;
}

static void exit_with(void *arg) {
  exit(*(int *)arg);
}

static void wait_forever(void *arg) {
  (void)arg;
  for (;;)
    pause();
}

static void raise_signal(void *arg) {
  raise(*(int *)arg);
}

typedef struct report_arg {
  report_t *report;
  int value;
} report_arg_t;

static void report_self(void *arg) {
  report_arg_t *a = arg;
  report_t *r = a->report;
  mp_process_t *me = mp_current_process();
  mp_process_t *parent = mp_parent_process();
  r->pid = mp_process_pid(me);
  r->rc = getpid() == r->pid && mp_process_is_alive(me) ? a->value : -1;
  copy_name(r->name, mp_process_name(me));
  if (parent) {
    r->parent_pid = mp_process_pid(parent);
    r->parent_alive = mp_process_is_alive(parent);
    copy_name(r->parent_name, mp_process_name(parent));
  }
  const unsigned char *key = mp_process_authkey(me, &r->authkey_len);
  if (key)
    memcpy(r->authkey, key, r->authkey_len);
  r->done = 1;
}

/* ---- start, join, exit codes -------------------------------------------- */

static mp_process_t *start(void (*target)(void *), const void *arg,
                           size_t size) {
  mp_process_t *p = mp_process_new(target, arg, size, NULL);
  assert_non_null(p);
  assert_mp_ok(mp_process_start(p));
  return p;
}

static int join_exitcode(mp_process_t *p) {
  assert_mp_ok(mp_process_join(p, MP_FOREVER));
  int code = 12345;
  assert_mp_ok(mp_process_exitcode(p, &code));
  return code;
}

static void test_return_gives_exitcode_zero(void **state) {
  (void)state;
  mp_process_t *p = start(return_at_once, NULL, 0);
  assert_true(mp_process_pid(p) > 0);
  assert_int_equal(join_exitcode(p), 0);
  assert_false(mp_process_is_alive(p));
  mp_process_free(p);
}

static void test_exit_n_gives_n(void **state) {
  (void)state;
  int n = 7;
  mp_process_t *p = start(exit_with, &n, sizeof n);
  assert_int_equal(join_exitcode(p), 7);
  mp_process_free(p);
}

static void test_signal_gives_minus_signo(void **state) {
  (void)state;
  int sig = SIGUSR1;
  mp_process_t *p = start(raise_signal, &sig, sizeof sig);
  assert_int_equal(join_exitcode(p), -SIGUSR1);
  mp_process_free(p);
}

static void test_terminate_and_kill(void **state) {
  (void)state;
  mp_process_t *t = start(wait_forever, NULL, 0);
  mp_process_t *k = start(wait_forever, NULL, 0);
  assert_true(mp_process_is_alive(t));
  assert_mp_ok(mp_process_terminate(t));
  assert_mp_ok(mp_process_kill(k));
  assert_int_equal(join_exitcode(t), -SIGTERM);
  assert_int_equal(join_exitcode(k), -SIGKILL);
  /* Signalling a process that ended is not an error. */
  assert_mp_ok(mp_process_terminate(t));
  assert_mp_ok(mp_process_kill(k));
  mp_process_free(t);
  mp_process_free(k);
}

/* Process.interrupt(): SIGINT. Without a handler the child ends with
 * -SIGINT; a child that handles SIGINT (Python's KeyboardInterrupt) sees
 * it and ends as it likes. */
static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
  (void)sig;
  interrupted = 1;
}

static void exit_42_on_sigint(void *arg) {
  _Atomic int *ready = *(_Atomic int **)arg;
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigprocmask(SIG_BLOCK, &block, &old);
  struct sigaction sa = {.sa_handler = on_sigint};
  sigaction(SIGINT, &sa, NULL);
  atomic_store(ready, 1);
  while (!interrupted)
    sigsuspend(&old);
  exit(42);
}

static bool is_set(void *arg) {
  return atomic_load((_Atomic int *)arg) != 0;
}

static void test_interrupt(void **state) {
  (void)state;
  mp_process_t *p = start(wait_forever, NULL, 0);
  assert_mp_ok(mp_process_interrupt(p));
  assert_int_equal(join_exitcode(p), -SIGINT);
  assert_mp_ok(mp_process_interrupt(p)); /* ended: nothing happens */
  mp_process_free(p);

  _Atomic int *ready = mp_raw_alloc(sizeof *ready);
  assert_non_null(ready);
  p = start(exit_42_on_sigint, &ready, sizeof ready);
  bool up = mpt_wait_until(is_set, (void *)ready, 60);
  assert_mp_ok(mp_process_interrupt(p));
  assert_int_equal(join_exitcode(p), 42);
  assert_true(up);
  mp_process_free(p);
  mp_raw_free((void *)ready);
}

static void test_join_timeout(void **state) {
  (void)state;
  mp_process_t *p = start(wait_forever, NULL, 0);
  assert_mp(MP_ETIMEDOUT, mp_process_join(p, 0));
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  assert_mp(MP_ETIMEDOUT, mp_process_join(p, 0.05));
  clock_gettime(CLOCK_MONOTONIC, &b);
  double waited =
      (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
  assert_true(waited >= 0.049);
  int code;
  assert_mp(MP_ESTATE, mp_process_exitcode(p, &code));
  assert_true(mp_process_is_alive(p));
  assert_mp_ok(mp_process_kill(p));
  assert_mp_ok(mp_process_join(p, 30));
  assert_mp_ok(mp_process_exitcode(p, &code));
  assert_int_equal(code, -SIGKILL);
  mp_process_free(p);
}

/* ---- state errors -------------------------------------------------------- */

/* Everything that needs a started, unclosed child answers MP_ESTATE. */
static void assert_not_running_child(mp_process_t *p, pid_t pid) {
  int code;
  assert_mp(MP_ESTATE, mp_process_join(p, MP_FOREVER));
  assert_mp(MP_ESTATE, mp_process_join(p, 0));
  assert_mp(MP_ESTATE, mp_process_exitcode(p, &code));
  assert_mp(MP_ESTATE, mp_process_terminate(p));
  assert_mp(MP_ESTATE, mp_process_kill(p));
  assert_mp(MP_ESTATE, mp_process_interrupt(p));
  assert_mp(MP_ESTATE, mp_process_sentinel(p));
  assert_false(mp_process_is_alive(p));
  assert_int_equal(mp_process_pid(p), pid);
}

static void test_state_errors(void **state) {
  (void)state;
  mp_process_t *p = mp_process_new(wait_forever, NULL, 0, NULL);
  assert_not_running_child(p, 0); /* not started */

  assert_mp_ok(mp_process_start(p));
  assert_mp(MP_ESTATE, mp_process_start(p));
  assert_mp(MP_ESTATE, mp_process_set_daemon(p, true));
  assert_mp(MP_ESTATE, mp_process_close(p)); /* still running */
  assert_true(mp_process_is_alive(p));
  assert_mp_ok(mp_process_kill(p));
  assert_mp_ok(mp_process_join(p, MP_FOREVER));

  assert_mp_ok(mp_process_close(p));
  assert_mp_ok(mp_process_close(p));
  assert_mp(MP_ESTATE, mp_process_start(p));
  assert_not_running_child(p, -1); /* closed */
  assert_null(mp_process_authkey(p, NULL));
  assert_non_null(mp_process_name(p)); /* the name still works */
  assert_mp_ok(mp_process_set_name(p, "renamed"));
  assert_string_equal(mp_process_name(p), "renamed");
  mp_process_free(p);
}

static void test_bad_arguments(void **state) {
  (void)state;
  errno = 0;
  assert_null(mp_process_new(NULL, NULL, 0, NULL));
  assert_int_equal(errno, EINVAL);
  errno = 0;
  assert_null(mp_process_new(return_at_once, NULL, 4, NULL));
  assert_int_equal(errno, EINVAL);
  errno = 0;
  assert_null(mp_process_new_type(NULL, NULL));
  assert_int_equal(errno, EINVAL);
  mp_process_t *p = mp_process_new(return_at_once, NULL, 0, NULL);
  assert_mp(MP_EINVAL, mp_process_set_name(p, NULL));
  mp_process_free(p);
}

static void test_main_and_self_cannot_be_joined(void **state) {
  (void)state;
  mp_process_t *me = mp_current_process();
  assert_string_equal(mp_process_name(me), "MainProcess");
  assert_null(mp_parent_process());
  assert_true(mp_process_is_alive(me));
  assert_int_equal(mp_process_pid(me), getpid());
  assert_mp(MP_ESTATE, mp_process_join(me, 0));
  assert_mp(MP_ESTATE, mp_process_start(me));
  assert_mp(MP_ESTATE, mp_process_terminate(me));
  assert_mp(MP_ESTATE, mp_process_close(me));
  mp_process_free(me); /* does nothing */
  assert_string_equal(mp_process_name(mp_current_process()), "MainProcess");
}

/* ---- names --------------------------------------------------------------- */

static unsigned number_of(const char *name, const char *base) {
  size_t n = strlen(base);
  assert_true(strncmp(name, base, n) == 0 && name[n] == '-');
  return (unsigned)strtoul(name + n + 1, NULL, 10);
}

static void test_default_names(void **state) {
  (void)state;
  static const mp_process_type_t task_type = {"TaskClass", NULL, 0};
  mp_process_type_t runnable = task_type;
  runnable.run = (void (*)(mp_process_t *))return_at_once;
  mp_process_t *a = mp_process_new(return_at_once, NULL, 0, NULL);
  unsigned n = number_of(mp_process_name(a), "Process");
  mp_process_opts_t named = {.name = "custom"};
  mp_process_t *b = mp_process_new(return_at_once, NULL, 0, &named);
  mp_process_t *c = mp_process_new_type(&runnable, NULL);
  mp_process_t *d = mp_process_new(return_at_once, NULL, 0, NULL);
  /* Python numbers every object made, named or not, whatever its type. */
  assert_string_equal(mp_process_name(b), "custom");
  assert_int_equal(number_of(mp_process_name(c), "TaskClass"), n + 2);
  assert_int_equal(number_of(mp_process_name(d), "Process"), n + 3);
  assert_mp_ok(mp_process_set_name(d, "worker"));
  assert_string_equal(mp_process_name(d), "worker");
  mp_process_free(a);
  mp_process_free(b);
  mp_process_free(c);
  mp_process_free(d);
}

static void child_reports_grandchild(void *arg) {
  report_arg_t *a = arg;
  mp_process_t *first = mp_process_new(report_self, a, sizeof *a, NULL);
  copy_name(a->report->extra, first ? mp_process_name(first) : NULL);
  if (!first || mp_process_start(first) != 0)
    exit(3);
  if (mp_process_join(first, MP_FOREVER) != 0)
    exit(4);
  mp_process_free(first);
}

static void test_grandchild_is_named_like_python(void **state) {
  (void)state;
  report_arg_t arg = {new_report(), 11};
  mp_process_t *p = start(child_reports_grandchild, &arg, sizeof arg);
  assert_int_equal(join_exitcode(p), 0);
  char want[80];
  snprintf(want, sizeof want, "%s:1", mp_process_name(p));
  assert_string_equal(arg.report->extra, want);
  assert_string_equal(arg.report->name, want);
  assert_string_equal(arg.report->parent_name, mp_process_name(p));
  mp_process_free(p);
  mp_raw_free(arg.report);
}

/* ---- what the child sees ------------------------------------------------- */

static void test_child_sees_itself_and_parent(void **state) {
  (void)state;
  report_arg_t arg = {new_report(), 42};
  mp_process_opts_t opts = {.name = "reporter"};
  mp_process_t *p = mp_process_new(report_self, &arg, sizeof arg, &opts);
  arg.value = 0; /* the child got a copy made by mp_process_new */
  assert_mp_ok(mp_process_start(p));
  assert_int_equal(join_exitcode(p), 0);
  report_t *r = arg.report;
  assert_int_equal(r->done, 1);
  assert_int_equal(r->rc, 42);
  assert_int_equal(r->pid, mp_process_pid(p));
  assert_string_equal(r->name, "reporter");
  assert_int_equal(r->parent_pid, getpid());
  assert_int_equal(r->parent_alive, 1);
  assert_string_equal(r->parent_name, "MainProcess");
  size_t len = 0;
  const unsigned char *key = mp_process_authkey(mp_current_process(), &len);
  assert_int_equal(len, 32);
  assert_int_equal(r->authkey_len, 32);
  assert_memory_equal(r->authkey, key, 32);
  mp_process_free(p);
  mp_raw_free(r);
}

typedef struct typed_data {
  report_t *report;
  int params;
} typed_data_t;

static void typed_run(mp_process_t *self) {
  typed_data_t *d = mp_process_data(self);
  d->report->rc = d->params;
  copy_name(d->report->name, mp_process_name(mp_current_process()));
  d->report->done = self == mp_current_process();
}

static void test_type_form_gets_its_data(void **state) {
  (void)state;
  static const mp_process_type_t type = {"Typed", typed_run,
                                         sizeof(typed_data_t)};
  mp_process_t *p = mp_process_new_type(&type, NULL);
  typed_data_t *d = mp_process_data(p);
  assert_non_null(d);
  assert_null(d->report); /* zeroed */
  d->report = new_report();
  d->params = 99;
  assert_mp_ok(mp_process_start(p));
  assert_int_equal(join_exitcode(p), 0);
  assert_int_equal(d->report->rc, 99);
  assert_int_equal(d->report->done, 1);
  assert_string_equal(d->report->name, mp_process_name(p));
  assert_null(mp_process_data(mp_current_process()));
  mp_raw_free(d->report);
  mp_process_free(p);
}

/* ---- sentinel ------------------------------------------------------------ */

static bool readable(int fd, int ms) {
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  return poll(&pfd, 1, ms) == 1;
}

static void test_sentinel_becomes_readable_at_end(void **state) {
  (void)state;
  mp_process_t *p = start(wait_forever, NULL, 0);
  int fd = mp_process_sentinel(p);
  assert_true(fd >= 0);
  assert_false(readable(fd, 0));
  assert_mp_ok(mp_process_terminate(p));
  assert_true(readable(fd, 30000));
  /* Once the sentinel says so, is_alive agrees at once: also where it is a
   * pipe (no pidfds), which reports the end before the child is
   * reapable. */
  assert_false(mp_process_is_alive(p));
  assert_int_equal(join_exitcode(p), -SIGTERM);
  mp_process_free(p);
}

/* ---- daemons --------------------------------------------------------------
 */

static void daemon_tries_to_start(void *arg) {
  report_t *r = *(report_t **)arg;
  mp_process_t *child = mp_process_new(return_at_once, NULL, 0, NULL);
  r->rc = mp_process_start(child);
  r->done = mp_process_daemon(mp_current_process());
  mp_process_free(child);
}

static void test_daemon_cannot_have_children(void **state) {
  (void)state;
  report_t *r = new_report();
  mp_process_opts_t opts = {.daemon = true};
  mp_process_t *p = mp_process_new(daemon_tries_to_start, &r, sizeof r, &opts);
  assert_true(mp_process_daemon(p));
  assert_mp_ok(mp_process_start(p));
  assert_int_equal(join_exitcode(p), 0);
  assert_mp(MP_ESTATE, r->rc);
  assert_int_equal(r->done, 1);
  mp_process_free(p);
  mp_raw_free(r);
}

static void test_set_daemon(void **state) {
  (void)state;
  mp_process_t *p = mp_process_new(return_at_once, NULL, 0, NULL);
  assert_false(mp_process_daemon(p));
  assert_mp_ok(mp_process_set_daemon(p, true));
  assert_true(mp_process_daemon(p));
  assert_mp_ok(mp_process_start(p));
  assert_mp(MP_ESTATE, mp_process_set_daemon(p, false));
  assert_true(mp_process_daemon(p));
  assert_int_equal(join_exitcode(p), 0);
  mp_process_free(p);
}

/* A daemon grandchild must die with its parent even when the parent is
 * killed and never runs its exit function. */
static void start_daemon_and_wait(void *arg) {
  report_t *r = *(report_t **)arg;
  mp_process_opts_t opts = {.daemon = true};
  mp_process_t *d = mp_process_new(wait_forever, NULL, 0, &opts);
  if (!d || mp_process_start(d) != 0)
    exit(3);
  r->pid = mp_process_pid(d);
  r->done = 1;
  wait_forever(NULL);
}

typedef struct child_report {
  mp_process_t *child;
  report_t *report;
} child_report_t;

/* The child reported, or ended without reporting. */
static bool reported_or_ended(void *arg) {
  child_report_t *c = arg;
  return c->report->done || !mp_process_is_alive(c->child);
}

static void test_daemon_dies_with_killed_parent(void **state) {
  (void)state;
  if (!mpt_have_pidfd())
    skip(); /* it watches a non-child through a pidfd */
  report_t *r = new_report();
  mp_process_t *p = start(start_daemon_and_wait, &r, sizeof r);
  mpt_wait_until(reported_or_ended, &(child_report_t){p, r}, 30);
  int daemon_fd = r->done ? (int)syscall(SYS_pidfd_open, r->pid, 0) : -1;
  mp_process_kill(p);
  assert_int_equal(join_exitcode(p), -SIGKILL);
  mp_process_free(p);
  mp_raw_free(r);
  assert_true(daemon_fd >= 0);
  bool died = readable(daemon_fd, 30000);
  close(daemon_fd);
  assert_true(died);
}

/* ---- the list of children ----------------------------------------------- */

static bool contains(mp_process_t **list, size_t n, mp_process_t *p) {
  for (size_t i = 0; i < n; i++)
    if (list[i] == p)
      return true;
  return false;
}

static void test_active_children_reaps(void **state) {
  (void)state;
  mp_process_t *a = start(wait_forever, NULL, 0);
  mp_process_t *b = start(wait_forever, NULL, 0);
  mp_process_t *list[8];
  size_t n = mp_active_children(list, 8);
  assert_int_equal(n, 2);
  assert_true(contains(list, n, a) && contains(list, n, b));
  assert_int_equal(mp_active_children(NULL, 0), 2);

  assert_mp_ok(mp_process_kill(a));
  assert_true(readable(mp_process_sentinel(a), 30000));
  n = mp_active_children(list, 8);
  assert_int_equal(n, 1);
  assert_ptr_equal(list[0], b);
  /* a was reaped by active_children: nobody else can wait for it. */
  siginfo_t info;
  assert_int_equal(waitid(P_PID, (id_t)mp_process_pid(a), &info,
                          WEXITED | WNOHANG | WNOWAIT),
                   -1);
  assert_int_equal(errno, ECHILD);
  int code;
  assert_mp_ok(mp_process_exitcode(a, &code));
  assert_int_equal(code, -SIGKILL);

  assert_mp_ok(mp_process_kill(b));
  assert_int_equal(join_exitcode(b), -SIGKILL);
  assert_int_equal(mp_active_children(list, 8), 0);
  mp_process_free(a);
  mp_process_free(b);
}

static void test_free_while_running_keeps_tracking(void **state) {
  (void)state;
  mp_process_t *p = start(wait_forever, NULL, 0);
  pid_t pid = mp_process_pid(p);
  mp_process_free(p);
  mp_process_t *list[4];
  assert_int_equal(mp_active_children(list, 4), 1);
  assert_int_equal(mp_process_pid(list[0]), pid);
  assert_mp_ok(mp_process_kill(list[0]));
  assert_true(readable(mp_process_sentinel(list[0]), 30000));
  /* The library reaps and frees it. */
  assert_int_equal(mp_active_children(list, 4), 0);
}

/* ---- fds --------------------------------------------------------------------
 */

static void count_pidfds(void *arg) {
  report_t *r = *(report_t **)arg;
  DIR *dir = opendir("/proc/self/fd");
  struct dirent *e;
  while (dir && (e = readdir(dir))) {
    char link[300], target[256];
    snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n > 0) {
      target[n] = 0;
      r->pidfds += strstr(target, "pidfd") != NULL;
    }
  }
  if (dir)
    closedir(dir);
  r->done = 1;
}

static void test_siblings_fds_do_not_leak_into_child(void **state) {
  (void)state;
  if (!mpt_have_pidfd())
    skip(); /* it counts pidfds */
  mp_process_t *a = start(wait_forever, NULL, 0);
  mp_process_t *b = start(wait_forever, NULL, 0);
  report_t *r = new_report();
  mp_process_t *c = start(count_pidfds, &r, sizeof r);
  assert_int_equal(join_exitcode(c), 0);
  /* Only the pidfd of its own parent (mp_parent_process's sentinel). */
  assert_int_equal(r->pidfds, 1);
  mp_process_kill(a);
  mp_process_kill(b);
  join_exitcode(a);
  join_exitcode(b);
  mp_process_free(a);
  mp_process_free(b);
  mp_process_free(c);
  mp_raw_free(r);
}

/* ---- threads
 * ----------------------------------------------------------------- */

/* _exit, not exit: a child forked while the other test thread holds heap
 * memory would make LeakSanitizer (at exit()) report that memory, since the
 * other thread's stack does not exist in the child. */
static void quick_exit_with(void *arg) {
  _exit(*(int *)arg);
}

static void *start_and_join_many(void *arg) {
  intptr_t failures = 0;
  for (int i = 0; i < 20; i++) {
    int n = (int)(intptr_t)arg + i;
    mp_process_t *p = mp_process_new(quick_exit_with, &n, sizeof n, NULL);
    int code = -1;
    if (!p || mp_process_start(p) != 0 || mp_process_join(p, MP_FOREVER) != 0 ||
        mp_process_exitcode(p, &code) != 0 || code != n)
      failures++;
    mp_process_free(p);
  }
  return (void *)failures;
}

static void test_threads_start_and_join_concurrently(void **state) {
  (void)state;
  pthread_t threads[2];
  for (intptr_t i = 0; i < 2; i++)
    assert_int_equal(pthread_create(&threads[i], NULL, start_and_join_many,
                                    (void *)(i * 100)),
                     0);
  for (int i = 0; i < 2; i++) {
    void *failures;
    pthread_join(threads[i], &failures);
    assert_int_equal((intptr_t)failures, 0);
  }
}

/* ---- fork while another thread walks the loaded modules ----------------
 * dl_iterate_phdr holds the C library's loader lock while it runs; a fork
 * at that moment left it held in the child, whose first walk (a pool
 * worker naming its task) then hung for good. The library's walks
 * (mp__dl_iterate) and its forks now exclude each other. */
static _Atomic int walk_inside, walk_release;

static int walk_slowly(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)info, (void)size, (void)arg;
  atomic_store(&walk_inside, 1);
  /* Bounded: without a release the test fails instead of hanging. */
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  do {
    sched_yield();
    clock_gettime(CLOCK_MONOTONIC, &t);
  } while (!atomic_load(&walk_release) && t.tv_sec - t0.tv_sec < 20);
  return 1;
}

static void *walker(void *arg) {
  (void)arg;
  mp__dl_iterate(walk_slowly, NULL);
  return NULL;
}

static bool walk_started(void *arg) {
  (void)arg;
  return atomic_load(&walk_inside) != 0;
}

static int count_module(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)info, (void)size;
  (*(int *)arg)++;
  return 0;
}

static void walk_in_child(void *arg) {
  (void)arg;
  int modules = 0;
  dl_iterate_phdr(count_module, &modules);
  /* _exit: forked from a thread other than main, the child has no copy of
   * main's stack, so a leak check at exit would see false leaks. */
  _exit(modules > 0 ? 0 : 1);
}

typedef struct starter {
  mp_process_t *p;
  int rc;
} starter_t;

static void *start_in_thread(void *arg) {
  starter_t *s = arg;
  s->rc = mp_process_start(s->p);
  return NULL;
}

static void test_fork_during_a_module_walk(void **state) {
  (void)state;
  atomic_store(&walk_inside, 0);
  atomic_store(&walk_release, 0);
  pthread_t walk, starter;
  assert_int_equal(pthread_create(&walk, NULL, walker, NULL), 0);
  /* Asserts only once the walk is released and joined: a failure must not
   * leave the walker holding the walk (and every later fork) for 20 s. */
  bool started = mpt_wait_until(walk_started, NULL, 10.0);
  starter_t s = {mp_process_new(walk_in_child, NULL, 0, NULL), 1};
  bool starting = started && s.p &&
                  pthread_create(&starter, NULL, start_in_thread, &s) == 0;
  /* Only provokes the case: the start reaches fork() while the walk is
   * still on (under fork it then waits for the walk's end). */
  if (starting)
    usleep(50000);
  atomic_store(&walk_release, 1);
  pthread_join(walk, NULL);
  if (starting)
    pthread_join(starter, NULL);
  assert_true(started);
  assert_non_null(s.p);
  assert_true(starting);
  assert_mp_ok(s.rc);
  int rc = mp_process_join(s.p, 20.0);
  if (rc != 0) { /* a hung child: end it before failing */
    mp_process_kill(s.p);
    mp_process_join(s.p, MP_FOREVER);
  }
  assert_mp_ok(rc);
  int code = -1;
  assert_mp_ok(mp_process_exitcode(s.p, &code));
  assert_int_equal(code, 0);
  mp_process_free(s.p);
}

static void test_cpu_count(void **state) {
  (void)state;
  cpu_set_t set;
  assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
  assert_int_equal(mp_cpu_count(), CPU_COUNT(&set));
  assert_true(mp_cpu_count() >= 1);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_return_gives_exitcode_zero),
      mpt_test(test_exit_n_gives_n),
      mpt_test(test_signal_gives_minus_signo),
      mpt_test(test_terminate_and_kill),
      mpt_test(test_interrupt),
      mpt_test(test_join_timeout),
      mpt_test(test_state_errors),
      mpt_test(test_bad_arguments),
      mpt_test(test_main_and_self_cannot_be_joined),
      mpt_test(test_default_names),
      mpt_test(test_grandchild_is_named_like_python),
      mpt_test(test_child_sees_itself_and_parent),
      mpt_test(test_type_form_gets_its_data),
      mpt_test(test_sentinel_becomes_readable_at_end),
      mpt_test(test_daemon_cannot_have_children),
      mpt_test(test_set_daemon),
      mpt_test(test_daemon_dies_with_killed_parent),
      mpt_test(test_active_children_reaps),
      mpt_test(test_free_while_running_keeps_tracking),
      mpt_test(test_siblings_fds_do_not_leak_into_child),
      mpt_test(test_threads_start_and_join_concurrently),
      mpt_test(test_fork_during_a_module_walk),
      mpt_test(test_cpu_count),
  };
  return MPT_RUN(argc, argv, tests);
}

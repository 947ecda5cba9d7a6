/* How a family ends: children that end with their parent
 * (mp_process_set_end_with_parent, pool workers) when the parent is killed
 * (SIGKILL) or interrupted (SIGINT sent to it alone), the default (they
 * outlive it), and mp_atexit handlers in children under every start
 * method. */
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sync_fixtures.h"

/* ---- orphans ---------------------------------------------------------------
 */

#define MAX_KIDS 4

struct family_args {
  bool end_with_parent;
  bool pool; /* the parent runs a pool instead of one child */
  mp_event_t *never;
  _Atomic pid_t *kids; /* MAX_KIDS pids the parent reports */
};

static void grandchild(void *arg) {
  struct family_args *a = arg;
  mp_event_wait(a->never, MP_FOREVER);
}

static void family_parent(void *arg) {
  struct family_args *a = arg;
  signal(SIGINT, SIG_DFL); /* a background shell may have ignored it */
  if (a->pool) {
    mp_pool_opts_t opts = {.processes = 2};
    mp_pool_t *pool = mp_pool_new(&opts);
    pid_t pids[2] = {0, 0};
    if (pool && mp_pool_workers(pool, pids, 2) == 2) {
      a->kids[1] = pids[1];
      a->kids[0] = pids[0];
    }
  } else {
    mp_process_opts_t opts = {.end_with_parent = a->end_with_parent};
    mp_process_t *p = mp_process_new(grandchild, a, sizeof *a, &opts);
    if (p && mp_process_start(p) == 0)
      a->kids[0] = mp_process_pid(p);
  }
  mp_event_wait(a->never, MP_FOREVER); /* until killed */
}

static bool kids_known(void *arg) {
  return ((_Atomic pid_t *)arg)[0] != 0;
}

/* Whether the process behind pidfd ends within timeout seconds. */
static bool ends_within(int pidfd, double timeout) {
  struct pollfd p = {.fd = pidfd, .events = POLLIN};
  return poll(&p, 1, (int)(timeout * 1000)) == 1;
}

static void run_family(bool end_with_parent, bool pool, int sig) {
  /* The children's ends are watched through pidfds (kernel >= 5.3). */
  if (!mpt_have_pidfd())
    skip();
  struct family_args a = {.end_with_parent = end_with_parent,
                          .pool = pool,
                          .never = mp_event_new(),
                          .kids = shared(sizeof(pid_t) * MAX_KIDS)};
  mp_process_t *parent = start_child(family_parent, &a, sizeof a);
  assert_true(mpt_wait_until(kids_known, a.kids, JOIN_TIMEOUT));
  int fds[MAX_KIDS], n = 0;
  for (; n < MAX_KIDS && a.kids[n]; n++) {
    fds[n] = (int)syscall(SYS_pidfd_open, a.kids[n], 0);
    assert_true(fds[n] >= 0);
  }
  assert_mp_ok(kill(mp_process_pid(parent), sig));
  assert_int_equal(-sig, finish_child(parent));
  for (int i = 0; i < n; i++) {
    if (end_with_parent || pool) {
      assert_true(ends_within(fds[i], JOIN_TIMEOUT));
    } else {
      /* The default: the orphan goes on (until we end it). */
      assert_false(ends_within(fds[i], 0.2));
      syscall(SYS_pidfd_send_signal, fds[i], SIGKILL, NULL, 0);
      assert_true(ends_within(fds[i], JOIN_TIMEOUT));
    }
    close(fds[i]);
  }
  mp_event_free(a.never);
  mp_raw_free((void *)a.kids);
}

static void test_end_with_parent_sigkill(void **state) {
  (void)state;
  run_family(true, false, SIGKILL);
}

static void test_end_with_parent_sigint(void **state) {
  (void)state;
  run_family(true, false, SIGINT);
}

static void test_default_outlives_parent(void **state) {
  (void)state;
  run_family(false, false, SIGKILL);
}

static void test_pool_workers_end_with_parent(void **state) {
  (void)state;
  run_family(false, true, SIGKILL);
  run_family(false, true, SIGINT);
}

static void test_end_with_parent_option(void **state) {
  (void)state;
  mp_process_t *p = mp_process_new(grandchild, NULL, 0, NULL);
  assert_false(mp_process_end_with_parent(p));
  assert_mp_ok(mp_process_set_end_with_parent(p, true));
  assert_true(mp_process_end_with_parent(p));
  mp_process_free(p);
}

/* ---- mp_atexit -------------------------------------------------------------
 */

struct atexit_args {
  _Atomic int *log; /* [0] count, then the values the handlers wrote */
  bool call_exit;
};

static _Atomic int *atexit_log;

static void record(void *arg) {
  int n = atomic_fetch_add(&atexit_log[0], 1);
  atexit_log[1 + n] = (int)(intptr_t)arg;
}

static void atexit_child(void *arg) {
  struct atexit_args *a = arg;
  atexit_log = a->log;
  mp_atexit(record, (void *)(intptr_t)1);
  mp_atexit(record, (void *)(intptr_t)2);
  if (a->call_exit)
    exit(0);
}

static void parent_handler(void *arg) {
  (void)arg;
  /* Must never run in a child: it would mark the log. */
  if (atexit_log)
    atexit_log[9] = 99;
}

/* The child's handlers run, last first, once, whether its target returns
 * or calls exit(); the parent's (registered before the start) do not. */
static void test_atexit_in_child(void **state) {
  (void)state;
  for (int how = 0; how < 2; how++) {
    struct atexit_args a = {.log = shared(16 * sizeof(int)),
                            .call_exit = how == 1};
    atexit_log = a.log;
    assert_mp_ok(mp_atexit(parent_handler, NULL));
    assert_int_equal(0, finish_child(start_child(atexit_child, &a, sizeof a)));
    assert_int_equal(2, a.log[0]);
    assert_int_equal(2, a.log[1]);
    assert_int_equal(1, a.log[2]);
    assert_int_equal(0, a.log[9]);
    atexit_log = NULL; /* the parent's handlers run harmlessly at exit */
    mp_raw_free((void *)a.log);
  }
  assert_mp(MP_EINVAL, mp_atexit(NULL, NULL));
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_end_with_parent_option),
      mpt_test(test_end_with_parent_sigkill),
      mpt_test(test_end_with_parent_sigint),
      mpt_test(test_default_outlives_parent),
      mpt_test(test_pool_workers_end_with_parent),
      mpt_test(test_atexit_in_child),
  };
  return MPT_RUN(argc, argv, tests);
}

/* Fixtures shared by the pool test programs (test_pool*.c). Tasks get
 * everything through their input bytes (pointers into shared memory are
 * valid in every worker), so they hold under every start method. */
#ifndef MPROC_POOL_FIXTURES_H
#define MPROC_POOL_FIXTURES_H

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "support.h"
#include "testing.h"

/* Long enough for a loaded machine; only reached when something hangs. */
#define WAIT_TIMEOUT 30.0

static inline mp_pool_t *new_pool(int processes, const mp_pool_opts_t *base) {
  mp_pool_opts_t opts = base ? *base : (mp_pool_opts_t){0};
  opts.processes = processes;
  mp_pool_t *pool = mp_pool_new(&opts);
  assert_non_null(pool);
  return pool;
}

static inline void *shared(size_t size) {
  void *p = mp_raw_alloc(size);
  assert_non_null(p);
  return p;
}

/* x -> 2x on int64 items. */
static inline int double_it(const void *in, void *out) {
  int64_t x;
  memcpy(&x, in, sizeof x);
  x *= 2;
  memcpy(out, &x, sizeof x);
  return 0;
}

/* The worker's pid, as an int64 item. */
static inline int worker_pid(const void *in, void *out) {
  (void)in;
  int64_t pid = getpid();
  memcpy(out, &pid, sizeof pid);
  return 0;
}

/* A task told what to do by its input. */
enum task_action {
  ACT_DOUBLE, /* out = 2 * value */
  ACT_FAIL,   /* return value as the task's code */
  ACT_BLOCK,  /* bump the counter if any, wait for the event, double */
  ACT_SEGV,   /* crash */
  ACT_EXIT,   /* exit(value) inside the task */
  ACT_HANG,   /* never return */
  ACT_COUNT,  /* bump the counter, spin a little, then double */
};

typedef struct task_in {
  int32_t action;
  int32_t value;
  mp_event_t *event;
  _Atomic int64_t *counter;
} task_in_t;

static inline int do_action(const task_in_t *t, int64_t *out) {
  switch (t->action) {
  case ACT_FAIL:
    return t->value;
  case ACT_BLOCK:
    if (t->counter)
      atomic_fetch_add(t->counter, 1); /* says it is running */
    mp_event_wait(t->event, MP_FOREVER);
    break;
  case ACT_SEGV:
    /* Without a handler (ASan installs one), the default action. */
    signal(SIGSEGV, SIG_DFL);
    raise(SIGSEGV);
    break;
  case ACT_EXIT:
    exit(t->value);
  case ACT_HANG:
    for (;;)
      pause();
  case ACT_COUNT:
    atomic_fetch_add(t->counter, 1);
    for (volatile int i = 0; i < 2000; i++)
      ;
    break;
  default:
    break;
  }
  *out = 2 * (int64_t)t->value;
  return 0;
}

static inline int action_map(const void *in, void *out) {
  task_in_t t;
  memcpy(&t, in, sizeof t);
  int64_t result = 0;
  int rc = do_action(&t, &result);
  memcpy(out, &result, sizeof result);
  return rc;
}

static inline int action_apply(const void *in, size_t in_len, void *out,
                               size_t out_cap, size_t *out_len) {
  if (in_len != sizeof(task_in_t) || out_cap < sizeof(int64_t))
    return -1;
  int64_t result = 0;
  int rc = do_action(in, &result);
  memcpy(out, &result, sizeof result);
  *out_len = sizeof result;
  return rc;
}

static inline task_in_t act(int32_t action, int32_t value) {
  return (task_in_t){.action = action, .value = value};
}

typedef struct count_goal {
  _Atomic int64_t *counter;
  int64_t n;
} count_goal_t;

static inline bool count_reached(void *arg) {
  count_goal_t *g = arg;
  return atomic_load(g->counter) >= g->n;
}

/* Waits (polling) until *counter reaches at least n. */
static inline void wait_count(_Atomic int64_t *counter, int64_t n) {
  assert_true(
      mpt_wait_until(count_reached, &(count_goal_t){counter, n}, WAIT_TIMEOUT));
}

/* Whether a process has ended: through a pidfd, which cannot name another
 * process that reused the pid. */
static inline int open_pidfd(pid_t pid) {
  return (int)syscall(SYS_pidfd_open, pid, 0);
}

#endif

/* Synchronization: Python's semantics and error cases of the seven
 * primitives, contention between processes and threads, and lost-wakeup
 * stress. (The dying-process cases are in test_sync_death.c.) */
#include <stdint.h>
#include <sys/syscall.h>

#include "sync_fixtures.h"

/* ---- Lock ---------------------------------------------------------------- */

static void test_lock_acquire_release(void **state) {
  (void)state;
  mp_lock_t *l = mp_lock_new();
  assert_non_null(l);
  assert_mp_ok(mp_lock_acquire(l, MP_FOREVER));
  assert_mp(MP_ETIMEDOUT, mp_lock_acquire(l, 0));
  assert_mp(MP_ETIMEDOUT, mp_lock_acquire(l, 0.02));
  assert_mp_ok(mp_lock_release(l));
  assert_mp(MP_EOVERFLOW, mp_lock_release(l));
  assert_mp_ok(mp_lock_acquire(l, 0));
  assert_mp_ok(mp_lock_release(l));
  mp_lock_free(l);
}

struct lock_args {
  mp_lock_t *lock;
  mp_rlock_t *rlock;
  _Atomic int *result;
};

static void release_lock_child(void *arg) {
  struct lock_args *a = arg;
  *a->result = mp_lock_release(a->lock);
}

/* Python: a Lock may be released by another process. */
static void test_lock_released_by_another_process(void **state) {
  (void)state;
  struct lock_args a = {.lock = mp_lock_new(), .result = shared(64)};
  *a.result = -1;
  assert_mp_ok(mp_lock_acquire(a.lock, 0));
  assert_int_equal(0,
                   finish_child(start_child(release_lock_child, &a, sizeof a)));
  assert_mp_ok(*a.result);
  assert_mp_ok(mp_lock_acquire(a.lock, 0));
  assert_mp_ok(mp_lock_release(a.lock));
  mp_lock_free(a.lock);
  mp_raw_free(a.result);
}

/* ---- RLock --------------------------------------------------------------- */

static void *rlock_other_thread(void *arg) {
  struct lock_args *a = arg;
  int release = mp_rlock_release(a->rlock);
  int acquire = mp_rlock_acquire(a->rlock, 0);
  bool mine = mp_rlock_is_mine(a->rlock);
  return (void *)(intptr_t)(release == MP_ENOTOWNER &&
                            acquire == MP_ETIMEDOUT && !mine);
}

static void rlock_child(void *arg) {
  struct lock_args *a = arg;
  /* A new process is a new owner: no recursion into the parent's hold. */
  *a->result = mp_rlock_is_mine(a->rlock) ? -1
               : mp_rlock_acquire(a->rlock, 0) != MP_ETIMEDOUT
                   ? -2
                   : mp_rlock_release(a->rlock);
}

static void test_rlock_recursion_and_owner(void **state) {
  (void)state;
  struct lock_args a = {.rlock = mp_rlock_new(), .result = shared(64)};
  mp_rlock_t *r = a.rlock;
  assert_false(mp_rlock_is_mine(r));
  assert_int_equal(0, mp_rlock_count(r));
  assert_int_equal(0, mp_rlock_owner(r, NULL));
  for (int i = 0; i < 3; i++)
    assert_mp_ok(mp_rlock_acquire(r, 0));
  assert_true(mp_rlock_is_mine(r));
  assert_int_equal(3, mp_rlock_count(r));
  pid_t tid = 0;
  assert_int_equal(getpid(), mp_rlock_owner(r, &tid));
  assert_int_equal(syscall(SYS_gettid), tid);

  pthread_t t;
  void *ok = NULL;
  assert_int_equal(0, pthread_create(&t, NULL, rlock_other_thread, &a));
  pthread_join(t, &ok);
  assert_true(ok);
  *a.result = 1;
  assert_int_equal(0, finish_child(start_child(rlock_child, &a, sizeof a)));
  assert_mp(MP_ENOTOWNER, *a.result);

  for (int i = 0; i < 3; i++)
    assert_mp_ok(mp_rlock_release(r));
  assert_mp(MP_ENOTOWNER, mp_rlock_release(r));
  assert_int_equal(0, mp_rlock_count(r));
  mp_rlock_free(r);
  mp_raw_free(a.result);
}

/* ---- locked() (Python 3.14) ---------------------------------------------- */

struct locked_args {
  mp_lock_t *lock, *abandoned;
  mp_rlock_t *rlock;
  int *seen;
};

/* Sees the parent's holds, releases the Lock (any process may), and ends
 * holding `abandoned`. */
static void locked_child(void *arg) {
  struct locked_args *a = arg;
  *a->seen = mp_lock_locked(a->lock) && mp_rlock_locked(a->rlock) &&
             !mp_rlock_is_mine(a->rlock);
  if (mp_lock_release(a->lock) != 0 || mp_lock_acquire(a->abandoned, 0) != 0)
    exit(3);
  if (!mp_lock_locked(a->abandoned))
    exit(4);
}

static void test_locked(void **state) {
  (void)state;
  struct locked_args a = {.lock = mp_lock_new(),
                          .abandoned = mp_lock_new(),
                          .rlock = mp_rlock_new(),
                          .seen = shared(64)};
  assert_false(mp_lock_locked(a.lock));
  assert_false(mp_rlock_locked(a.rlock));
  assert_mp_ok(mp_lock_acquire(a.lock, 0));
  assert_true(mp_lock_locked(a.lock));
  assert_mp_ok(mp_rlock_acquire(a.rlock, 0));
  assert_mp_ok(mp_rlock_acquire(a.rlock, 0));
  assert_mp_ok(mp_rlock_release(a.rlock));
  assert_true(mp_rlock_locked(a.rlock)); /* still held once */
  assert_int_equal(0, finish_child(start_child(locked_child, &a, sizeof a)));
  assert_true(*a.seen);
  assert_false(mp_lock_locked(a.lock));
  /* Its holder ended: an acquire would not wait, so it reads unlocked.
   * (Not where the kernel keeps no robust lists: qemu-user, which CI's
   * aarch64 run marks with MPT_NO_DEATH_DETECTION.) */
  if (!getenv("MPT_NO_DEATH_DETECTION")) {
    assert_false(mp_lock_locked(a.abandoned));
    assert_mp(MP_EOWNERDEAD, mp_lock_acquire(a.abandoned, 0));
    assert_true(mp_lock_locked(a.abandoned));
    assert_mp_ok(mp_lock_release(a.abandoned));
  }
  assert_mp_ok(mp_rlock_release(a.rlock));
  assert_false(mp_rlock_locked(a.rlock));
  mp_lock_free(a.lock);
  mp_lock_free(a.abandoned);
  mp_rlock_free(a.rlock);
  mp_raw_free(a.seen);
}

/* ---- Semaphore ----------------------------------------------------------- */

static void test_semaphore(void **state) {
  (void)state;
  mp_semaphore_t *s = mp_semaphore_new(2);
  assert_non_null(s);
  assert_int_equal(2, mp_semaphore_value(s));
  assert_mp_ok(mp_semaphore_acquire(s, 0));
  assert_mp_ok(mp_semaphore_acquire(s, MP_FOREVER));
  assert_mp(MP_ETIMEDOUT, mp_semaphore_acquire(s, 0));
  assert_mp(MP_ETIMEDOUT, mp_semaphore_acquire(s, 0.02));
  for (int i = 0; i < 3; i++)
    assert_mp_ok(mp_semaphore_release(s)); /* unbounded: above 2 is fine */
  assert_int_equal(3, mp_semaphore_value(s));
  mp_semaphore_free(s);

  errno = 0;
  assert_null(mp_semaphore_new(0x80000000u));
  assert_int_equal(EINVAL, errno);
}

static void test_bounded_semaphore(void **state) {
  (void)state;
  mp_semaphore_t *s = mp_bounded_semaphore_new(1);
  assert_non_null(s);
  assert_mp(MP_EOVERFLOW, mp_semaphore_release(s));
  assert_mp_ok(mp_semaphore_acquire(s, 0));
  assert_int_equal(0, mp_semaphore_value(s));
  assert_mp_ok(mp_semaphore_release(s));
  assert_mp(MP_EOVERFLOW, mp_semaphore_release(s));
  assert_int_equal(1, mp_semaphore_value(s));
  mp_semaphore_free(s);
}

/* ---- Condition ----------------------------------------------------------- */

static bool never(void *arg) {
  (void)arg;
  return false;
}

static bool always(void *arg) {
  (void)arg;
  return true;
}

static void check_condition_errors(mp_condition_t *c) {
  assert_mp(MP_ENOTOWNER, mp_condition_wait(c, 0));
  assert_mp(MP_ENOTOWNER, mp_condition_wait_for(c, always, NULL, 0));
  assert_mp(MP_ENOTOWNER, mp_condition_notify(c, 1));
  assert_mp(MP_ENOTOWNER, mp_condition_notify_all(c));
  assert_mp_ok(mp_condition_acquire(c, 0));
  assert_mp(MP_ETIMEDOUT, mp_condition_wait(c, 0));
  assert_mp(MP_ETIMEDOUT, mp_condition_wait(c, 0.02));
  assert_mp(MP_ETIMEDOUT, mp_condition_wait_for(c, never, NULL, 0.02));
  assert_mp_ok(mp_condition_wait_for(c, always, NULL, MP_FOREVER));
  assert_mp_ok(mp_condition_notify(c, 1));
  assert_mp_ok(mp_condition_notify_all(c));
  assert_mp_ok(mp_condition_release(c)); /* still held after the waits */
}

static void test_condition_errors(void **state) {
  (void)state;
  mp_condition_t *c = mp_condition_new(NULL);
  assert_non_null(c);
  check_condition_errors(c);
  mp_condition_free(c);

  mp_lock_t *l = mp_lock_new();
  c = mp_condition_new_with_lock(l);
  check_condition_errors(c);
  assert_mp(MP_EOVERFLOW, mp_lock_release(l));
  mp_condition_free(c);
  mp_lock_free(l);

  errno = 0;
  assert_null(mp_condition_new_with_lock(NULL));
  assert_int_equal(EINVAL, errno);
}

/* wait() releases every level of a recursive lock and restores them. */
static void test_condition_rlock_depth(void **state) {
  (void)state;
  mp_rlock_t *r = mp_rlock_new();
  mp_condition_t *c = mp_condition_new(r);
  assert_mp_ok(mp_rlock_acquire(r, 0));
  assert_mp_ok(mp_condition_acquire(c, 0));
  assert_int_equal(2, mp_rlock_count(r));
  assert_mp(MP_ETIMEDOUT, mp_condition_wait(c, 0.01));
  assert_int_equal(2, mp_rlock_count(r));
  assert_true(mp_rlock_is_mine(r));
  assert_mp_ok(mp_condition_release(c));
  assert_mp_ok(mp_rlock_release(r));
  assert_mp(MP_ENOTOWNER, mp_rlock_release(r));
  mp_condition_free(c);
  mp_rlock_free(r);
}

/* ---- Event --------------------------------------------------------------- */

static void test_event(void **state) {
  (void)state;
  mp_event_t *e = mp_event_new();
  assert_non_null(e);
  assert_false(mp_event_is_set(e));
  assert_mp(MP_ETIMEDOUT, mp_event_wait(e, 0));
  assert_mp(MP_ETIMEDOUT, mp_event_wait(e, 0.02));
  assert_mp_ok(mp_event_set(e));
  assert_mp_ok(mp_event_set(e));
  assert_true(mp_event_is_set(e));
  assert_mp_ok(mp_event_wait(e, MP_FOREVER));
  assert_mp_ok(mp_event_wait(e, 0));
  assert_mp_ok(mp_event_clear(e));
  assert_false(mp_event_is_set(e));
  assert_mp(MP_ETIMEDOUT, mp_event_wait(e, 0));
  mp_event_free(e);
}

/* ---- Barrier ------------------------------------------------------------- */

static _Atomic int *action_calls; /* set by each process from its args */

static void count_action(void) {
  (*action_calls)++;
}

static void test_barrier_basics(void **state) {
  (void)state;
  errno = 0;
  assert_null(mp_barrier_new(0, NULL, MP_FOREVER));
  assert_int_equal(EINVAL, errno);
  assert_null(mp_barrier_new(70000, NULL, MP_FOREVER));

  action_calls = shared(64);
  mp_barrier_t *one = mp_barrier_new(1, count_action, MP_FOREVER);
  assert_int_equal(0, mp_barrier_wait(one));
  assert_int_equal(0, mp_barrier_wait(one));
  assert_int_equal(2, *action_calls);
  mp_barrier_free(one);
  mp_raw_free((void *)action_calls);

  mp_barrier_t *b = mp_barrier_new(2, NULL, 0.02);
  assert_int_equal(2, mp_barrier_parties(b));
  assert_int_equal(0, mp_barrier_n_waiting(b));
  assert_false(mp_barrier_broken(b));
  /* Python: a timeout breaks the barrier; the waiter gets BrokenBarrier. */
  assert_mp(MP_EBROKEN, mp_barrier_wait(b));
  assert_true(mp_barrier_broken(b));
  assert_mp(MP_EBROKEN, mp_barrier_wait_timeout(b, MP_FOREVER));
  assert_mp_ok(mp_barrier_reset(b));
  assert_false(mp_barrier_broken(b));
  assert_mp(MP_EBROKEN, mp_barrier_wait_timeout(b, 0));
  assert_mp_ok(mp_barrier_reset(b));
  assert_mp_ok(mp_barrier_abort(b));
  assert_true(mp_barrier_broken(b));
  assert_mp(MP_EBROKEN, mp_barrier_wait(b));
  assert_mp_ok(mp_barrier_reset(b));
  mp_barrier_free(b);
}

struct barrier_args {
  mp_barrier_t *barrier;
  _Atomic int *results; /* one per child */
  _Atomic int *action_calls;
  int slot;
  int rounds;
};

static void barrier_wait_child(void *arg) {
  struct barrier_args *a = arg;
  a->results[a->slot] = mp_barrier_wait(a->barrier);
}

/* reset() and abort() while parties wait: they get MP_EBROKEN, and the
 * barrier works again after reset(). */
static void test_barrier_reset_and_abort_wake_waiters(void **state) {
  (void)state;
  struct barrier_args a = {.barrier = mp_barrier_new(3, NULL, MP_FOREVER),
                           .results = shared(64)};
  mp_process_t *p[2];
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < 2; i++) {
      a.slot = i;
      p[i] = start_child(barrier_wait_child, &a, sizeof a);
    }
    wait_n_waiting(a.barrier, 2);
    if (round == 0)
      assert_mp_ok(mp_barrier_reset(a.barrier));
    else
      assert_mp_ok(mp_barrier_abort(a.barrier));
    for (int i = 0; i < 2; i++) {
      assert_int_equal(0, finish_child(p[i]));
      assert_mp(MP_EBROKEN, a.results[i]);
    }
    assert_int_equal(round == 1, mp_barrier_broken(a.barrier));
    assert_mp_ok(mp_barrier_reset(a.barrier));
  }
  /* Usable again: a full generation. */
  for (int i = 0; i < 2; i++) {
    a.slot = i;
    p[i] = start_child(barrier_wait_child, &a, sizeof a);
  }
  int mine = mp_barrier_wait(a.barrier);
  for (int i = 0; i < 2; i++)
    assert_int_equal(0, finish_child(p[i]));
  assert_int_equal(0 + 1 + 2, mine + a.results[0] + a.results[1]);
  mp_barrier_free(a.barrier);
  mp_raw_free((void *)a.results);
}

/* ---- Contention ---------------------------------------------------------- */

#define CONTENDERS 4
#define INCREMENTS 20000

struct counter_args {
  mp_lock_t *lock;
  mp_rlock_t *rlock;
  mp_semaphore_t *sem;
  long *counter;
  _Atomic int *errors;
};

static void count_under_lock(struct counter_args *a) {
  for (int i = 0; i < INCREMENTS; i++) {
    int rc;
    if (a->lock)
      rc = mp_lock_acquire(a->lock, MP_FOREVER);
    else if (a->rlock)
      rc = mp_rlock_acquire(a->rlock, MP_FOREVER) |
           mp_rlock_acquire(a->rlock, 0);
    else
      rc = mp_semaphore_acquire(a->sem, MP_FOREVER);
    if (rc)
      (*a->errors)++;
    long v = *a->counter;
    *a->counter = v + 1;
    if (a->lock)
      rc = mp_lock_release(a->lock);
    else if (a->rlock)
      rc = mp_rlock_release(a->rlock) | mp_rlock_release(a->rlock);
    else
      rc = mp_semaphore_release(a->sem);
    if (rc)
      (*a->errors)++;
  }
}

static void counter_child(void *arg) {
  count_under_lock(arg);
}

static void *counter_thread(void *arg) {
  count_under_lock(arg);
  return NULL;
}

static void run_counter_processes(struct counter_args *a) {
  a->counter = shared(64);
  a->errors = shared(64);
  mp_process_t *p[CONTENDERS];
  for (int i = 0; i < CONTENDERS; i++)
    p[i] = start_child(counter_child, a, sizeof *a);
  for (int i = 0; i < CONTENDERS; i++)
    assert_int_equal(0, finish_child(p[i]));
  assert_int_equal(0, *a->errors);
  assert_int_equal(CONTENDERS * INCREMENTS, *a->counter);
  mp_raw_free(a->counter);
  mp_raw_free((void *)a->errors);
}

static void test_contention_processes(void **state) {
  (void)state;
  struct counter_args a = {.lock = mp_lock_new()};
  run_counter_processes(&a);
  mp_lock_free(a.lock);
  a = (struct counter_args){.rlock = mp_rlock_new()};
  run_counter_processes(&a);
  mp_rlock_free(a.rlock);
  a = (struct counter_args){.sem = mp_bounded_semaphore_new(1)};
  run_counter_processes(&a);
  mp_semaphore_free(a.sem);
}

static void run_counter_threads(struct counter_args *a) {
  long counter = 0;
  _Atomic int errors = 0;
  a->counter = &counter;
  a->errors = &errors;
  pthread_t t[CONTENDERS];
  for (int i = 0; i < CONTENDERS; i++)
    assert_int_equal(0, pthread_create(&t[i], NULL, counter_thread, a));
  for (int i = 0; i < CONTENDERS; i++)
    pthread_join(t[i], NULL);
  assert_int_equal(0, errors);
  assert_int_equal(CONTENDERS * INCREMENTS, counter);
}

static void test_contention_threads(void **state) {
  (void)state;
  struct counter_args a = {.lock = mp_lock_new()};
  run_counter_threads(&a);
  mp_lock_free(a.lock);
  a = (struct counter_args){.rlock = mp_rlock_new()};
  run_counter_threads(&a);
  mp_rlock_free(a.rlock);
  a = (struct counter_args){.sem = mp_semaphore_new(1)};
  run_counter_threads(&a);
  mp_semaphore_free(a.sem);
}

/* A held lock times out in another process, then is acquired once free. */
static void timed_acquire_child(void *arg) {
  struct lock_args *a = arg;
  int first = mp_lock_acquire(a->lock, 0.05);
  int zero = mp_lock_acquire(a->lock, 0);
  *a->result = first == MP_ETIMEDOUT && zero == MP_ETIMEDOUT ? 0 : -1;
}

static void test_lock_timeout_across_processes(void **state) {
  (void)state;
  struct lock_args a = {.lock = mp_lock_new(), .result = shared(64)};
  assert_mp_ok(mp_lock_acquire(a.lock, 0));
  *a.result = 1;
  assert_int_equal(
      0, finish_child(start_child(timed_acquire_child, &a, sizeof a)));
  assert_mp_ok(*a.result);
  assert_mp_ok(mp_lock_release(a.lock));
  mp_lock_free(a.lock);
  mp_raw_free((void *)a.result);
}

/* ---- Lost-wakeup stress -------------------------------------------------- */

#define PINGPONG_ROUNDS 2000

struct pingpong_args {
  mp_condition_t *cond;
  mp_event_t *ping, *pong;
  _Atomic int *turn; /* guarded by cond's lock */
  _Atomic int *errors;
  int me;
  bool notify_all;
};

static bool my_turn(void *arg) {
  struct pingpong_args *a = arg;
  return *a->turn % 2 == a->me;
}

static void condition_player(struct pingpong_args *a) {
  for (int i = 0; i < PINGPONG_ROUNDS; i++) {
    int rc = mp_condition_acquire(a->cond, MP_FOREVER);
    rc |= mp_condition_wait_for(a->cond, my_turn, a, MP_FOREVER);
    (*a->turn)++;
    rc |= a->notify_all ? mp_condition_notify_all(a->cond)
                        : mp_condition_notify(a->cond, 1);
    rc |= mp_condition_release(a->cond);
    if (rc)
      (*a->errors)++;
  }
}

static void condition_player_child(void *arg) {
  condition_player(arg);
}

static void test_condition_pingpong(void **state) {
  (void)state;
  for (int mode = 0; mode < 2; mode++) {
    struct pingpong_args a = {.cond = mp_condition_new(NULL),
                              .turn = shared(64),
                              .errors = shared(64),
                              .notify_all = mode == 1};
    a.me = 1;
    mp_process_t *p = start_child(condition_player_child, &a, sizeof a);
    a.me = 0;
    condition_player(&a);
    assert_int_equal(0, finish_child(p));
    assert_int_equal(0, *a.errors);
    assert_int_equal(2 * PINGPONG_ROUNDS, *a.turn);
    mp_condition_free(a.cond);
    mp_raw_free((void *)a.turn);
    mp_raw_free((void *)a.errors);
  }
}

/* Tickets handed out one notify(1) at a time to waiting processes: none
 * may be lost, or a waiter would sleep forever. */
#define TICKET_WAITERS 3
#define TICKETS_EACH   300

struct ticket_args {
  mp_condition_t *cond;
  _Atomic int *tickets; /* guarded by cond's lock */
  _Atomic int *taken;
  _Atomic int *errors;
};

static bool ticket_ready(void *arg) {
  return *((struct ticket_args *)arg)->tickets > 0;
}

static void ticket_child(void *arg) {
  struct ticket_args *a = arg;
  for (int i = 0; i < TICKETS_EACH; i++) {
    int rc = mp_condition_acquire(a->cond, MP_FOREVER);
    rc |= mp_condition_wait_for(a->cond, ticket_ready, a, MP_FOREVER);
    (*a->tickets)--;
    (*a->taken)++;
    rc |= mp_condition_release(a->cond);
    if (rc)
      (*a->errors)++;
  }
}

static void test_condition_notify_one_at_a_time(void **state) {
  (void)state;
  struct ticket_args a = {.cond = mp_condition_new(NULL),
                          .tickets = shared(64),
                          .taken = shared(64),
                          .errors = shared(64)};
  mp_process_t *p[TICKET_WAITERS];
  for (int i = 0; i < TICKET_WAITERS; i++)
    p[i] = start_child(ticket_child, &a, sizeof a);
  for (int i = 0; i < TICKET_WAITERS * TICKETS_EACH; i++) {
    assert_mp_ok(mp_condition_acquire(a.cond, MP_FOREVER));
    (*a.tickets)++;
    assert_mp_ok(mp_condition_notify(a.cond, 1));
    assert_mp_ok(mp_condition_release(a.cond));
  }
  for (int i = 0; i < TICKET_WAITERS; i++)
    assert_int_equal(0, finish_child(p[i]));
  assert_int_equal(0, *a.errors);
  assert_int_equal(TICKET_WAITERS * TICKETS_EACH, *a.taken);
  mp_condition_free(a.cond);
  mp_raw_free((void *)a.tickets);
  mp_raw_free((void *)a.taken);
  mp_raw_free((void *)a.errors);
}

static void event_player(struct pingpong_args *a) {
  mp_event_t *mine = a->me ? a->pong : a->ping;
  mp_event_t *theirs = a->me ? a->ping : a->pong;
  for (int i = 0; i < PINGPONG_ROUNDS; i++) {
    int rc = 0;
    if (a->me == 0)
      rc |= mp_event_set(theirs);
    rc |= mp_event_wait(mine, MP_FOREVER);
    rc |= mp_event_clear(mine);
    (*a->turn)++;
    if (a->me == 1)
      rc |= mp_event_set(theirs);
    if (rc)
      (*a->errors)++;
  }
}

static void event_player_child(void *arg) {
  event_player(arg);
}

static void test_event_pingpong(void **state) {
  (void)state;
  struct pingpong_args a = {.ping = mp_event_new(),
                            .pong = mp_event_new(),
                            .turn = shared(64),
                            .errors = shared(64)};
  a.me = 1;
  mp_process_t *p = start_child(event_player_child, &a, sizeof a);
  a.me = 0;
  event_player(&a);
  assert_int_equal(0, finish_child(p));
  assert_int_equal(0, *a.errors);
  assert_int_equal(2 * PINGPONG_ROUNDS, *a.turn);
  mp_event_free(a.ping);
  mp_event_free(a.pong);
  mp_raw_free((void *)a.turn);
  mp_raw_free((void *)a.errors);
}

#define BARRIER_PARTIES 3
#define BARRIER_ROUNDS  1000

/* Sum of the indices each process got: every generation hands out
 * 0 .. parties - 1 once. */
static void barrier_rounds(struct barrier_args *a) {
  int sum = 0;
  for (int i = 0; i < a->rounds; i++) {
    int index = mp_barrier_wait(a->barrier);
    if (index < 0) {
      a->results[a->slot] = index;
      return;
    }
    sum += index;
  }
  a->results[a->slot] = sum;
}

static void barrier_rounds_child(void *arg) {
  struct barrier_args *a = arg;
  action_calls = a->action_calls;
  barrier_rounds(a);
}

static void test_barrier_generations(void **state) {
  (void)state;
  struct barrier_args a = {
      .barrier = mp_barrier_new(BARRIER_PARTIES, count_action, MP_FOREVER),
      .results = shared(64),
      .action_calls = shared(64),
      .rounds = BARRIER_ROUNDS};
  mp_process_t *p[BARRIER_PARTIES];
  for (int i = 0; i < BARRIER_PARTIES; i++) {
    a.slot = i;
    p[i] = start_child(barrier_rounds_child, &a, sizeof a);
  }
  long total = 0;
  for (int i = 0; i < BARRIER_PARTIES; i++) {
    assert_int_equal(0, finish_child(p[i]));
    assert_true(a.results[i] >= 0);
    total += a.results[i];
  }
  assert_int_equal((long)BARRIER_ROUNDS * (0 + 1 + 2), total);
  assert_int_equal(BARRIER_ROUNDS, *a.action_calls);
  assert_false(mp_barrier_broken(a.barrier));
  mp_barrier_free(a.barrier);
  mp_raw_free((void *)a.results);
  mp_raw_free((void *)a.action_calls);
}

/* Threads of one process, for the ThreadSanitizer build. */
static void *barrier_rounds_thread(void *arg) {
  barrier_rounds(arg);
  return NULL;
}

static void test_barrier_threads(void **state) {
  (void)state;
  struct barrier_args a[BARRIER_PARTIES];
  _Atomic int *results = shared(64), *calls = shared(64);
  mp_barrier_t *b = mp_barrier_new(BARRIER_PARTIES, count_action, MP_FOREVER);
  action_calls = calls;
  pthread_t t[BARRIER_PARTIES];
  for (int i = 0; i < BARRIER_PARTIES; i++) {
    a[i] = (struct barrier_args){.barrier = b,
                                 .results = results,
                                 .action_calls = calls,
                                 .slot = i,
                                 .rounds = BARRIER_ROUNDS / 4};
    assert_int_equal(0,
                     pthread_create(&t[i], NULL, barrier_rounds_thread, &a[i]));
  }
  long total = 0;
  for (int i = 0; i < BARRIER_PARTIES; i++) {
    pthread_join(t[i], NULL);
    total += results[i];
  }
  assert_int_equal((long)(BARRIER_ROUNDS / 4) * (0 + 1 + 2), total);
  assert_int_equal(BARRIER_ROUNDS / 4, *calls);
  mp_barrier_free(b);
  mp_raw_free((void *)results);
  mp_raw_free((void *)calls);
}

/* More threads than parties, arriving at once: each generation hands out
 * 0 .. parties - 1 once, and the threads that find it full join the next
 * one. Also exercises arrivals counting each other's claims. */
#define CROWD_PARTIES 3
#define CROWD_ROUNDS  100

/* Slow, so that threads arrive while it runs (provokes, no timing
 * assumption). */
static void slow_count_action(void) {
  count_action();
  sleep_us(100);
}

static void *crowd_thread(void *arg) {
  struct barrier_args *a = arg;
  a->results[a->slot] = mp_barrier_wait(a->barrier);
  return NULL;
}

static void test_barrier_more_threads_than_parties(void **state) {
  (void)state;
  action_calls = shared(64);
  for (int round = 0; round < CROWD_ROUNDS; round++) {
    mp_barrier_t *b =
        mp_barrier_new(CROWD_PARTIES, slow_count_action, MP_FOREVER);
    _Atomic int results[2 * CROWD_PARTIES];
    struct barrier_args a[2 * CROWD_PARTIES];
    pthread_t t[2 * CROWD_PARTIES];
    for (int i = 0; i < 2 * CROWD_PARTIES; i++) {
      a[i] = (struct barrier_args){.barrier = b, .results = results, .slot = i};
      assert_int_equal(0, pthread_create(&t[i], NULL, crowd_thread, &a[i]));
    }
    int sum = 0;
    for (int i = 0; i < 2 * CROWD_PARTIES; i++) {
      pthread_join(t[i], NULL);
      assert_true(results[i] >= 0);
      sum += results[i];
    }
    assert_int_equal(2 * (0 + 1 + 2), sum);
    assert_int_equal(0, mp_barrier_n_waiting(b));
    mp_barrier_free(b);
  }
  assert_int_equal(2 * CROWD_ROUNDS, *action_calls);
  mp_raw_free((void *)action_calls);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      sync_test(test_lock_acquire_release),
      sync_test(test_lock_released_by_another_process),
      sync_test(test_rlock_recursion_and_owner),
      sync_test(test_locked),
      sync_test(test_semaphore),
      sync_test(test_bounded_semaphore),
      sync_test(test_condition_errors),
      sync_test(test_condition_rlock_depth),
      sync_test(test_event),
      sync_test(test_barrier_basics),
      sync_test(test_barrier_reset_and_abort_wake_waiters),
      sync_test(test_contention_processes),
      sync_test(test_contention_threads),
      sync_test(test_lock_timeout_across_processes),
      sync_test(test_condition_pingpong),
      sync_test(test_condition_notify_one_at_a_time),
      sync_test(test_event_pingpong),
      sync_test(test_barrier_generations),
      sync_test(test_barrier_threads),
      sync_test(test_barrier_more_threads_than_parties),
  };
  return MPT_RUN(argc, argv, tests);
}

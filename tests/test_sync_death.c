/* Synchronization when processes and threads die: a Lock or RLock whose
 * holder ended is taken over with MP_EOWNERDEAD; a Barrier whose party dies
 * breaks; a dead Condition waiter takes no notify; killed waiters strand
 * nobody. Processes are killed with SIGKILL, also at random points. */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "sync_fixtures.h"
#include "testing.h"

struct holder_args {
  mp_lock_t *lock;
  mp_rlock_t *rlock;
  mp_event_t *held; /* set once the holder holds it */
  _Atomic int *result;
};

static int holder_acquire(struct holder_args *a) {
  return a->lock ? mp_lock_acquire(a->lock, MP_FOREVER)
                 : mp_rlock_acquire(a->rlock, MP_FOREVER);
}

static int holder_release(struct holder_args *a) {
  return a->lock ? mp_lock_release(a->lock) : mp_rlock_release(a->rlock);
}

/* Acquires, says so, and then holds it until killed. */
static void hold_forever_child(void *arg) {
  struct holder_args *a = arg;
  holder_acquire(a);
  if (a->rlock)
    mp_rlock_acquire(a->rlock, 0); /* depth 2: the taker gets depth 1 */
  mp_event_set(a->held);
  for (;;)
    pause();
}

/* Acquires and ends without releasing. */
static void hold_and_exit_child(void *arg) {
  holder_acquire(arg);
}

static void *hold_and_exit_thread(void *arg) {
  holder_acquire(arg);
  return NULL;
}

static void check_taken_over(struct holder_args *a) {
  assert_mp(MP_EOWNERDEAD, a->lock ? mp_lock_acquire(a->lock, 0)
                                   : mp_rlock_acquire(a->rlock, 0));
  if (a->rlock) {
    assert_true(mp_rlock_is_mine(a->rlock));
    assert_int_equal(1, mp_rlock_count(a->rlock));
    assert_int_equal(getpid(), mp_rlock_owner(a->rlock, NULL));
  }
  /* Held by us now, and an ordinary lock again. */
  if (a->lock)
    assert_mp(MP_ETIMEDOUT, mp_lock_acquire(a->lock, 0.01));
  assert_mp_ok(holder_release(a));
  assert_mp_ok(holder_acquire(a));
  assert_mp_ok(holder_release(a));
}

static void run_holder_deaths(struct holder_args *a) {
  a->held = mp_event_new();
  mp_process_t *p = start_child(hold_forever_child, a, sizeof *a);
  assert_mp_ok(mp_event_wait(a->held, JOIN_TIMEOUT));
  assert_int_equal(-SIGKILL, kill_child(p));
  check_taken_over(a);

  assert_int_equal(
      0, finish_child(start_child(hold_and_exit_child, a, sizeof *a)));
  check_taken_over(a);

  pthread_t t;
  assert_int_equal(0, pthread_create(&t, NULL, hold_and_exit_thread, a));
  pthread_join(t, NULL);
  check_taken_over(a);
  mp_event_free(a->held);
}

static void test_holder_dies(void **state) {
  (void)state;
  struct holder_args a = {.lock = mp_lock_new()};
  run_holder_deaths(&a);
  mp_lock_free(a.lock);
  a = (struct holder_args){.rlock = mp_rlock_new()};
  run_holder_deaths(&a);
  mp_rlock_free(a.rlock);
}

/* Waiters asleep when the holder is killed: exactly one takes it over
 * with MP_EOWNERDEAD, the others get it after that one releases. */
#define SLEEPERS 3

struct waiter_args {
  struct holder_args h;
  int slot;
};

static void acquire_record_release_child(void *arg) {
  struct waiter_args *w = arg;
  int rc = holder_acquire(&w->h);
  w->h.result[w->slot] = rc;
  if (rc == 0 || rc == MP_EOWNERDEAD)
    holder_release(&w->h);
}

static void *acquire_record_release_thread(void *arg) {
  acquire_record_release_child(arg);
  return NULL;
}

static void run_sleepers(struct holder_args *h) {
  h->held = mp_event_new();
  h->result = shared(64);
  mp_process_t *holder = start_child(hold_forever_child, h, sizeof *h);
  assert_mp_ok(mp_event_wait(h->held, JOIN_TIMEOUT));
  mp_process_t *p[SLEEPERS - 1];
  struct waiter_args w[SLEEPERS];
  for (int i = 0; i < SLEEPERS; i++) {
    w[i] = (struct waiter_args){.h = *h, .slot = i};
    h->result[i] = 1;
  }
  for (int i = 0; i < SLEEPERS - 1; i++)
    p[i] = start_child(acquire_record_release_child, &w[i], sizeof w[i]);
  pthread_t t;
  assert_int_equal(0, pthread_create(&t, NULL, acquire_record_release_thread,
                                     &w[SLEEPERS - 1]));
  sleep_us(20000); /* provoke: let them fall asleep first */
  kill_child(holder);
  int dead = 0;
  for (int i = 0; i < SLEEPERS - 1; i++)
    assert_int_equal(0, finish_child(p[i]));
  pthread_join(t, NULL);
  for (int i = 0; i < SLEEPERS; i++) {
    dead += h->result[i] == MP_EOWNERDEAD;
    assert_true(h->result[i] == 0 || h->result[i] == MP_EOWNERDEAD);
  }
  assert_int_equal(1, dead);
  mp_event_free(h->held);
  mp_raw_free((void *)h->result);
}

static void test_sleeping_waiters_take_over(void **state) {
  (void)state;
  struct holder_args h = {.lock = mp_lock_new()};
  run_sleepers(&h);
  mp_lock_free(h.lock);
  h = (struct holder_args){.rlock = mp_rlock_new()};
  run_sleepers(&h);
  mp_rlock_free(h.rlock);
}

/* Threads that hold a lock and exit, many times over: their slots in the
 * owner table are reused (there are 1024) and a reused slot never passes
 * for its dead owner. */
static void test_owner_slots_are_reused(void **state) {
  (void)state;
  struct holder_args a = {.lock = mp_lock_new()};
  for (int i = 0; i < 1100; i++) {
    pthread_t t;
    assert_int_equal(0, pthread_create(&t, NULL, hold_and_exit_thread, &a));
    pthread_join(t, NULL);
    assert_mp(MP_EOWNERDEAD, mp_lock_acquire(a.lock, 0));
    assert_mp_ok(mp_lock_release(a.lock));
  }
  mp_lock_free(a.lock);
}

/* ---- killing at random points -------------------------------------------- */

#define WORKERS 3
#define KILLS   12

/* Two counters that must stay equal under the lock: a worker killed
 * between the two increments leaves them apart, and whoever takes the lock
 * over repairs them. */
struct kill_args {
  mp_lock_t *lock;
  mp_rlock_t *rlock;
  struct kill_state {
    long a, b;
    _Atomic long progress;
    _Atomic int taken_over;
    _Atomic int errors;
    _Atomic bool stop;
  } * s;
};

static int kill_acquire(struct kill_args *k) {
  if (k->lock)
    return mp_lock_acquire(k->lock, MP_FOREVER);
  int rc = mp_rlock_acquire(k->rlock, MP_FOREVER);
  if (rc == 0 || rc == MP_EOWNERDEAD)
    mp_rlock_acquire(k->rlock, 0);
  return rc;
}

static int kill_release(struct kill_args *k) {
  if (k->lock)
    return mp_lock_release(k->lock);
  return mp_rlock_release(k->rlock) | mp_rlock_release(k->rlock);
}

static void kill_worker(void *arg) {
  struct kill_args *k = arg;
  while (!k->s->stop) {
    int rc = kill_acquire(k);
    if (rc == MP_EOWNERDEAD) {
      k->s->b = k->s->a;
      k->s->taken_over++;
    } else if (rc != 0) {
      k->s->errors++;
      return;
    }
    if (k->s->a != k->s->b)
      k->s->errors++;
    k->s->a++;
    for (volatile int spin = 0; spin < 200; spin++)
      ;
    k->s->b++;
    k->s->progress++;
    if (kill_release(k) != 0)
      k->s->errors++;
  }
}

static bool progressed(void *arg) {
  long *watch = arg;
  struct kill_state *s = (struct kill_state *)(uintptr_t)watch[0];
  return s->progress >= watch[1];
}

static void run_random_kills(struct kill_args *k) {
  k->s = shared(sizeof *k->s);
  unsigned seed = (unsigned)getpid();
  mp_process_t *w[WORKERS];
  for (int i = 0; i < WORKERS; i++)
    w[i] = start_child(kill_worker, k, sizeof *k);
  for (int kill = 0; kill < KILLS; kill++) {
    sleep_us(rand_r(&seed) % 3000);
    int victim = rand_r(&seed) % WORKERS;
    kill_child(w[victim]);
    w[victim] = start_child(kill_worker, k, sizeof *k);
    /* The survivors keep going: nobody hangs on the dead one's lock. */
    long watch[2] = {(long)(uintptr_t)k->s, k->s->progress + 100};
    assert_true(poll_until(progressed, watch));
  }
  k->s->stop = true;
  for (int i = 0; i < WORKERS; i++)
    assert_int_equal(0, finish_child(w[i]));
  assert_int_equal(0, k->s->errors);
  assert_int_equal(k->s->a, k->s->b);
  /* Still a working lock. */
  assert_mp_ok(kill_acquire(k));
  assert_mp_ok(kill_release(k));
  mp_raw_free(k->s);
}

static void test_random_kills(void **state) {
  (void)state;
  struct kill_args k = {.lock = mp_lock_new()};
  run_random_kills(&k);
  mp_lock_free(k.lock);
  k = (struct kill_args){.rlock = mp_rlock_new()};
  run_random_kills(&k);
  mp_rlock_free(k.rlock);
}

/* Semaphore waiters killed while others wait: the units still reach the
 * live ones. */
#define SEM_WAITERS 4

struct sem_args {
  mp_semaphore_t *sem;
  _Atomic int *results;
  int slot;
};

static void sem_waiter_child(void *arg) {
  struct sem_args *a = arg;
  a->results[a->slot] = mp_semaphore_acquire(a->sem, MP_FOREVER);
}

static void test_semaphore_waiters_killed(void **state) {
  (void)state;
  struct sem_args a = {.sem = mp_semaphore_new(0), .results = shared(64)};
  for (int round = 0; round < 5; round++) {
    mp_process_t *p[SEM_WAITERS];
    for (int i = 0; i < SEM_WAITERS; i++) {
      a.slot = i;
      a.results[i] = 1;
      p[i] = start_child(sem_waiter_child, &a, sizeof a);
    }
    sleep_us(round * 2000); /* provoke: asleep, or not yet */
    /* Release while killing, so that a just-woken waiter may die. */
    assert_mp_ok(mp_semaphore_release(a.sem));
    kill_child(p[0]);
    for (int i = 1; i < SEM_WAITERS; i++)
      assert_mp_ok(mp_semaphore_release(a.sem));
    for (int i = 1; i < SEM_WAITERS; i++) {
      assert_int_equal(0, finish_child(p[i]));
      assert_mp_ok(a.results[i]);
    }
    /* The killed one may have taken a unit before it died. */
    while (mp_semaphore_acquire(a.sem, 0) == 0)
      ;
  }
  mp_semaphore_free(a.sem);
  mp_raw_free((void *)a.results);
}

/* ---- Barrier ------------------------------------------------------------- */

static _Atomic pid_t *action_victim; /* set by each process from its args */

static void die_if_victim(void) {
  if (*action_victim == getpid())
    raise(SIGKILL);
}

struct barrier_args {
  mp_barrier_t *barrier;
  _Atomic int *results;
  _Atomic pid_t *victim;
  int slot;
  bool volunteer; /* become the action's victim */
};

static void barrier_child(void *arg) {
  struct barrier_args *a = arg;
  action_victim = a->victim;
  if (a->volunteer)
    *a->victim = getpid();
  a->results[a->slot] = mp_barrier_wait(a->barrier);
}

/* parties 3: two children wait, one of them is killed; the other and the
 * late third party get MP_EBROKEN. */
static void test_barrier_party_killed(void **state) {
  (void)state;
  for (int victim = 0; victim < 2; victim++) {
    struct barrier_args a = {.barrier = mp_barrier_new(3, NULL, MP_FOREVER),
                             .results = shared(64)};
    mp_process_t *p[2];
    for (int i = 0; i < 2; i++) {
      a.slot = i;
      p[i] = start_child(barrier_child, &a, sizeof a);
      wait_n_waiting(a.barrier, (unsigned)i + 1); /* arrival index i */
    }
    kill_child(p[victim]);
    assert_int_equal(0, finish_child(p[1 - victim]));
    assert_mp(MP_EBROKEN, a.results[1 - victim]);
    assert_true(mp_barrier_broken(a.barrier));
    assert_mp(MP_EBROKEN, mp_barrier_wait(a.barrier));
    /* Repaired by reset: a full generation. */
    assert_mp_ok(mp_barrier_reset(a.barrier));
    for (int i = 0; i < 2; i++) {
      a.slot = i;
      p[i] = start_child(barrier_child, &a, sizeof a);
    }
    int mine = mp_barrier_wait(a.barrier);
    for (int i = 0; i < 2; i++)
      assert_int_equal(0, finish_child(p[i]));
    assert_int_equal(3, mine + a.results[0] + a.results[1]);
    mp_barrier_free(a.barrier);
    mp_raw_free((void *)a.results);
  }
}

/* barrier.c's test hook: called by a party once its arrival is counted. */

static mp_event_t *counted_event; /* set by the victim from its args */

static void stop_when_counted(void) {
  mp_event_set(counted_event);
  for (;;)
    pause();
}

struct counted_args {
  struct barrier_args b;
  mp_event_t *counted; /* NULL: wait normally */
};

static void counted_child(void *arg) {
  struct counted_args *a = arg;
  if (a->counted) {
    counted_event = a->counted;
    mp__barrier_counted_hook = stop_when_counted;
  }
  barrier_child(&a->b);
}

/* The window of a party killed the instant its arrival is counted, before
 * it does anything else: the other party still breaks the barrier. */
static void test_barrier_party_killed_when_counted(void **state) {
  (void)state;
  for (int victim = 0; victim < 2; victim++) {
    struct counted_args a = {
        .b = {.barrier = mp_barrier_new(3, NULL, MP_FOREVER),
              .results = shared(64)}};
    mp_event_t *counted = mp_event_new();
    mp_process_t *p[2];
    for (int i = 0; i < 2; i++) {
      a.b.slot = i;
      a.counted = i == victim ? counted : NULL;
      p[i] = start_child(counted_child, &a, sizeof a);
      if (i == victim)
        assert_mp_ok(mp_event_wait(counted, JOIN_TIMEOUT));
      wait_n_waiting(a.b.barrier, (unsigned)i + 1);
    }
    kill_child(p[victim]);
    assert_int_equal(0, finish_child(p[1 - victim]));
    assert_mp(MP_EBROKEN, a.b.results[1 - victim]);
    assert_true(mp_barrier_broken(a.b.barrier));
    mp_event_free(counted);
    mp_barrier_free(a.b.barrier);
    mp_raw_free((void *)a.b.results);
  }
}

/* The last party dies inside the action: the waiting one breaks it. */
static void test_barrier_action_dies(void **state) {
  (void)state;
  struct barrier_args a = {.barrier =
                               mp_barrier_new(2, die_if_victim, MP_FOREVER),
                           .results = shared(64),
                           .victim = shared(64)};
  a.slot = 0;
  mp_process_t *first = start_child(barrier_child, &a, sizeof a);
  wait_n_waiting(a.barrier, 1);
  a.slot = 1;
  a.volunteer = true;
  assert_int_equal(-SIGKILL,
                   finish_child(start_child(barrier_child, &a, sizeof a)));
  assert_int_equal(0, finish_child(first));
  assert_mp(MP_EBROKEN, a.results[0]);
  assert_true(mp_barrier_broken(a.barrier));
  mp_barrier_free(a.barrier);
  mp_raw_free((void *)a.results);
  mp_raw_free((void *)a.victim);
}

/* ---- Condition ----------------------------------------------------------- */

struct cond_args {
  mp_condition_t *cond;
  _Atomic int *ready; /* guarded by cond's lock */
  _Atomic int *results;
  int slot;
  int expect_ready;
  bool die_holding;
};

static void cond_waiter_child(void *arg) {
  struct cond_args *a = arg;
  mp_condition_acquire(a->cond, MP_FOREVER);
  (*a->ready)++;
  int rc = mp_condition_wait(a->cond, MP_FOREVER);
  a->results[a->slot] = rc;
  mp_condition_release(a->cond);
}

static void cond_notifier_child(void *arg) {
  struct cond_args *a = arg;
  mp_condition_acquire(a->cond, MP_FOREVER);
  mp_condition_notify_all(a->cond);
  if (a->die_holding)
    raise(SIGKILL);
  mp_condition_release(a->cond);
}

static bool all_ready(void *arg) {
  struct cond_args *a = arg;
  mp_condition_acquire(a->cond, MP_FOREVER);
  bool ready = *a->ready == a->expect_ready;
  mp_condition_release(a->cond);
  return ready;
}

/* Waits until n waiters are inside wait(): they incremented `ready` with
 * the lock held, and we got the lock, so they released it in wait(). */
static void wait_ready(struct cond_args *a, int n) {
  a->expect_ready = n;
  assert_true(poll_until(all_ready, a));
}

/* A waiter killed (and reaped) before notify(1): the notify reaches the
 * live one. */
static void test_condition_dead_waiter(void **state) {
  (void)state;
  struct cond_args a = {.cond = mp_condition_new(NULL),
                        .ready = shared(64),
                        .results = shared(64)};
  mp_process_t *p[2];
  for (int i = 0; i < 2; i++) {
    a.slot = i;
    a.results[i] = 1;
    p[i] = start_child(cond_waiter_child, &a, sizeof a);
  }
  wait_ready(&a, 2);
  sleep_us(5000); /* provoke: the victim asleep in the kernel */
  kill_child(p[0]);
  assert_mp_ok(mp_condition_acquire(a.cond, 0.5));
  assert_mp_ok(mp_condition_notify(a.cond, 1));
  assert_mp_ok(mp_condition_release(a.cond));
  assert_int_equal(0, finish_child(p[1]));
  assert_mp_ok(a.results[1]);
  mp_condition_free(a.cond);
  mp_raw_free((void *)a.ready);
  mp_raw_free((void *)a.results);
}

/* The notifier dies holding the lock: the waiter wakes, takes the lock
 * over and learns it with MP_EOWNERDEAD. */
static void test_condition_notifier_dies_holding(void **state) {
  (void)state;
  struct cond_args a = {.cond = mp_condition_new(NULL),
                        .ready = shared(64),
                        .results = shared(64)};
  a.results[0] = 1;
  mp_process_t *waiter = start_child(cond_waiter_child, &a, sizeof a);
  wait_ready(&a, 1);
  a.die_holding = true;
  assert_int_equal(
      -SIGKILL, finish_child(start_child(cond_notifier_child, &a, sizeof a)));
  assert_int_equal(0, finish_child(waiter));
  assert_mp(MP_EOWNERDEAD, a.results[0]);
  assert_mp_ok(mp_condition_acquire(a.cond, 0)); /* released by the waiter */
  assert_mp_ok(mp_condition_release(a.cond));
  mp_condition_free(a.cond);
  mp_raw_free((void *)a.ready);
  mp_raw_free((void *)a.results);
}

/* ---- without futex_waitv or get_robust_list -------------------------------
 */

/* Makes one system call fail with ENOSYS in the calling process, as on a
 * kernel or sandbox without it. */
static bool deny_syscall(long nr) {
  struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof code / sizeof code[0], code};
  return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0;
}

struct degraded_args {
  _Atomic int *result;
  bool no_waitv;
};

struct degraded_thread {
  mp_lock_t *lock;
  mp_event_t *held;
  pthread_mutex_t *robust;
};

/* Holds the lock (and a robust pthread mutex) a moment, then ends. */
static void *hold_briefly_thread(void *arg) {
  struct degraded_thread *t = arg;
  mp_lock_acquire(t->lock, MP_FOREVER);
  if (t->robust)
    pthread_mutex_lock(t->robust);
  mp_event_set(t->held);
  sleep_us(30000);
  return NULL;
}

/* Runs in a child with the system call denied; result 0 when the outcome
 * is the expected one. */
static void degraded_child(void *arg) {
  struct degraded_args *a = arg;
  if (!deny_syscall(a->no_waitv ? SYS_futex_waitv : SYS_get_robust_list)) {
    *a->result = -errno;
    return;
  }
  pthread_mutexattr_t attr;
  pthread_mutex_t robust;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&robust, &attr);
  struct degraded_thread t = {mp_lock_new(), mp_event_new(), &robust};
  pthread_t thread;
  pthread_create(&thread, NULL, hold_briefly_thread, &t);
  mp_event_wait(t.held, MP_FOREVER);
  if (a->no_waitv) {
    /* Asleep on the lock and the holder's slot through the fallback. */
    *a->result = mp_lock_acquire(t.lock, MP_FOREVER) == MP_EOWNERDEAD ? 0 : 1;
  } else {
    /* No death reports for our slots, but the C library's robust list is
     * still its own: its mutex is recovered, ours times out. */
    pthread_join(thread, NULL);
    bool libc_ok = pthread_mutex_lock(&robust) == EOWNERDEAD;
    bool ours_waits = mp_lock_acquire(t.lock, 0.02) == MP_ETIMEDOUT;
    *a->result = libc_ok && ours_waits && mp_lock_release(t.lock) == 0 ? 0 : 2;
  }
  if (a->no_waitv)
    pthread_join(thread, NULL);
}

static void test_degraded_kernels(void **state) {
  (void)state;
  struct degraded_args a = {.result = shared(64)};
  for (int i = 0; i < 2; i++) {
    a.no_waitv = i == 0;
    *a.result = -1;
    assert_int_equal(0,
                     finish_child(start_child(degraded_child, &a, sizeof a)));
    assert_int_equal(0, *a.result);
  }
  mp_raw_free((void *)a.result);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      sync_test(test_holder_dies),
      sync_test(test_sleeping_waiters_take_over),
      sync_test(test_owner_slots_are_reused),
      sync_test(test_random_kills),
      sync_test(test_semaphore_waiters_killed),
      sync_test(test_barrier_party_killed),
      sync_test(test_barrier_party_killed_when_counted),
      sync_test(test_barrier_action_dies),
      sync_test(test_condition_dead_waiter),
      sync_test(test_condition_notifier_dies_holding),
      sync_test(test_degraded_kernels),
  };
  return MPT_RUN(argc, argv, tests);
}

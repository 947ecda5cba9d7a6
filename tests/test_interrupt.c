/* mp_interrupt: every kind of wait returns MP_EINTR, whoever interrupts it
 * (another thread, a signal handler installed with or without SA_RESTART),
 * waits that start later too, until mp_interrupt_clear(); and nothing is
 * lost (a message stays in its queue, a receive is never torn).
 *
 * The waiter is a thread of the test process; the interrupter waits until
 * the waiter sleeps in the kernel (its /proc state), so that the wake-up
 * of a sleeping wait is what is tested. Correctness never depends on that
 * timing: an interrupt that comes first is seen by the wait when it
 * starts. The latency (interrupt to return) is printed, not asserted. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sync_fixtures.h"

/* ---- the harness ----------------------------------------------------------
 */

enum interrupter { BY_THREAD, BY_SIGNAL_RESTART, BY_SIGNAL, BY_COUNT };
static const char *const interrupter_names[] = {"thread", "SA_RESTART handler",
                                                "handler"};

/* One kind of wait: setup makes what the wait blocks on, wait blocks
 * (returns its code), check verifies after mp_interrupt_clear() that
 * nothing was lost, teardown frees. */
typedef struct wait_kind {
  const char *name;
  void (*setup)(void *ctx);
  int (*wait)(void *ctx);
  void (*check)(void *ctx);
  void (*teardown)(void *ctx);
} wait_kind_t;

typedef struct waiter {
  const wait_kind_t *kind;
  void *ctx;
  _Atomic pid_t tid;
  _Atomic int rc;
  _Atomic bool done;
  _Atomic uint64_t returned_ns;
} waiter_t;

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void *waiter_main(void *arg) {
  waiter_t *w = arg;
  atomic_store(&w->tid, (pid_t)syscall(SYS_gettid));
  int rc = w->kind->wait(w->ctx);
  atomic_store(&w->returned_ns, now_ns());
  atomic_store(&w->rc, rc);
  atomic_store(&w->done, true);
  return NULL;
}

/* Whether the thread sleeps in the kernel (state S in its stat). */
static bool thread_sleeps(void *arg) {
  waiter_t *w = arg;
  pid_t tid = atomic_load(&w->tid);
  if (tid == 0)
    return false;
  char path[64], buf[256];
  snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return false;
  buf[n] = '\0';
  const char *paren = strrchr(buf, ')');
  return paren && paren[1] == ' ' && paren[2] == 'S';
}

static void on_signal(int sig) {
  (void)sig;
  mp_interrupt();
}

static void install_handler(bool restart) {
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = restart ? SA_RESTART : 0;
  sigaction(SIGUSR1, &sa, NULL);
}

static uint64_t worst_latency_ns;

/* Runs one wait under one interrupter: it must return MP_EINTR; a wait
 * started while interrupted too; after the clear, check. */
static void run_one(const wait_kind_t *kind, void *ctx, enum interrupter by) {
  kind->setup(ctx);
  waiter_t w = {.kind = kind, .ctx = ctx};
  pthread_t t;
  assert_int_equal(0, pthread_create(&t, NULL, waiter_main, &w));
  /* Sleeping, or (on a slow machine) not yet: either way it must end. */
  mpt_wait_until(thread_sleeps, &w, 5.0);
  uint64_t sent = now_ns();
  if (by == BY_THREAD)
    mp_interrupt();
  else
    pthread_kill(t, SIGUSR1);
  pthread_join(t, NULL);
  int64_t latency = (int64_t)(atomic_load(&w.returned_ns) - sent);
  if (getenv("MPT_VERBOSE"))
    printf("%s by %s: %lld ns\n", kind->name, interrupter_names[by],
           (long long)latency);
  if (latency > (int64_t)worst_latency_ns)
    worst_latency_ns = (uint64_t)latency;
  if (atomic_load(&w.rc) != MP_EINTR)
    print_error("%s, by %s: %s\n", kind->name, interrupter_names[by],
                mp_errname(atomic_load(&w.rc)));
  assert_mp(MP_EINTR, atomic_load(&w.rc));
  /* Still interrupted: a wait that starts now returns at once. */
  waiter_t later = {.kind = kind, .ctx = ctx};
  assert_int_equal(0, pthread_create(&t, NULL, waiter_main, &later));
  pthread_join(t, NULL);
  assert_mp(MP_EINTR, atomic_load(&later.rc));
  mp_interrupt_clear();
  kind->check(ctx);
  kind->teardown(ctx);
}

/* ThreadSanitizer delivers a signal to its handler only when the thread
 * next passes through one of its interceptors; a thread asleep in a raw
 * system call (the futex waits) with SA_RESTART never does, so there the
 * handlers are left out (the interrupt by a thread is tested). */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifdef UNDER_TSAN
#define INTERRUPTERS 1
#else
#define INTERRUPTERS BY_COUNT
#endif

static void run_all(const wait_kind_t *kind, void *ctx) {
  install_handler(false);
  for (int by = 0; by < INTERRUPTERS; by++) {
    install_handler(by == BY_SIGNAL_RESTART);
    run_one(kind, ctx, (enum interrupter)by);
  }
  signal(SIGUSR1, SIG_DFL);
}

/* ---- queues ----------------------------------------------------------------
 */

struct queue_ctx {
  mp_queue_t *q;
  bool full; /* wait in put on a full queue, else in get on an empty one */
};

static void queue_setup(void *arg) {
  struct queue_ctx *c = arg;
  c->q = mp_queue_new(c->full ? 1 : 0);
  assert_non_null(c->q);
  if (c->full)
    assert_mp_ok(mp_queue_put(c->q, "first", 6, 0));
}

static int queue_wait(void *arg) {
  struct queue_ctx *c = arg;
  if (c->full)
    return mp_queue_put(c->q, "second", 7, MP_FOREVER);
  void *buf;
  size_t len;
  int rc = mp_queue_get(c->q, &buf, &len, MP_FOREVER);
  if (rc == 0)
    mp_free(buf);
  return rc;
}

/* Nothing lost, nothing added: the queue holds what it held. */
static void queue_check(void *arg) {
  struct queue_ctx *c = arg;
  if (!c->full)
    assert_mp_ok(mp_queue_put(c->q, "later", 6, 0));
  char buf[16];
  size_t len;
  assert_mp_ok(mp_queue_get_into(c->q, buf, sizeof buf, &len, 0));
  assert_string_equal(buf, c->full ? "first" : "later");
  assert_mp(MP_EEMPTY, mp_queue_get_into(c->q, buf, sizeof buf, &len, 0));
}

static void queue_teardown(void *arg) {
  struct queue_ctx *c = arg;
  mp_queue_free(c->q);
}

static const wait_kind_t queue_get_kind = {"queue get", queue_setup, queue_wait,
                                           queue_check, queue_teardown};

static void test_queue_get(void **state) {
  (void)state;
  struct queue_ctx c = {.full = false};
  run_all(&queue_get_kind, &c);
}

static void test_queue_put(void **state) {
  (void)state;
  struct queue_ctx c = {.full = true};
  wait_kind_t kind = queue_get_kind;
  kind.name = "queue put";
  run_all(&kind, &c);
}

struct joinable_ctx {
  mp_joinable_queue_t *q;
};

static void joinable_setup(void *arg) {
  struct joinable_ctx *c = arg;
  c->q = mp_joinable_queue_new(0);
  assert_non_null(c->q);
  assert_mp_ok(mp_joinable_queue_put(c->q, "x", 1, 0));
}

static int joinable_wait(void *arg) {
  struct joinable_ctx *c = arg;
  return mp_joinable_queue_join(c->q, MP_FOREVER);
}

static void joinable_check(void *arg) {
  struct joinable_ctx *c = arg;
  void *buf;
  size_t len;
  assert_mp_ok(mp_joinable_queue_get(c->q, &buf, &len, 0));
  mp_free(buf);
  assert_mp_ok(mp_joinable_queue_task_done(c->q));
  assert_mp_ok(mp_joinable_queue_join(c->q, 0));
}

static void joinable_teardown(void *arg) {
  struct joinable_ctx *c = arg;
  mp_joinable_queue_free(c->q);
}

static void test_joinable_queue_join(void **state) {
  (void)state;
  struct joinable_ctx c;
  wait_kind_t kind = {"joinable queue join", joinable_setup, joinable_wait,
                      joinable_check, joinable_teardown};
  run_all(&kind, &c);
}

/* ---- sync ------------------------------------------------------------------
 */

struct sync_ctx {
  mp_lock_t *lock;
  mp_rlock_t *rlock;
  mp_semaphore_t *sem;
  mp_condition_t *cond;
  mp_event_t *event;
  mp_barrier_t *barrier;
  int which;
};

enum { S_LOCK, S_RLOCK, S_SEM, S_COND, S_EVENT, S_BARRIER };

static void sync_setup(void *arg) {
  struct sync_ctx *c = arg;
  memset(c, 0, offsetof(struct sync_ctx, which));
  switch (c->which) {
  case S_LOCK:
    c->lock = mp_lock_new();
    assert_mp_ok(mp_lock_acquire(c->lock, 0));
    break;
  case S_RLOCK: /* held by this thread, the waiter is another */
    c->rlock = mp_rlock_new();
    assert_mp_ok(mp_rlock_acquire(c->rlock, 0));
    break;
  case S_SEM:
    c->sem = mp_semaphore_new(0);
    break;
  case S_COND:
    c->cond = mp_condition_new(NULL);
    break;
  case S_EVENT:
    c->event = mp_event_new();
    break;
  case S_BARRIER:
    c->barrier = mp_barrier_new(2, NULL, MP_FOREVER);
    break;
  }
}

static int sync_wait(void *arg) {
  struct sync_ctx *c = arg;
  switch (c->which) {
  case S_LOCK:
    return mp_lock_acquire(c->lock, MP_FOREVER);
  case S_RLOCK:
    return mp_rlock_acquire(c->rlock, MP_FOREVER);
  case S_SEM:
    return mp_semaphore_acquire(c->sem, MP_FOREVER);
  case S_COND: {
    int rc = mp_condition_acquire(c->cond, MP_FOREVER);
    if (rc == MP_EINTR)
      return rc;
    rc = mp_condition_wait(c->cond, MP_FOREVER);
    /* The lock is held again whatever the wait returned. */
    assert_mp_ok(mp_condition_release(c->cond));
    return rc;
  }
  case S_EVENT:
    return mp_event_wait(c->event, MP_FOREVER);
  case S_BARRIER:
    /* The first interrupted wait broke it (as a timeout does); the reset
     * lets the second wait find it whole. */
    mp_barrier_reset(c->barrier);
    return mp_barrier_wait(c->barrier);
  }
  return 0;
}

static void sync_check(void *arg) {
  struct sync_ctx *c = arg;
  switch (c->which) {
  case S_LOCK:
    assert_mp(MP_ETIMEDOUT, mp_lock_acquire(c->lock, 0));
    assert_mp_ok(mp_lock_release(c->lock));
    assert_mp_ok(mp_lock_acquire(c->lock, 0));
    mp_lock_release(c->lock);
    break;
  case S_RLOCK:
    assert_mp_ok(mp_rlock_release(c->rlock));
    break;
  case S_SEM:
    assert_int_equal(0, mp_semaphore_value(c->sem));
    break;
  case S_BARRIER: /* the interrupted parties are not counted */
    assert_int_equal(0, mp_barrier_n_waiting(c->barrier));
    break;
  default:
    break;
  }
}

static void syncs_teardown(void *arg) {
  struct sync_ctx *c = arg;
  mp_lock_free(c->lock);
  mp_rlock_free(c->rlock);
  mp_semaphore_free(c->sem);
  mp_condition_free(c->cond);
  mp_event_free(c->event);
  mp_barrier_free(c->barrier);
}

static void run_sync(int which, const char *name) {
  struct sync_ctx c = {.which = which};
  wait_kind_t kind = {name, sync_setup, sync_wait, sync_check, syncs_teardown};
  run_all(&kind, &c);
}

static void test_lock(void **state) {
  (void)state;
  run_sync(S_LOCK, "lock acquire");
}
static void test_rlock(void **state) {
  (void)state;
  run_sync(S_RLOCK, "rlock acquire");
}
static void test_semaphore(void **state) {
  (void)state;
  run_sync(S_SEM, "semaphore acquire");
}
static void test_condition(void **state) {
  (void)state;
  run_sync(S_COND, "condition wait");
}
static void test_event(void **state) {
  (void)state;
  run_sync(S_EVENT, "event wait");
}
static void test_barrier(void **state) {
  (void)state;
  run_sync(S_BARRIER, "barrier wait");
}

/* ---- processes -------------------------------------------------------------
 */

struct process_ctx {
  mp_event_t *go;
  mp_process_t *child;
};

static void wait_for_go(void *arg) {
  mp_event_t *go = *(mp_event_t **)arg;
  mp_event_wait(go, JOIN_TIMEOUT);
}

static void process_setup(void *arg) {
  struct process_ctx *c = arg;
  c->go = mp_event_new();
  assert_non_null(c->go);
  c->child = start_child(wait_for_go, &c->go, sizeof c->go);
}

static int process_wait(void *arg) {
  struct process_ctx *c = arg;
  return mp_process_join(c->child, MP_FOREVER);
}

static void process_check(void *arg) {
  struct process_ctx *c = arg;
  assert_true(mp_process_is_alive(c->child));
  mp_event_set(c->go);
  assert_int_equal(0, finish_child(c->child));
}

static void process_teardown(void *arg) {
  struct process_ctx *c = arg;
  mp_event_free(c->go);
}

static void test_process_join(void **state) {
  (void)state;
  struct process_ctx c;
  wait_kind_t kind = {"process join", process_setup, process_wait,
                      process_check, process_teardown};
  run_all(&kind, &c);
}

/* ---- connections -----------------------------------------------------------
 */

struct conn_ctx {
  mp_conn_t *r, *w;
  int how; /* C_RECV, C_POLL, C_WAIT */
};

enum { C_RECV, C_RECV_TORN, C_POLL, C_WAIT };

/* A message of 100 bytes whose header and first half are on the wire
 * before the wait, the rest after the interrupt. */
static const uint8_t torn_header[4] = {0, 0, 0, 100};

static void conn_setup(void *arg) {
  struct conn_ctx *c = arg;
  assert_mp_ok(mp_pipe(&c->r, &c->w, false));
  if (c->how == C_RECV_TORN) {
    uint8_t half[4 + 50];
    memcpy(half, torn_header, 4);
    memset(half + 4, 'a', 50);
    assert_int_equal(sizeof half,
                     write(mp_conn_fileno(c->w), half, sizeof half));
  }
}

static int conn_wait(void *arg) {
  struct conn_ctx *c = arg;
  switch (c->how) {
  case C_RECV:
  case C_RECV_TORN: {
    void *buf;
    size_t len;
    int rc = mp_conn_recv_bytes(c->r, &buf, &len);
    if (rc == 0)
      mp_free(buf);
    return rc;
  }
  case C_POLL:
    return mp_conn_poll(c->r, MP_FOREVER);
  default: {
    mp_waitable_t objs[1] = {{.kind = MP_WAITABLE_CONN, .u.conn = c->r}};
    size_t ready[1];
    return mp_wait(objs, 1, MP_FOREVER, ready);
  }
  }
}

static void conn_check(void *arg) {
  struct conn_ctx *c = arg;
  void *buf;
  size_t len;
  if (c->how == C_RECV_TORN) {
    uint8_t rest[50];
    memset(rest, 'b', sizeof rest);
    assert_int_equal(sizeof rest,
                     write(mp_conn_fileno(c->w), rest, sizeof rest));
    assert_mp_ok(mp_conn_recv_bytes(c->r, &buf, &len));
    assert_int_equal(100, len);
    assert_int_equal('a', ((char *)buf)[49]);
    assert_int_equal('b', ((char *)buf)[50]);
    mp_free(buf);
  }
  assert_mp_ok(mp_conn_send_bytes(c->w, "whole", 5));
  assert_int_equal(1, mp_conn_poll(c->r, 0));
  assert_mp_ok(mp_conn_recv_bytes(c->r, &buf, &len));
  assert_memory_equal("whole", buf, 5);
  mp_free(buf);
}

static void conn_teardown(void *arg) {
  struct conn_ctx *c = arg;
  mp_conn_free(c->r);
  mp_conn_free(c->w);
}

static void run_conn(int how, const char *name) {
  struct conn_ctx c = {.how = how};
  wait_kind_t kind = {name, conn_setup, conn_wait, conn_check, conn_teardown};
  run_all(&kind, &c);
}

static void test_conn_recv(void **state) {
  (void)state;
  run_conn(C_RECV, "connection receive");
}
static void test_conn_recv_not_torn(void **state) {
  (void)state;
  run_conn(C_RECV_TORN, "connection receive of half a message");
}
static void test_conn_poll(void **state) {
  (void)state;
  run_conn(C_POLL, "connection poll");
}
static void test_wait(void **state) {
  (void)state;
  run_conn(C_WAIT, "mp_wait");
}

struct listener_ctx {
  mp_listener_t *l;
};

static void listener_setup(void *arg) {
  struct listener_ctx *c = arg;
  c->l = mp_listener_new(NULL, "key", 3);
  assert_non_null(c->l);
}

static int listener_wait(void *arg) {
  struct listener_ctx *c = arg;
  mp_conn_t *conn;
  return mp_listener_accept(c->l, MP_FOREVER, &conn);
}

static void listener_check(void *arg) {
  struct listener_ctx *c = arg;
  mp_conn_t *conn;
  assert_mp(MP_ETIMEDOUT, mp_listener_accept(c->l, 0, &conn));
}

static void listener_teardown(void *arg) {
  struct listener_ctx *c = arg;
  mp_listener_free(c->l);
}

static void test_listener_accept(void **state) {
  (void)state;
  struct listener_ctx c;
  wait_kind_t kind = {"listener accept", listener_setup, listener_wait,
                      listener_check, listener_teardown};
  run_all(&kind, &c);
}

/* ---- the pool
 * ----------------------------------------------------------------
 */

struct pool_ctx {
  mp_pool_t *pool;
  mp_event_t *go;
  mp_async_t *async;
  mp_iter_t *iter;
  bool use_iter, use_apply;
};

static int blocked_task(const void *in, size_t in_len, void *out,
                        size_t out_cap, size_t *out_len) {
  (void)in_len;
  (void)out_cap;
  mp_event_t *go = *(mp_event_t *const *)in;
  mp_event_wait(go, JOIN_TIMEOUT);
  memcpy(out, "done", 4);
  *out_len = 4;
  return 0;
}

static int blocked_item(const void *in, void *out) {
  (void)in;
  mp_event_wait(*(mp_event_t *const *)in, JOIN_TIMEOUT);
  *(int *)out = 7;
  return 0;
}

static void pool_setup(void *arg) {
  struct pool_ctx *c = arg;
  c->go = mp_event_new();
  assert_non_null(c->go);
  mp_pool_opts_t opts = {.processes = 1};
  c->pool = mp_pool_new(&opts);
  assert_non_null(c->pool);
  if (c->use_iter) {
    c->iter = mp_pool_imap(c->pool, blocked_item, &c->go, sizeof c->go,
                           sizeof(int), 1, 1);
    assert_non_null(c->iter);
  } else if (!c->use_apply) {
    c->async =
        mp_pool_apply_async(c->pool, blocked_task, &c->go, sizeof c->go, NULL);
    assert_non_null(c->async);
  }
}

static int pool_wait(void *arg) {
  struct pool_ctx *c = arg;
  if (c->use_iter) {
    int out;
    return mp_iter_next(c->iter, MP_FOREVER, &out, NULL);
  }
  if (c->use_apply) {
    char out[8];
    size_t len;
    return mp_pool_apply(c->pool, blocked_task, &c->go, sizeof c->go, out,
                         sizeof out, &len);
  }
  const void *result;
  size_t len;
  return mp_async_get(c->async, MP_FOREVER, &result, &len);
}

static void pool_check(void *arg) {
  struct pool_ctx *c = arg;
  mp_event_set(c->go);
  if (c->use_iter) {
    int out = 0;
    assert_int_equal(1, mp_iter_next(c->iter, JOIN_TIMEOUT, &out, NULL));
    assert_int_equal(7, out);
    return;
  }
  if (c->use_apply) { /* the interrupted ones run on; the pool serves */
    char out[8] = {0};
    size_t len = 0;
    assert_mp_ok(mp_pool_apply(c->pool, blocked_task, &c->go, sizeof c->go, out,
                               sizeof out, &len));
    assert_memory_equal("done", out, 4);
    return;
  }
  const void *result;
  size_t len;
  assert_mp_ok(mp_async_get(c->async, JOIN_TIMEOUT, &result, &len));
  assert_memory_equal("done", result, 4);
}

static void pool_teardown(void *arg) {
  struct pool_ctx *c = arg;
  mp_iter_free(c->iter);
  mp_async_free(c->async);
  assert_mp_ok(mp_pool_close(c->pool));
  assert_mp_ok(mp_pool_join(c->pool));
  mp_pool_free(c->pool);
  mp_event_free(c->go);
}

static void test_pool_async_get(void **state) {
  (void)state;
  struct pool_ctx c = {.use_iter = false};
  wait_kind_t kind = {"pool async get", pool_setup, pool_wait, pool_check,
                      pool_teardown};
  run_all(&kind, &c);
}

static void test_pool_apply(void **state) {
  (void)state;
  struct pool_ctx c = {.use_apply = true};
  wait_kind_t kind = {"pool apply", pool_setup, pool_wait, pool_check,
                      pool_teardown};
  run_all(&kind, &c);
}

static void test_pool_iter_next(void **state) {
  (void)state;
  struct pool_ctx c = {.use_iter = true};
  wait_kind_t kind = {"pool iterator next", pool_setup, pool_wait, pool_check,
                      pool_teardown};
  run_all(&kind, &c);
}

/* ---- in a child, under the start method ------------------------------------
 */

struct child_args {
  mp_queue_t *q;
  mp_event_t *ready;
  _Atomic int *rc;
};

static void interrupted_child(void *arg) {
  struct child_args *a = arg;
  install_handler(true);
  mp_event_set(a->ready);
  void *buf;
  size_t len;
  *a->rc = mp_queue_get(a->q, &buf, &len, MP_FOREVER);
}

/* The child's own handler interrupts its get: the queue keeps the message
 * put after. */
static void test_in_child(void **state) {
  (void)state;
#ifdef UNDER_TSAN
  skip(); /* see run_all */
#endif
  struct child_args a = {
      .q = mp_queue_new(0), .ready = mp_event_new(), .rc = shared(64)};
  *a.rc = 1;
  mp_process_t *p = start_child(interrupted_child, &a, sizeof a);
  assert_mp_ok(mp_event_wait(a.ready, JOIN_TIMEOUT));
  /* The handler is installed: whether the get sleeps yet or not, the
   * interrupt ends it. */
  kill(mp_process_pid(p), SIGUSR1);
  assert_int_equal(0, finish_child(p));
  assert_mp(MP_EINTR, *a.rc);
  assert_true(mp_queue_empty(a.q));
  mp_queue_free(a.q);
  mp_event_free(a.ready);
  mp_raw_free(a.rc);
}

/* Uninterrupted waits keep their timeouts; a child starts uninterrupted
 * (a fork child too, forked while its parent was interrupted). */
static void clean_child(void *arg) {
  _Atomic int *rc = *(_Atomic int **)arg;
  mp_event_t *e = mp_event_new();
  *rc = mp_event_wait(e, 0.01);
  mp_event_free(e);
}

static void test_clear_and_children(void **state) {
  (void)state;
  mp_event_t *e = mp_event_new();
  assert_mp(MP_ETIMEDOUT, mp_event_wait(e, 0.01));
  mp_interrupt();
  assert_mp(MP_EINTR, mp_event_wait(e, 0.01));
  assert_mp_ok(mp_event_set(e));
  assert_mp_ok(mp_event_wait(e, MP_FOREVER)); /* need not sleep: succeeds */
  _Atomic int *rc = shared(64);
  *rc = 1;
  mp_process_t *p = start_child(clean_child, &rc, sizeof rc);
  mp_interrupt_clear();
  assert_int_equal(0, finish_child(p));
  assert_mp(MP_ETIMEDOUT, *rc);
  assert_mp_ok(mp_event_clear(e));
  assert_mp(MP_ETIMEDOUT, mp_event_wait(e, 0.01));
  mp_event_free(e);
  mp_raw_free(rc);
}

static void report(void **state) {
  (void)state;
  printf("interrupt latency, worst of all waits [%s]: %.1f us\n", mpt_method(),
         (double)worst_latency_ns / 1000.0);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_queue_get),
      mpt_test(test_queue_put),
      mpt_test(test_joinable_queue_join),
      mpt_test(test_lock),
      mpt_test(test_rlock),
      mpt_test(test_semaphore),
      mpt_test(test_condition),
      mpt_test(test_event),
      mpt_test(test_barrier),
      mpt_test(test_process_join),
      mpt_test(test_conn_recv),
      mpt_test(test_conn_recv_not_torn),
      mpt_test(test_conn_poll),
      mpt_test(test_wait),
      mpt_test(test_listener_accept),
      mpt_test(test_pool_async_get),
      mpt_test(test_pool_iter_next),
      mpt_test(test_pool_apply),
      mpt_test(test_in_child),
      mpt_test(test_clear_and_children),
      mpt_test(report),
  };
  return MPT_RUN(argc, argv, tests);
}

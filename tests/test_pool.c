/* Pool: results and their order (map, starmap, imap, imap_unordered, apply,
 * apply_async), callbacks, AsyncResult's states, and the life cycle
 * (close, terminate, join, free) with its error cases. */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/wait.h>

#include "pool_fixtures.h"
#include "testing.h"

#define N 1000

static int64_t *int_inputs(size_t n) {
  int64_t *in = malloc(n * sizeof *in);
  assert_non_null(in);
  for (size_t i = 0; i < n; i++)
    in[i] = (int64_t)i - 100;
  return in;
}

static void check_doubled(const int64_t *in, const int64_t *out, size_t n) {
  for (size_t i = 0; i < n; i++)
    assert_int_equal(2 * in[i], out[i]);
}

static void test_map_order(void **state) {
  (void)state;
  mp_pool_t *pool = new_pool(2, NULL);
  int64_t *in = int_inputs(N);
  int64_t *out = calloc(N, sizeof *out);
  size_t chunks[] = {0, 1, 7, N, 3 * N};
  for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
    memset(out, 0, N * sizeof *out);
    assert_mp_ok(mp_pool_map(pool, double_it, in, sizeof *in, out, sizeof *out,
                             N, chunks[c]));
    check_doubled(in, out, N);
  }
  /* Arrays already in shared memory are used in place. */
  int64_t *sin = shared(N * sizeof *sin), *sout = shared(N * sizeof *sout);
  memcpy(sin, in, N * sizeof *in);
  assert_mp_ok(
      mp_pool_map(pool, double_it, sin, sizeof *sin, sout, sizeof *sout, N, 0));
  check_doubled(in, sout, N);
  /* Nothing to do is done at once. */
  assert_mp_ok(mp_pool_map(pool, double_it, NULL, 8, NULL, 8, 0, 0));
  assert_mp(MP_EINVAL, mp_pool_map(pool, NULL, in, 8, out, 8, N, 0));
  assert_mp(MP_EINVAL, mp_pool_map(pool, double_it, NULL, 8, out, 8, N, 0));
  mp_raw_free(sin);
  mp_raw_free(sout);
  free(in);
  free(out);
  mp_pool_free(pool);
}

static void test_map_task_errors(void **state) {
  (void)state;
  mp_pool_t *pool = new_pool(2, NULL);
  task_in_t in[64];
  int64_t out[64];
  for (int i = 0; i < 64; i++) {
    in[i] = act(i % 10 == 3 ? ACT_FAIL : ACT_DOUBLE, i % 10 == 3 ? 40 + i : i);
    out[i] = -1;
  }
  assert_mp(MP_ETASK, mp_pool_map(pool, action_map, in, sizeof in[0], out,
                                  sizeof out[0], 64, 5));
  assert_int_equal(43, mp_pool_task_code()); /* the first failing item's */
  for (int i = 0; i < 64; i++)
    assert_int_equal(i % 10 == 3 ? -1 : 2 * i, out[i]);

  /* The same through map_async: every item's error is there. */
  mp_async_t *a = mp_pool_map_async(pool, action_map, in, sizeof in[0], out,
                                    sizeof out[0], 64, 0, NULL);
  assert_non_null(a);
  assert_mp(MP_ETASK, mp_async_get(a, WAIT_TIMEOUT, NULL, NULL));
  assert_int_equal(43, mp_async_task_code(a));
  assert_int_equal(0, mp_async_successful(a));
  for (int i = 0; i < 64; i++) {
    int code = -1;
    assert_mp(i % 10 == 3 ? MP_ETASK : 0, mp_async_item(a, (size_t)i, &code));
    assert_int_equal(i % 10 == 3 ? 40 + i : 0, code);
  }
  assert_mp(MP_EINVAL, mp_async_item(a, 64, NULL));
  mp_async_free(a);
  mp_pool_free(pool);
}

/* starmap is map over structs. */
typedef struct pair {
  int32_t a, b;
} pair_t;

static int multiply(const void *in, void *out) {
  const pair_t *p = in;
  int64_t product = (int64_t)p->a * p->b;
  memcpy(out, &product, sizeof product);
  return 0;
}

static void test_starmap(void **state) {
  (void)state;
  mp_pool_t *pool = new_pool(2, NULL);
  pair_t in[100];
  int64_t out[100];
  for (int i = 0; i < 100; i++)
    in[i] = (pair_t){i, i + 1};
  assert_mp_ok(mp_pool_map(pool, multiply, in, sizeof in[0], out, sizeof out[0],
                           100, 0));
  for (int i = 0; i < 100; i++)
    assert_int_equal((int64_t)i * (i + 1), out[i]);
  mp_pool_free(pool);
}

static void test_imap(void **state) {
  (void)state;
  mp_pool_t *pool = new_pool(2, NULL);
  int64_t *in = int_inputs(N);
  size_t chunks[] = {0, 3};
  for (size_t c = 0; c < 2; c++) {
    mp_iter_t *it = mp_pool_imap(pool, double_it, in, sizeof *in,
                                 sizeof(int64_t), N, chunks[c]);
    assert_non_null(it);
    for (size_t i = 0; i < N; i++) {
      int64_t v;
      mp_iter_item_t item;
      assert_int_equal(1, mp_iter_next(it, WAIT_TIMEOUT, &v, &item));
      assert_int_equal(i, item.index);
      assert_int_equal(0, item.error);
      assert_int_equal(2 * in[i], v);
    }
    assert_int_equal(0, mp_iter_next(it, 0, NULL, NULL));
    mp_iter_free(it);
  }
  free(in);
  mp_pool_free(pool);
}

static void test_imap_unordered(void **state) {
  (void)state;
  mp_pool_t *pool = new_pool(2, NULL);
  int64_t *in = int_inputs(N);
  char seen[N] = {0};
  mp_iter_t *it = mp_pool_imap_unordered(pool, double_it, in, sizeof *in,
                                         sizeof(int64_t), N, 4);
  assert_non_null(it);
  for (size_t i = 0; i < N; i++) {
    int64_t v;
    mp_iter_item_t item;
    assert_int_equal(1, mp_iter_next(it, WAIT_TIMEOUT, &v, &item));
    assert_true(item.index < N);
    assert_int_equal(0, seen[item.index]++);
    assert_int_equal(2 * in[item.index], v);
  }
  assert_int_equal(0, mp_iter_next(it, WAIT_TIMEOUT, NULL, NULL));
  mp_iter_free(it);
  free(in);
  mp_pool_free(pool);
}

/* Results come while another task still runs, in completion order for
 * imap_unordered; imap's next() times out on the blocked item. */
static void test_imap_while_running(void **state) {
  (void)state;
  mp_pool_t *pool = new_pool(2, NULL);
  mp_event_t *go = mp_event_new();
  task_in_t in[10];
  for (int i = 0; i < 10; i++)
    in[i] = act(ACT_DOUBLE, i);
  in[0] = act(ACT_BLOCK, 0);
  in[0].event = go;
  mp_iter_t *un = mp_pool_imap_unordered(pool, action_map, in, sizeof in[0],
                                         sizeof(int64_t), 10, 1);
  mp_iter_t *ordered =
      mp_pool_imap(pool, action_map, in, sizeof in[0], sizeof(int64_t), 10, 1);
  assert_non_null(un);
  assert_non_null(ordered);
  for (int i = 1; i < 10; i++) {
    mp_iter_item_t item;
    int64_t v;
    assert_int_equal(1, mp_iter_next(un, WAIT_TIMEOUT, &v, &item));
    assert_true(item.index >= 1);
    assert_int_equal(2 * (int64_t)item.index, v);
  }
  assert_mp(MP_ETIMEDOUT, mp_iter_next(un, 0.05, NULL, NULL));
  assert_mp(MP_ETIMEDOUT, mp_iter_next(ordered, 0, NULL, NULL));
  mp_event_set(go);
  mp_iter_item_t item;
  assert_int_equal(1, mp_iter_next(un, WAIT_TIMEOUT, NULL, &item));
  assert_int_equal(0, item.index);
  for (int i = 0; i < 10; i++)
    assert_int_equal(1, mp_iter_next(ordered, WAIT_TIMEOUT, NULL, &item));
  assert_int_equal(0, mp_iter_next(ordered, 0, NULL, NULL));
  mp_iter_free(un);
  mp_iter_free(ordered);
  mp_pool_free(pool);
  mp_event_free(go);
}

/* Variable-size bytes: the reversed input, or a request for more room. */
static int reverse(const void *in, size_t in_len, void *out, size_t out_cap,
                   size_t *out_len) {
  *out_len = in_len;
  if (in_len > out_cap)
    return 0; /* says how much it needs */
  for (size_t i = 0; i < in_len; i++)
    ((char *)out)[i] = ((const char *)in)[in_len - 1 - i];
  return 0;
}

static void test_apply(void **state) {
  (void)state;
  mp_pool_t *pool = new_pool(2, NULL);
  char out[16] = {0};
  size_t len = 0;
  assert_mp_ok(mp_pool_apply(pool, reverse, "hello", 5, out, sizeof out, &len));
  assert_int_equal(5, len);
  assert_memory_equal("olleh", out, 5);
  /* Too small a buffer: the task says what it needs. */
  memset(out, 0, sizeof out);
  assert_mp(MP_EOVERFLOW,
            mp_pool_apply(pool, reverse, "hello", 5, out, 3, &len));
  assert_int_equal(5, len);
  assert_int_equal(0, out[0]);
  /* No input, no output. */
  assert_mp_ok(mp_pool_apply(pool, reverse, NULL, 0, NULL, 0, &len));
  assert_int_equal(0, len);
  /* A task's own code. */
  task_in_t t = act(ACT_FAIL, 99);
  assert_mp(MP_ETASK, mp_pool_apply(pool, action_apply, &t, sizeof t, out,
                                    sizeof out, &len));
  assert_int_equal(99, mp_pool_task_code());
  assert_mp(MP_EINVAL, mp_pool_apply(pool, NULL, "x", 1, out, 1, &len));
  assert_mp(MP_EINVAL, mp_pool_apply(pool, reverse, "x", 1, NULL, 1, &len));
  mp_pool_free(pool);
}

typedef struct counts {
  _Atomic int ok, failed;
  _Atomic int64_t sum;
  _Atomic int last_err, last_code;
} counts_t;

static void on_result(void *arg, const void *result, size_t len) {
  counts_t *c = arg;
  for (size_t i = 0; i + sizeof(int64_t) <= len; i += sizeof(int64_t)) {
    int64_t v;
    memcpy(&v, (const char *)result + i, sizeof v);
    atomic_fetch_add(&c->sum, v);
  }
  atomic_fetch_add(&c->ok, 1);
}

static void on_error(void *arg, int err, int task_code) {
  counts_t *c = arg;
  atomic_store(&c->last_err, err);
  atomic_store(&c->last_code, task_code);
  atomic_fetch_add(&c->failed, 1);
}

static void test_apply_async_callbacks(void **state) {
  (void)state;
  mp_pool_t *pool = new_pool(2, NULL);
  counts_t c = {0};
  mp_async_opts_t opts = {
      .callback = on_result, .error_callback = on_error, .arg = &c};
  enum { K = 40 };
  mp_async_t *a[K];
  int64_t expected = 0;
  for (int i = 0; i < K; i++) {
    task_in_t t = act(i % 8 == 5 ? ACT_FAIL : ACT_DOUBLE, i);
    expected += i % 8 == 5 ? 0 : 2 * i;
    a[i] = mp_pool_apply_async(pool, action_apply, &t, sizeof t, &opts);
    assert_non_null(a[i]);
  }
  for (int i = 0; i < K; i++) {
    const void *result;
    size_t len;
    int rc = mp_async_get(a[i], WAIT_TIMEOUT, &result, &len);
    if (i % 8 == 5) {
      assert_mp(MP_ETASK, rc);
      assert_int_equal(i, mp_async_task_code(a[i]));
      assert_null(result);
    } else {
      assert_mp_ok(rc);
      assert_int_equal(sizeof(int64_t), len);
      int64_t v;
      memcpy(&v, result, sizeof v);
      assert_int_equal(2 * i, v);
      assert_int_equal(1, mp_async_successful(a[i]));
    }
  }
  /* get() returns after the callback ran: the counts are final here. */
  assert_int_equal(K - K / 8, c.ok);
  assert_int_equal(K / 8, c.failed);
  assert_int_equal(expected, c.sum);
  assert_mp(MP_ETASK, c.last_err);
  /* Handles freed before their result: the callbacks still run, once. */
  for (int i = 0; i < K; i++) {
    mp_async_free(a[i]);
    task_in_t t = act(ACT_DOUBLE, 1);
    mp_async_free(mp_pool_apply_async(pool, action_apply, &t, sizeof t, &opts));
  }
  /* map_async's callback gets the whole output array. */
  int64_t in[10], out[10];
  for (int i = 0; i < 10; i++)
    in[i] = i;
  mp_async_t *m =
      mp_pool_map_async(pool, double_it, in, 8, out, 8, 10, 0, &opts);
  assert_non_null(m);
  assert_mp_ok(mp_pool_close(pool));
  assert_mp_ok(mp_pool_join(pool));
  assert_int_equal(2 * K - K / 8 + 1, c.ok);
  assert_int_equal(K / 8, c.failed);
  assert_int_equal(expected + 2 * K + 90, c.sum);
  assert_true(mp_async_ready(m));
  for (int i = 0; i < 10; i++)
    assert_int_equal(2 * i, out[i]);
  mp_async_free(m);
  mp_pool_free(pool);
}

static void test_async_states(void **state) {
  (void)state;
  mp_pool_t *pool = new_pool(2, NULL);
  mp_event_t *go = mp_event_new();
  task_in_t t = act(ACT_BLOCK, 21);
  t.event = go;
  mp_async_t *a = mp_pool_apply_async(pool, action_apply, &t, sizeof t, NULL);
  assert_non_null(a);
  assert_false(mp_async_ready(a));
  assert_mp(MP_ESTATE, mp_async_successful(a));
  assert_mp(MP_ESTATE, mp_async_item(a, 0, NULL));
  assert_int_equal(0, mp_async_task_code(a));
  assert_mp(MP_ETIMEDOUT, mp_async_wait(a, 0));
  assert_mp(MP_ETIMEDOUT, mp_async_wait(a, 0.02));
  const void *result = &t;
  assert_mp(MP_ETIMEDOUT, mp_async_get(a, 0.02, &result, NULL));
  mp_event_set(go);
  assert_mp_ok(mp_async_wait(a, WAIT_TIMEOUT));
  assert_true(mp_async_ready(a));
  assert_int_equal(1, mp_async_successful(a));
  size_t len;
  assert_mp_ok(mp_async_get(a, 0, &result, &len));
  assert_int_equal(42, *(const int64_t *)result);
  mp_async_free(a);
  mp_async_free(NULL);
  mp_pool_free(pool);
  mp_event_free(go);
}

static void test_close_join(void **state) {
  (void)state;
  mp_pool_t *pool = new_pool(2, NULL);
  assert_int_equal(2, mp_pool_processes(pool));
  assert_mp(MP_ESTATE, mp_pool_join(pool)); /* "Pool is still running" */
  int64_t in[100], out[100];
  for (int i = 0; i < 100; i++)
    in[i] = i;
  mp_async_t *a =
      mp_pool_map_async(pool, double_it, in, 8, out, 8, 100, 1, NULL);
  assert_non_null(a);
  assert_mp_ok(mp_pool_close(pool));
  assert_mp_ok(mp_pool_close(pool));
  /* Submitting to a closed pool. */
  assert_mp(MP_ESTATE, mp_pool_map(pool, double_it, in, 8, out, 8, 100, 0));
  assert_mp(MP_ESTATE, mp_pool_map(pool, double_it, in, 8, out, 8, 0, 0));
  char buf[8];
  assert_mp(MP_ESTATE, mp_pool_apply(pool, reverse, "ab", 2, buf, 8, NULL));
  errno = 0;
  assert_null(mp_pool_apply_async(pool, reverse, "ab", 2, NULL));
  assert_mp(MP_ESTATE, -errno);
  assert_null(mp_pool_imap(pool, double_it, in, 8, 8, 100, 0));
  assert_null(mp_pool_map_async(pool, double_it, in, 8, out, 8, 100, 0, NULL));
  /* The pending work completes, then the workers exit. */
  assert_mp_ok(mp_pool_join(pool));
  assert_mp_ok(mp_pool_join(pool));
  assert_int_equal(0, mp_pool_workers(pool, NULL, 0));
  assert_true(mp_async_ready(a));
  assert_mp_ok(mp_async_get(a, 0, NULL, NULL));
  for (int i = 0; i < 100; i++)
    assert_int_equal(2 * i, out[i]);
  assert_mp_ok(mp_pool_terminate(pool)); /* after join: nothing to do */
  mp_pool_free(pool);
  mp_async_free(a); /* a handle outlives its pool */
}

static void test_terminate(void **state) {
  (void)state;
  mp_pool_t *pool = new_pool(2, NULL);
  mp_event_t *never = mp_event_new();
  counts_t c = {0};
  mp_async_opts_t opts = {
      .callback = on_result, .error_callback = on_error, .arg = &c};
  task_in_t t = act(ACT_BLOCK, 1);
  t.event = never;
  mp_async_t *a[4];
  for (int i = 0; i < 4; i++)
    assert_non_null(
        a[i] = mp_pool_apply_async(pool, action_apply, &t, sizeof t, &opts));
  mp_iter_t *it = mp_pool_imap(pool, double_it, &t, 8, 8, 1, 0);
  assert_non_null(it);
  assert_mp_ok(mp_pool_terminate(pool));
  for (int i = 0; i < 4; i++) {
    assert_mp(MP_ECLOSED, mp_async_get(a[i], WAIT_TIMEOUT, NULL, NULL));
    assert_int_equal(0, mp_async_successful(a[i]));
    mp_async_free(a[i]);
  }
  mp_iter_item_t item;
  assert_int_equal(1, mp_iter_next(it, WAIT_TIMEOUT, NULL, &item));
  assert_mp(MP_ECLOSED, item.error);
  mp_iter_free(it);
  assert_int_equal(4, c.failed);
  assert_int_equal(0, c.ok);
  assert_mp(MP_ECLOSED, c.last_err);
  assert_int_equal(0, mp_pool_workers(pool, NULL, 0));
  assert_mp(MP_ESTATE, mp_pool_map(pool, double_it, &t, 8, &t, 8, 1, 0));
  assert_mp_ok(mp_pool_close(pool)); /* does nothing after terminate */
  assert_mp_ok(mp_pool_terminate(pool));
  assert_mp_ok(mp_pool_join(pool));
  mp_pool_free(pool);
  mp_event_free(never);
}

/* A pool freed while busy, never closed: its workers are gone, none is
 * left behind, and a blocked map in another thread returns. */
struct map_thread {
  mp_pool_t *pool;
  task_in_t in[4];
  int64_t out[4];
  int rc;
};

static void *map_in_thread(void *arg) {
  struct map_thread *m = arg;
  m->rc = mp_pool_map(m->pool, action_map, m->in, sizeof m->in[0], m->out,
                      sizeof m->out[0], 4, 1);
  return NULL;
}

static void test_free_without_close(void **state) {
  (void)state;
  if (!mpt_have_pidfd())
    skip(); /* the workers' end is watched through pidfds here */
  mp_pool_t *pool = new_pool(2, NULL);
  pid_t pids[2];
  assert_int_equal(2, mp_pool_workers(pool, pids, 2));
  int pidfds[2];
  for (int i = 0; i < 2; i++)
    assert_true((pidfds[i] = open_pidfd(pids[i])) >= 0);
  mp_event_t *never = mp_event_new();
  _Atomic int64_t *running = shared(sizeof *running);
  struct map_thread m = {.pool = pool};
  for (int i = 0; i < 4; i++) {
    m.in[i] = act(ACT_BLOCK, i);
    m.in[i].event = never;
    m.in[i].counter = running;
  }
  pthread_t thread;
  assert_int_equal(0, pthread_create(&thread, NULL, map_in_thread, &m));
  wait_count(running, 2);
  assert_mp_ok(mp_pool_terminate(pool));
  pthread_join(thread, NULL);
  assert_mp(MP_ECLOSED, m.rc);
  mp_pool_free(pool);
  for (int i = 0; i < 2; i++) {
    struct pollfd p = {.fd = pidfds[i], .events = POLLIN};
    assert_int_equal(1, poll(&p, 1, 0)); /* the worker has ended */
    close(pidfds[i]);
  }
  /* The same without terminate: free alone. */
  pool = new_pool(2, NULL);
  assert_int_equal(2, mp_pool_workers(pool, pids, 2));
  for (int i = 0; i < 2; i++)
    assert_true((pidfds[i] = open_pidfd(pids[i])) >= 0);
  task_in_t t = act(ACT_BLOCK, 0);
  t.event = never;
  mp_async_t *a = mp_pool_apply_async(pool, action_apply, &t, sizeof t, NULL);
  mp_pool_free(pool);
  for (int i = 0; i < 2; i++) {
    struct pollfd p = {.fd = pidfds[i], .events = POLLIN};
    assert_int_equal(1, poll(&p, 1, 0));
    close(pidfds[i]);
  }
  assert_mp(MP_ECLOSED, mp_async_get(a, 0, NULL, NULL));
  mp_async_free(a);
  mp_event_free(never);
  mp_raw_free(running);
}

/* The pool thread runs the callbacks; blocking calls there are refused. */
struct reentry {
  mp_pool_t *pool;
  _Atomic int map_rc, join_rc, terminate_rc, close_rc;
};

static void reenter(void *arg, const void *result, size_t len) {
  (void)result;
  (void)len;
  struct reentry *r = arg;
  int64_t x = 1, y;
  r->map_rc = mp_pool_map(r->pool, double_it, &x, 8, &y, 8, 1, 0);
  r->join_rc = mp_pool_join(r->pool);
  r->terminate_rc = mp_pool_terminate(r->pool);
  r->close_rc = mp_pool_close(r->pool);
}

static void test_callback_reentry(void **state) {
  (void)state;
  mp_pool_t *pool = new_pool(1, NULL);
  struct reentry r = {.pool = pool, .close_rc = 1};
  mp_async_opts_t opts = {.callback = reenter, .arg = &r};
  mp_async_t *a = mp_pool_apply_async(pool, reverse, "ab", 2, &opts);
  assert_mp_ok(mp_async_wait(a, WAIT_TIMEOUT));
  assert_mp(MP_ESTATE, r.map_rc);
  assert_mp(MP_ESTATE, r.join_rc);
  assert_mp(MP_ESTATE, r.terminate_rc);
  assert_mp_ok(r.close_rc);
  assert_mp_ok(mp_pool_join(pool)); /* closed by the callback */
  mp_async_free(a);
  mp_pool_free(pool);
}

static void test_bad_options(void **state) {
  (void)state;
  mp_pool_opts_t opts = {.processes = -1};
  errno = 0;
  assert_null(mp_pool_new(&opts));
  assert_int_equal(EINVAL, errno);
  opts = (mp_pool_opts_t){.initarg_size = 4};
  assert_null(mp_pool_new(&opts));
  assert_int_equal(EINVAL, errno);
  /* Defaults: one worker per CPU. */
  mp_pool_t *pool = mp_pool_new(NULL);
  assert_non_null(pool);
  assert_int_equal(mp_cpu_count(), mp_pool_processes(pool));
  assert_mp_ok(mp_pool_error(pool, NULL));
  mp_pool_free(pool);
}

/* Everything a pool puts in shared memory goes back when it and its handles
 * are freed: jobs, their arrays, the units of requeued chunks, the blocks
 * kept for reuse, the pool's own state. */

static void test_no_shared_memory_left(void **state) {
  (void)state;
  mp_pool_free(new_pool(1, NULL)); /* what the first pool creates for good */
  uint64_t before = mp__arena_in_use();
  mp_pool_t *pool = new_pool(2, NULL);
  int64_t *in = int_inputs(N), *out = calloc(N, sizeof *out);
  assert_mp_ok(mp_pool_map(pool, double_it, in, 8, out, 8, N, 0));
  task_in_t crash[8];
  int64_t crash_out[8];
  for (int i = 0; i < 8; i++)
    crash[i] = act(i == 1 ? ACT_SEGV : ACT_DOUBLE, i);
  assert_mp(MP_EWORKER, mp_pool_map(pool, action_map, crash, sizeof crash[0],
                                    crash_out, 8, 8, 4));
  mp_iter_t *it = mp_pool_imap_unordered(pool, double_it, in, 8, 8, N, 7);
  assert_int_equal(1, mp_iter_next(it, WAIT_TIMEOUT, NULL, NULL));
  mp_iter_free(it); /* the rest still runs, then goes */
  counts_t c = {0};
  mp_async_opts_t opts = {.callback = on_result, .arg = &c};
  mp_async_free(mp_pool_apply_async(pool, reverse, "abc", 3, &opts));
  mp_async_t *kept =
      mp_pool_map_async(pool, double_it, in, 8, out, 8, N, 3, NULL);
  assert_mp_ok(mp_pool_close(pool));
  assert_mp_ok(mp_pool_join(pool));
  mp_pool_free(pool);
  assert_true(mp__arena_in_use() > before); /* kept's job */
  mp_async_free(kept);
  assert_int_equal(before, mp__arena_in_use());
  free(in);
  free(out);
}

/* The example prints what Python's version prints, under each method (the
 * example uses the default one, which the environment sets). */
static void test_pool_demo(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/examples/pool_demo", MPROC_BUILD_DIR);
  char *argv[] = {path, NULL};
  char *out = NULL;
  int status = 0;
  assert_mp_ok(mpt_run_command(argv, 60, &out, &status));
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const char *expected[] = {
      "map: 0 1 4 9 16 25 36 49 64 81",
      "progress 1/6",
      "progress 6/6",
      "imap_unordered: sum of squares 55",
      "apply_async callback: 49",
      "starmap: 1024 81 1000",
  };
  int previous = -1;
  for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
    int at = mpt_line_index(out, expected[i]);
    assert_true(at > previous);
    previous = at;
  }
  assert_int_equal(9, previous); /* and nothing else before */
  free(out);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_map_order),
      mpt_test(test_map_task_errors),
      mpt_test(test_starmap),
      mpt_test(test_imap),
      mpt_test(test_imap_unordered),
      mpt_test(test_imap_while_running),
      mpt_test(test_apply),
      mpt_test(test_apply_async_callbacks),
      mpt_test(test_async_states),
      mpt_test(test_close_join),
      mpt_test(test_terminate),
      mpt_test(test_free_without_close),
      mpt_test(test_callback_reentry),
      mpt_test(test_bad_options),
      mpt_test(test_no_shared_memory_left),
      mpt_test(test_pool_demo),
  };
  return MPT_RUN(argc, argv, tests);
}

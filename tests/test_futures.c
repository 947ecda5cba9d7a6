/* Futures: the first of several results (concurrent.futures.wait
 * FIRST_COMPLETED), results as they complete (as_completed), and results
 * in mp_wait beside connections, for apply_async and map_async, with and
 * without callbacks. Tasks wait for events the test sets, so which result
 * is ready first is decided by the test, never by timing. */
#include <poll.h>

#include "pool_fixtures.h"

#define N_TASKS 3

typedef struct futures {
  mp_pool_t *pool;
  mp_event_t *events[N_TASKS];
  task_in_t in[N_TASKS];
  mp_async_t *a[N_TASKS];
} futures_t;

static void callback_counts(void *arg, const void *result, size_t len) {
  (void)result;
  (void)len;
  atomic_fetch_add((_Atomic int *)arg, 1);
}

/* N_TASKS apply_async tasks, each blocked on its own event. */
static void start_blocked(futures_t *f, const mp_async_opts_t *opts) {
  f->pool = new_pool(N_TASKS, NULL);
  for (int i = 0; i < N_TASKS; i++) {
    f->events[i] = mp_event_new();
    assert_non_null(f->events[i]);
    f->in[i] = act(ACT_BLOCK, 10 + i);
    f->in[i].event = f->events[i];
    f->a[i] = mp_pool_apply_async(f->pool, action_apply, &f->in[i],
                                  sizeof f->in[i], opts);
    assert_non_null(f->a[i]);
  }
}

static void finish_futures(futures_t *f) {
  for (int i = 0; i < N_TASKS; i++) {
    mp_event_set(f->events[i]);
    mp_async_free(f->a[i]);
  }
  assert_mp_ok(mp_pool_close(f->pool));
  assert_mp_ok(mp_pool_join(f->pool));
  mp_pool_free(f->pool);
  for (int i = 0; i < N_TASKS; i++)
    mp_event_free(f->events[i]);
}

static int64_t value_of(mp_async_t *a) {
  const void *result;
  size_t len;
  assert_mp_ok(mp_async_get(a, WAIT_TIMEOUT, &result, &len));
  assert_int_equal(sizeof(int64_t), len);
  int64_t v;
  memcpy(&v, result, sizeof v);
  return v;
}

/* as_completed: released in the order 2, 0, 1, the results come so. */
static void as_completed(futures_t *f) {
  static const int order[N_TASKS] = {2, 0, 1};
  mp_async_t *left[N_TASKS];
  int index_of[N_TASKS];
  size_t n = N_TASKS;
  for (int i = 0; i < N_TASKS; i++) {
    left[i] = f->a[i];
    index_of[i] = i;
  }
  size_t at;
  assert_mp(MP_ETIMEDOUT, mp_async_wait_any(left, n, 0, &at));
  assert_mp(MP_ETIMEDOUT, mp_async_wait_any(left, n, 0.01, &at));
  for (int k = 0; k < N_TASKS; k++) {
    mp_event_set(f->events[order[k]]);
    assert_mp_ok(mp_async_wait_any(left, n, WAIT_TIMEOUT, &at));
    assert_int_equal(order[k], index_of[at]);
    assert_int_equal(2 * (10 + order[k]), value_of(left[at]));
    left[at] = left[n - 1];
    index_of[at] = index_of[n - 1];
    n--;
  }
}

static void test_wait_any_and_as_completed(void **state) {
  (void)state;
  futures_t f;
  start_blocked(&f, NULL);
  as_completed(&f);
  /* Every one ready: the lowest index. */
  size_t at = 99;
  assert_mp_ok(mp_async_wait_any(f.a, N_TASKS, 0, &at));
  assert_int_equal(0, at);
  finish_futures(&f);
}

/* With callbacks, ready means the callback ran: so does the fd. */
static void test_with_callbacks(void **state) {
  (void)state;
  _Atomic int *calls = shared(64);
  mp_async_opts_t opts = {.callback = callback_counts, .arg = (void *)calls};
  futures_t f;
  start_blocked(&f, &opts);
  as_completed(&f);
  assert_int_equal(N_TASKS, atomic_load(calls));
  finish_futures(&f);
  mp_raw_free((void *)calls);
}

/* The fd in mp_wait with a connection; a result ready before its fd was
 * made has it readable at once; a map_async's too. */
static void test_fd_in_mp_wait(void **state) {
  (void)state;
  futures_t f;
  start_blocked(&f, NULL);
  mp_conn_t *r, *w;
  assert_mp_ok(mp_pipe(&r, &w, false));
  int fd = mp_async_fd(f.a[1]);
  assert_true(fd >= 0);
  assert_int_equal(fd, mp_async_fd(f.a[1])); /* the same one */
  mp_waitable_t objs[2] = {mp_waitable_conn(r), mp_waitable_fd(fd)};
  size_t ready[2];
  assert_int_equal(0, mp_wait(objs, 2, 0, ready));
  mp_event_set(f.events[1]);
  assert_int_equal(1, mp_wait(objs, 2, WAIT_TIMEOUT, ready));
  assert_int_equal(1, ready[0]);
  assert_true(mp_async_ready(f.a[1]));
  assert_int_equal(22, value_of(f.a[1]));

  /* Ready before the fd exists. */
  mp_event_set(f.events[0]);
  assert_mp_ok(mp_async_wait(f.a[0], WAIT_TIMEOUT));
  struct pollfd p = {.fd = mp_async_fd(f.a[0]), .events = POLLIN};
  assert_int_equal(1, poll(&p, 1, 0));

  /* map_async. */
  int64_t in[4] = {1, 2, 3, 4}, out[4] = {0};
  mp_async_t *m = mp_pool_map_async(f.pool, double_it, in, sizeof in[0], out,
                                    sizeof out[0], 4, 1, NULL);
  assert_non_null(m);
  mp_waitable_t mo = mp_waitable_fd(mp_async_fd(m));
  assert_int_equal(1, mp_wait(&mo, 1, WAIT_TIMEOUT, NULL));
  assert_true(mp_async_ready(m));
  assert_int_equal(8, out[3]);
  mp_async_free(m);

  /* Freed before it is ready: the fd goes with it, nothing leaks. */
  assert_true(mp_async_fd(f.a[2]) >= 0);
  mp_conn_free(r);
  mp_conn_free(w);
  finish_futures(&f);
}

static void test_errors(void **state) {
  (void)state;
  futures_t f;
  start_blocked(&f, NULL);
  size_t at;
  assert_mp(MP_EINVAL, mp_async_fd(NULL));
  assert_mp(MP_EINVAL, mp_async_wait_any(NULL, 1, 0, &at));
  assert_mp(MP_EINVAL, mp_async_wait_any(f.a, 0, 0, &at));
  mp_async_t *with_null[2] = {f.a[0], NULL};
  assert_mp(MP_EINVAL, mp_async_wait_any(with_null, 2, 0, &at));
  /* A failing task is a completed one, as in concurrent.futures (a worker
   * is freed for it first: all of them wait on the events). */
  mp_event_set(f.events[1]);
  task_in_t fail = act(ACT_FAIL, 5);
  mp_async_t *failed =
      mp_pool_apply_async(f.pool, action_apply, &fail, sizeof fail, NULL);
  assert_non_null(failed);
  mp_async_t *both[2] = {f.a[0], failed};
  assert_mp_ok(mp_async_wait_any(both, 2, WAIT_TIMEOUT, &at));
  assert_int_equal(1, at);
  assert_mp(MP_ETASK, mp_async_get(failed, 0, NULL, NULL));
  mp_async_free(failed);
  finish_futures(&f);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_wait_any_and_as_completed),
      mpt_test(test_with_callbacks),
      mpt_test(test_fd_in_mp_wait),
      mpt_test(test_errors),
  };
  return MPT_RUN(argc, argv, tests);
}

/* Pool failures are results, not hangs: a task that segfaults or calls
 * exit(), workers killed from outside (once, repeatedly, while idle), a
 * task over task_timeout, an initializer that fails; and workers replaced
 * after maxtasksperchild. */
#include <stdio.h>

#include "pool_fixtures.h"
#include "testing.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
/* Workers here end with exit() inside a task or initializer; LeakSanitizer
 * would check the forked image of the parent there (and change the exit
 * status). The parent checks its own leaks at the end of main instead. */
const char *__lsan_default_options(void);
const char *__lsan_default_options(void) {
  return "leak_check_at_exit=0";
}
#define CHECK_LEAKS() __lsan_do_leak_check()
#else
#define CHECK_LEAKS() ((void)0)
#endif

/* Runs a map_async of n items and returns it once ready. */
static mp_async_t *map_ready(mp_pool_t *pool, const task_in_t *in, int64_t *out,
                             size_t n, size_t chunksize) {
  mp_async_t *a = mp_pool_map_async(pool, action_map, in, sizeof in[0], out,
                                    sizeof out[0], n, chunksize, NULL);
  assert_non_null(a);
  assert_mp_ok(mp_async_wait(a, WAIT_TIMEOUT));
  return a;
}

/* Every item succeeded (with its output) except those in `failing`, which
 * failed with `err`. */
static void check_items(mp_async_t *a, const task_in_t *in, const int64_t *out,
                        size_t n, int err, const size_t *failing,
                        size_t nfailing) {
  for (size_t i = 0; i < n; i++) {
    bool fails = false;
    for (size_t k = 0; k < nfailing; k++)
      fails |= failing[k] == i;
    assert_mp(fails ? err : 0, mp_async_item(a, i, NULL));
    if (!fails)
      assert_int_equal(2 * in[i].value, out[i]);
  }
}

/* The pool's workers: n of them, none of whose pids is in before[] (n pids
 * too). */
typedef struct worker_goal {
  mp_pool_t *pool;
  size_t n;
  const pid_t *before; /* NULL: any pids */
} worker_goal_t;

static bool all_new(const pid_t *now, size_t n, const pid_t *before);

static bool workers_reached(void *arg) {
  worker_goal_t *g = arg;
  pid_t now[8];
  size_t count = mp_pool_workers(g->pool, now, 8);
  return count == g->n && (!g->before || all_new(now, g->n, g->before));
}

/* Replacements are started by the pool thread: waits for them. */
static void wait_workers(mp_pool_t *pool, size_t n, const pid_t *before) {
  assert_true(mpt_wait_until(workers_reached, &(worker_goal_t){pool, n, before},
                             WAIT_TIMEOUT));
}

static void check_workers(mp_pool_t *pool, size_t n) {
  wait_workers(pool, n, NULL);
}

/* The pool works normally afterwards. */
static void check_healthy(mp_pool_t *pool) {
  int64_t in[50], out[50];
  for (int i = 0; i < 50; i++)
    in[i] = i;
  assert_mp_ok(mp_pool_map(pool, double_it, in, 8, out, 8, 50, 1));
  for (int i = 0; i < 50; i++)
    assert_int_equal(2 * i, out[i]);
  check_workers(pool, (size_t)mp_pool_processes(pool));
}

static void test_task_segfaults(void **state) {
  (void)state;
  mp_pool_t *pool = new_pool(2, NULL);
  enum { N = 40 };
  task_in_t in[N];
  int64_t out[N];
  for (int i = 0; i < N; i++)
    in[i] = act(ACT_DOUBLE, i);
  in[7] = act(ACT_SEGV, 7);
  in[30] = act(ACT_SEGV, 30);
  for (size_t chunk = 1; chunk <= 4; chunk += 3) {
    memset(out, 0, sizeof out);
    assert_mp(MP_EWORKER, mp_pool_map(pool, action_map, in, sizeof in[0], out,
                                      sizeof out[0], N, chunk));
    mp_async_t *a = map_ready(pool, in, out, N, chunk);
    size_t failing[] = {7, 30};
    check_items(a, in, out, N, MP_EWORKER, failing, 2);
    mp_async_free(a);
  }
  check_healthy(pool);
  mp_pool_free(pool);
}

static void test_task_exits(void **state) {
  (void)state;
  mp_pool_t *pool = new_pool(2, NULL);
  task_in_t t = act(ACT_EXIT, 3);
  int64_t out;
  assert_mp(MP_EWORKER,
            mp_pool_apply(pool, action_apply, &t, sizeof t, &out, 8, NULL));
  t = act(ACT_DOUBLE, 4);
  assert_mp_ok(mp_pool_apply(pool, action_apply, &t, sizeof t, &out, 8, NULL));
  assert_int_equal(8, out);
  /* exit(0) inside a task is a death too. */
  t = act(ACT_EXIT, 0);
  assert_mp(MP_EWORKER,
            mp_pool_apply(pool, action_apply, &t, sizeof t, &out, 8, NULL));
  check_healthy(pool);
  mp_pool_free(pool);
}

/* Kills `kills` workers at random moments of a large map: each kill fails
 * at most the one item its worker was running, everything else completes
 * with its output. */
static void run_random_kills(size_t chunksize, int kills) {
  mp_pool_t *pool = new_pool(2, NULL);
  enum { N = 20000 };
  task_in_t *in = malloc(N * sizeof *in);
  int64_t *out = calloc(N, sizeof *out);
  _Atomic int64_t *counter = shared(sizeof *counter);
  for (int i = 0; i < N; i++) {
    in[i] = act(ACT_COUNT, i);
    in[i].counter = counter;
  }
  mp_async_t *a = mp_pool_map_async(pool, action_map, in, sizeof in[0], out,
                                    sizeof out[0], N, chunksize, NULL);
  assert_non_null(a);
  srand((unsigned)getpid());
  for (int k = 0; k < kills; k++) {
    wait_count(counter, (int64_t)N * (k + 1) / (kills + 2));
    pid_t pids[2];
    size_t live = mp_pool_workers(pool, pids, 2);
    if (live > 0)
      kill(pids[rand() % (live < 2 ? live : 2)], SIGKILL);
  }
  int rc = mp_async_get(a, WAIT_TIMEOUT, NULL, NULL);
  assert_true(rc == 0 || rc == MP_EWORKER);
  int failed = 0;
  for (size_t i = 0; i < N; i++) {
    int err = mp_async_item(a, i, NULL);
    if (err == 0) {
      assert_int_equal(2 * in[i].value, out[i]);
    } else {
      assert_mp(MP_EWORKER, err);
      failed++;
    }
  }
  assert_true(failed <= kills);
  assert_int_equal(rc == 0, failed == 0);
  mp_async_free(a);
  check_healthy(pool);
  mp_pool_free(pool);
  mp_raw_free(counter);
  free(in);
  free(out);
}

static void test_random_kill_chunked(void **state) {
  (void)state;
  run_random_kills(0, 1);
}

static void test_random_kill_chunksize_1(void **state) {
  (void)state;
  run_random_kills(1, 1);
}

/* Many kills while workers take items one by one: some land inside the
 * queue lock, whose next holder repairs what the dead one left. */
static void test_repeated_kills(void **state) {
  (void)state;
  run_random_kills(1, 8);
}

/* None of the n pids in now[] is one of the n in before[]. */
static bool all_new(const pid_t *now, size_t n, const pid_t *before) {
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < n; k++)
      if (now[i] == before[k])
        return false;
  return true;
}

static void test_idle_workers_killed(void **state) {
  (void)state;
  mp_pool_t *pool = new_pool(2, NULL);
  pid_t before[2];
  assert_int_equal(2, mp_pool_workers(pool, before, 2));
  kill(before[0], SIGKILL);
  kill(before[1], SIGTERM);
  wait_workers(pool, 2, before);
  check_healthy(pool);
  assert_mp_ok(mp_pool_error(pool, NULL));
  mp_pool_free(pool);
}

static void test_task_timeout(void **state) {
  (void)state;
  mp_pool_opts_t opts = {.task_timeout = 0.2};
  mp_pool_t *pool = new_pool(2, &opts);
  enum { N = 12 };
  task_in_t in[N];
  int64_t out[N];
  for (int i = 0; i < N; i++)
    in[i] = act(ACT_DOUBLE, i);
  in[2] = act(ACT_HANG, 2);
  assert_mp(MP_ETIMEDOUT, mp_pool_map(pool, action_map, in, sizeof in[0], out,
                                      sizeof out[0], N, 2));
  mp_async_t *a = map_ready(pool, in, out, N, 2);
  size_t failing[] = {2};
  check_items(a, in, out, N, MP_ETIMEDOUT, failing, 1);
  mp_async_free(a);
  /* apply_async: get() gives MP_ETIMEDOUT once ready. */
  task_in_t t = act(ACT_HANG, 0);
  a = mp_pool_apply_async(pool, action_apply, &t, sizeof t, NULL);
  assert_non_null(a);
  assert_mp_ok(mp_async_wait(a, WAIT_TIMEOUT));
  assert_mp(MP_ETIMEDOUT, mp_async_get(a, 0, NULL, NULL));
  assert_true(mp_async_ready(a));
  mp_async_free(a);
  check_healthy(pool);
  mp_pool_free(pool);
}

/* ---- Initializers -------------------------------------------------------- */

static int64_t init_value; /* set by the initializer, in each worker */

static void init_worker(void *arg) {
  memcpy(&init_value, arg, sizeof init_value);
}

static int read_init(const void *in, void *out) {
  (void)in;
  memcpy(out, &init_value, sizeof init_value);
  return 0;
}

/* Counts its runs in shared memory (the pointer is the initarg). */
static void init_count(void *arg) {
  _Atomic int64_t *runs;
  memcpy(&runs, arg, sizeof runs);
  atomic_fetch_add(runs, 1);
}

static void init_exits(void *arg) {
  exit(*(const int *)arg);
}

static void init_crashes(void *arg) {
  (void)arg;
  signal(SIGABRT, SIG_DFL);
  abort();
}

static void test_initializer(void **state) {
  (void)state;
  int64_t value = 1234;
  mp_pool_opts_t opts = {.initializer = init_worker,
                         .initarg = &value,
                         .initarg_size = sizeof value};
  mp_pool_t *pool = new_pool(1, &opts);
  value = 0; /* the workers got a copy */
  int64_t out[16];
  assert_mp_ok(mp_pool_map(pool, read_init, NULL, 0, out, 8, 16, 1));
  for (int i = 0; i < 16; i++)
    assert_int_equal(1234, out[i]);
  /* The replacement of a killed worker runs it too. */
  pid_t old;
  assert_int_equal(1, mp_pool_workers(pool, &old, 1));
  kill(old, SIGKILL);
  wait_workers(pool, 1, &old);
  assert_mp_ok(mp_pool_map(pool, read_init, NULL, 0, out, 8, 16, 1));
  for (int i = 0; i < 16; i++)
    assert_int_equal(1234, out[i]);
  mp_pool_free(pool);

  /* Once in each worker, however many tasks it runs. */
  _Atomic int64_t *runs = shared(sizeof *runs);
  opts = (mp_pool_opts_t){
      .initializer = init_count, .initarg = &runs, .initarg_size = sizeof runs};
  pool = new_pool(2, &opts);
  int64_t in[64] = {0}, doubled[64];
  assert_mp_ok(mp_pool_map(pool, double_it, in, 8, doubled, 8, 64, 1));
  assert_mp_ok(mp_pool_close(pool));
  assert_mp_ok(mp_pool_join(pool));
  assert_int_equal(2, atomic_load(runs));
  mp_pool_free(pool);
  mp_raw_free(runs);
}

static void check_broken(void (*init)(void *), int expected_exit) {
  int code = 5;
  mp_pool_opts_t opts = {
      .initializer = init, .initarg = &code, .initarg_size = sizeof code};
  mp_pool_t *pool = new_pool(2, &opts);
  int64_t in[8] = {0}, out[8];
  assert_mp(MP_EBROKEN, mp_pool_map(pool, double_it, in, 8, out, 8, 8, 1));
  int exitcode = 0;
  assert_mp(MP_EBROKEN, mp_pool_error(pool, &exitcode));
  assert_int_equal(expected_exit, exitcode);
  /* No endless restarts: every worker is gone and stays gone. */
  assert_int_equal(0, mp_pool_workers(pool, NULL, 0));
  assert_mp(MP_EBROKEN, mp_pool_map(pool, double_it, in, 8, out, 8, 8, 1));
  errno = 0;
  assert_null(mp_pool_apply_async(pool, action_apply, in, 8, NULL));
  assert_mp(MP_EBROKEN, -errno);
  assert_mp_ok(mp_pool_close(pool));
  assert_mp_ok(mp_pool_join(pool));
  mp_pool_free(pool);
}

static void test_initializer_exits(void **state) {
  (void)state;
  check_broken(init_exits, 5);
}

static void test_initializer_crashes(void **state) {
  (void)state;
  check_broken(init_crashes, -SIGABRT);
}

/* ---- Deaths inside the queue lock ---------------------------------------
 * The pool's fault hook (src/testing.h) makes the first worker that reaches a
 * given point inside the queue lock die there. Whatever the point, nothing
 * is lost and nothing fails: the next holder of the lock finishes the dead
 * worker's step, and the pool thread settles its chunk. */

#define FAULT_POINTS (MP__FAULT_COUNT - 1) /* src/testing.h */

typedef struct fault_arm {
  _Atomic int *armed; /* in shared memory: one death per pool */
  int point;
} fault_arm_t;

static fault_arm_t fault; /* in each worker */

static void die_at_point(int point) {
  if (point == fault.point && atomic_exchange(fault.armed, 0))
    raise(SIGKILL);
}

static void arm_fault(void *arg) {
  memcpy(&fault, arg, sizeof fault);
  mp__pool_fault_hook = die_at_point;
}

static void count_callback(void *arg, const void *result, size_t len) {
  (void)result;
  (void)len;
  atomic_fetch_add((_Atomic int *)arg, 1);
}

static void test_death_inside_queue_lock(void **state) {
  (void)state;
  enum { N = 300 };
  task_in_t in[N];
  int64_t out[N];
  for (int i = 0; i < N; i++)
    in[i] = act(ACT_DOUBLE, i);
  _Atomic int *armed = shared(sizeof *armed);
  for (int point = 1; point <= FAULT_POINTS; point++) {
    atomic_store(armed, 1);
    fault_arm_t arm = {armed, point};
    mp_pool_opts_t opts = {
        .initializer = arm_fault, .initarg = &arm, .initarg_size = sizeof arm};
    mp_pool_t *pool = new_pool(2, &opts);
    _Atomic int callbacks = 0;
    mp_async_opts_t cb = {.callback = count_callback, .arg = &callbacks};
    memset(out, 0, sizeof out);
    mp_async_t *a = mp_pool_map_async(pool, action_map, in, sizeof in[0], out,
                                      sizeof out[0], N, 1, &cb);
    assert_non_null(a);
    assert_mp_ok(mp_async_get(a, WAIT_TIMEOUT, NULL, NULL));
    check_items(a, in, out, N, 0, NULL, 0);
    assert_int_equal(1, callbacks);
    mp_async_free(a);
    check_healthy(pool);
    /* A worker did die there (an exhausted unit may leave the queue only
     * at the next map's first claim). */
    assert_int_equal(0, atomic_load(armed));
    mp_pool_free(pool);
  }
  mp_raw_free(armed);
}

/* ---- Deaths in a claim without the lock -----------------------------------
 * After its first chunk of a unit, a worker claims the next ones without
 * the queue lock (an atomic add, then written down in its slot). The hook
 * makes a worker die at a claim point on its 20th pass, past its first
 * claim, in the middle of such a claim: the chunk it took (written down
 * or not) runs elsewhere, nothing fails, nothing is lost. */

typedef struct late_arm {
  _Atomic int *armed;
  int point;
  int passes; /* in each worker: passes at `point` so far */
} late_arm_t;

static late_arm_t late;

static void die_late(int point) {
  if (point == late.point && ++late.passes == 20 &&
      atomic_exchange(late.armed, 0))
    raise(SIGKILL);
}

static void arm_late(void *arg) {
  memcpy(&late, arg, sizeof late);
  mp__pool_fault_hook = die_late;
}

static void test_death_claiming_unlocked(void **state) {
  (void)state;
  enum { N = 300 };
  static const int points[] = {MP__FAULT_CLAIM_WRITTEN, MP__FAULT_CLAIMING,
                               MP__FAULT_CLAIM_MOVED, MP__FAULT_CLAIMED};
  task_in_t in[N];
  int64_t out[N];
  for (int i = 0; i < N; i++)
    in[i] = act(ACT_DOUBLE, i);
  _Atomic int *armed = shared(sizeof *armed);
  for (size_t p = 0; p < sizeof points / sizeof points[0]; p++) {
    for (size_t chunk = 1; chunk <= 3; chunk += 2) {
      atomic_store(armed, 1);
      late_arm_t arm = {armed, points[p], 0};
      mp_pool_opts_t opts = {
          .initializer = arm_late, .initarg = &arm, .initarg_size = sizeof arm};
      mp_pool_t *pool = new_pool(2, &opts);
      memset(out, 0, sizeof out);
      mp_async_t *a = mp_pool_map_async(pool, action_map, in, sizeof in[0], out,
                                        sizeof out[0], N, chunk, NULL);
      assert_non_null(a);
      assert_mp_ok(mp_async_get(a, WAIT_TIMEOUT, NULL, NULL));
      check_items(a, in, out, N, 0, NULL, 0);
      mp_async_free(a);
      check_healthy(pool);
      assert_int_equal(0, atomic_load(armed));
      mp_pool_free(pool);
    }
  }
  mp_raw_free(armed);
}

/* ---- maxtasksperchild ------------------------------------------------------
 */

static size_t distinct(const int64_t *v, size_t n) {
  size_t count = 0;
  for (size_t i = 0; i < n; i++) {
    bool seen = false;
    for (size_t k = 0; k < i; k++)
      seen |= v[k] == v[i];
    count += !seen;
  }
  return count;
}

static void test_maxtasksperchild(void **state) {
  (void)state;
  mp_pool_opts_t opts = {.maxtasksperchild = 1};
  mp_pool_t *pool = new_pool(1, &opts);
  int64_t pids[4];
  for (int i = 0; i < 4; i++)
    assert_mp_ok(mp_pool_map(pool, worker_pid, NULL, 0, &pids[i], 8, 1, 0));
  assert_int_equal(4, distinct(pids, 4));
  mp_pool_free(pool);

  /* A chunk counts as one task, as in Python. */
  opts.maxtasksperchild = 2;
  pool = new_pool(2, &opts);
  int64_t many[12];
  assert_mp_ok(mp_pool_map(pool, worker_pid, NULL, 0, many, 8, 12, 1));
  assert_true(distinct(many, 12) >= 6);
  check_workers(pool, 2);
  mp_pool_free(pool);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_task_segfaults),
      mpt_test(test_task_exits),
      mpt_test(test_random_kill_chunked),
      mpt_test(test_random_kill_chunksize_1),
      mpt_test(test_repeated_kills),
      mpt_test(test_idle_workers_killed),
      mpt_test(test_death_inside_queue_lock),
      mpt_test(test_death_claiming_unlocked),
      mpt_test(test_task_timeout),
      mpt_test(test_initializer),
      mpt_test(test_initializer_exits),
      mpt_test(test_initializer_crashes),
      mpt_test(test_maxtasksperchild),
  };
  int rc = MPT_RUN(argc, argv, tests);
  CHECK_LEAKS();
  return rc;
}

/* Safety (issue 11): what a user gets wrong, or an unusual environment,
 * never brings the program down, and no child ever runs main() again. */
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"
#include "testing.h"

/* ---- helpers --------------------------------------------------------------
 */

/* Runs fn in a helper process (forked by mproc: the library's own fork
 * keeps its locks consistent in the child, which the sanitizers check) and
 * returns its exit status, or 128 + the signal that ended it. The helper
 * is killed if it has not ended after timeout seconds. */
typedef struct helper_arg {
  int (*fn)(void);
} helper_arg_t;

static void run_helper(void *arg) {
  exit(((helper_arg_t *)arg)->fn());
}

static int in_helper(int (*fn)(void), double timeout) {
  helper_arg_t arg = {fn};
  mp_process_t *p =
      mp_process_new(run_helper, &arg, sizeof arg,
                     &(mp_process_opts_t){.ctx = mp_get_context("fork")});
  assert_non_null(p);
  assert_mp_ok(mp_process_start(p));
  if (mp_process_join(p, timeout) != 0) {
    mp_process_kill(p);
    mp_process_join(p, MP_FOREVER);
  }
  int code = -1;
  assert_mp_ok(mp_process_exitcode(p, &code));
  mp_process_free(p);
  return code >= 0 ? code : 128 - code;
}

/* Starts fn(arg) in a child of the test's start method. */
static mp_process_t *start_child(void (*fn)(void *), void *arg, size_t size) {
  mp_process_t *p = mp_process_new(fn, arg, size, NULL);
  assert_non_null(p);
  assert_mp_ok(mp_process_start(p));
  return p;
}

/* Joins p (killed after timeout seconds), frees it and checks that it
 * exited with 0. */
static void expect_exit_zero(mp_process_t *p, double timeout) {
  int rc = mp_process_join(p, timeout);
  if (rc != 0)
    mp_process_kill(p), mp_process_join(p, MP_FOREVER);
  int code = -1;
  assert_mp_ok(mp_process_exitcode(p, &code));
  mp_process_free(p);
  assert_mp_ok(rc);
  assert_int_equal(code, 0);
}

static bool fd_is_open(int fd) {
  return fcntl(fd, F_GETFD) >= 0;
}

/* ---- 1. fds 0, 1 and 2 closed in the parent --------------------------------
 */

static void set_flag(void *arg) {
  atomic_store(*(_Atomic int **)arg, 1);
}

/* In a helper whose fds 0-2 are closed: every mproc fd is above 2 and a
 * child of each method runs its target (and nothing else). Exit status:
 * 0 when all is well, a step number otherwise. */
static int start_with_stdio_closed(void) {
  _Atomic int *flag = mp_raw_alloc(sizeof *flag);
  if (!flag)
    return 1;
  close(0);
  close(1);
  close(2);
  mp_conn_t *a, *b;
  if (mp_pipe(&a, &b, true) != 0)
    return 2;
  for (int i = 0; i < 2; i++) {
    mp_process_t *p = mp_process_new(set_flag, &flag, sizeof flag, NULL);
    if (!p || mp_process_start(p) != 0)
      return 3;
    int code = -1;
    if (mp_process_join(p, 60) != 0 || mp_process_exitcode(p, &code) != 0 ||
        code != 0)
      return 4;
    mp_process_free(p);
    if (!atomic_exchange(flag, 0))
      return 5;
  }
  /* Nothing of the library took 0, 1 or 2. */
  if (fd_is_open(0) || fd_is_open(1) || fd_is_open(2))
    return 6;
  mp_conn_free(a);
  mp_conn_free(b);
  return 0;
}

static void test_stdio_closed_in_parent(void **state) {
  (void)state;
  assert_int_equal(in_helper(start_with_stdio_closed, 120), 0);
}

/* A program started with the marker but without usable start data (here:
 * this test program, with a marker naming fd 1 or no fd at all, or an
 * arena that is none, or a block outside it) prints why and exits with
 * status 70 without running main(). */
static void test_marker_without_start_data(void **state) {
  (void)state;
  /* A regular file of zeros, inherited: not an arena. Mapped (1 MiB) at
   * an address that is application memory under every sanitizer too
   * (TSan aborts a mapping elsewhere). */
  int zeros = memfd_create("not-an-arena", 0);
  assert_true(zeros > 2 && ftruncate(zeros, 1 << 20) == 0);
  char not_arena[96], outside[96];
  snprintf(not_arena, sizeof not_arena, "c:%d:139088289300480:1048576:0",
           zeros);
  snprintf(outside, sizeof outside, "c:%d:139088289300480:1048576:1048000",
           zeros);
  const char *markers[] = {"c:1",
                           "c:0",
                           "s:2",
                           "c:987",
                           "x",
                           "c:",
                           "c:3:4",
                           "c:99999999999999999999999",
                           "c:1:139088289300480:1048576:0",
                           "c:987:139088289300480:1048576:0",
                           "s:3:139088289300480:1048576:0",
                           not_arena,
                           outside};
  for (size_t i = 0; i < sizeof markers / sizeof *markers; i++) {
    char *argv[] = {"/proc/self/exe", NULL};
    char *out = NULL;
    int status = 0;
    setenv("MPROC_SPAWN", markers[i], 1);
    int rc = mpt_run_command(argv, 60, &out, &status);
    unsetenv("MPROC_SPAWN");
    assert_mp_ok(rc);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 70);
    assert_non_null(strstr(out, "start data"));
    /* main() (cmocka's group banner) never ran. */
    assert_null(strstr(out, "test_safety"));
    free(out);
  }
  close(zeros);
}

/* ---- 2. a connection passed on to a grandchild ----------------------------
 */

typedef struct relay_arg {
  mp_conn_t *conn;
  int depth;
} relay_arg_t;

static void relay(void *arg) {
  relay_arg_t a = *(relay_arg_t *)arg;
  if (a.depth == 0) {
    int rc = mp_conn_send_bytes(a.conn, "grandchild", 10);
    exit(rc == 0 ? 0 : 10);
  }
  a.depth--;
  mp_process_t *p = mp_process_new(relay, &a, sizeof a, NULL);
  int code = -1;
  if (!p || mp_process_start(p) != 0 || mp_process_join(p, 60) != 0 ||
      mp_process_exitcode(p, &code) != 0)
    exit(20);
  mp_process_free(p);
  exit(code);
}

static void test_connection_reaches_grandchild(void **state) {
  (void)state;
  mp_conn_t *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, true));
  relay_arg_t arg = {b, 2}; /* a great-grandchild sends */
  expect_exit_zero(start_child(relay, &arg, sizeof arg), 120);
  void *buf;
  size_t len;
  assert_mp_ok(mp_conn_recv_bytes(a, &buf, &len));
  assert_int_equal(len, 10);
  assert_memory_equal(buf, "grandchild", 10);
  mp_free(buf);
  mp_conn_free(a);
  mp_conn_free(b);
}

/* ---- 5. sizes ---------------------------------------------------------- */

static void test_huge_sizes_fail_promptly(void **state) {
  (void)state;
  char byte = 1;
  size_t huge[] = {SIZE_MAX, SIZE_MAX / 2, (size_t)1 << 62, (size_t)1 << 49};
  mp_queue_t *q = mp_queue_new(0);
  mp_simple_queue_t *sq = mp_simple_queue_new();
  mp_joinable_queue_t *jq = mp_joinable_queue_new(0);
  for (size_t i = 0; i < sizeof huge / sizeof *huge; i++) {
    /* The length is refused before the bytes are read: one byte will do. */
    assert_mp(-ENOMEM, mp_queue_put(q, &byte, huge[i], 0));
    assert_mp(-ENOMEM, mp_queue_put(q, &byte, huge[i], MP_FOREVER));
    assert_mp(-ENOMEM, mp_simple_queue_put(sq, &byte, huge[i]));
    assert_mp(-ENOMEM, mp_joinable_queue_put(jq, &byte, huge[i], 1));
    errno = 0;
    assert_null(mp_value_new(huge[i], true));
    assert_int_equal(errno, ENOMEM);
    assert_null(mp_value_new(huge[i], false));
    assert_null(mp_raw_alloc(huge[i]));
    assert_null(mp_array_new(huge[i], 8, true));
    assert_null(mp_array_new(3, huge[i], false));
  }
  /* The queues still work. */
  assert_mp_ok(mp_queue_put(q, &byte, 1, 0));
  void *buf;
  size_t len;
  assert_mp_ok(mp_queue_get(q, &buf, &len, MP_FOREVER));
  assert_int_equal(len, 1);
  mp_free(buf);
  mp_queue_free(q);
  mp_simple_queue_free(sq);
  mp_joinable_queue_free(jq);
}

/* ---- 6. NaN timeouts --------------------------------------------------- */

static void test_nan_timeouts_are_einval(void **state) {
  (void)state;
  double nan = NAN;
  mp_lock_t *l = mp_lock_new();
  mp_rlock_t *r = mp_rlock_new();
  mp_semaphore_t *s = mp_semaphore_new(1);
  mp_event_t *e = mp_event_new();
  mp_condition_t *c = mp_condition_new(NULL);
  mp_barrier_t *b = mp_barrier_new(2, NULL, MP_FOREVER);
  mp_queue_t *q = mp_queue_new(0);
  mp_joinable_queue_t *jq = mp_joinable_queue_new(0);
  mp_value_t *v = mp_value_new(8, true);
  mp_conn_t *a, *z;
  assert_mp_ok(mp_pipe(&a, &z, true));
  /* Also where the call would not have to wait at all. */
  assert_mp(MP_EINVAL, mp_lock_acquire(l, nan));
  assert_mp(MP_EINVAL, mp_rlock_acquire(r, nan));
  assert_mp(MP_EINVAL, mp_semaphore_acquire(s, nan));
  assert_mp_ok(mp_event_set(e));
  assert_mp(MP_EINVAL, mp_event_wait(e, nan));
  assert_mp(MP_EINVAL, mp_condition_acquire(c, nan));
  assert_mp_ok(mp_condition_acquire(c, MP_FOREVER));
  assert_mp(MP_EINVAL, mp_condition_wait(c, nan));
  assert_mp_ok(mp_condition_release(c));
  assert_mp(MP_EINVAL, mp_barrier_wait_timeout(b, nan));
  errno = 0;
  assert_null(mp_barrier_new(2, NULL, nan));
  assert_int_equal(errno, EINVAL);
  assert_mp(MP_EINVAL, mp_queue_put(q, "x", 1, nan));
  void *buf;
  size_t len;
  assert_mp(MP_EINVAL, mp_queue_get(q, &buf, &len, nan));
  assert_mp(MP_EINVAL, mp_joinable_queue_join(jq, nan));
  assert_mp(MP_EINVAL, mp_value_acquire(v, nan));
  assert_mp(MP_EINVAL, mp_conn_poll(a, nan));
  mp_waitable_t w = mp_waitable_conn(a);
  assert_mp(MP_EINVAL, mp_wait(&w, 1, nan, NULL));
  assert_mp(MP_EINVAL, mp_wait(NULL, 0, nan, NULL));
  /* Waiting for nothing forever: the header promises MP_EINVAL. */
  assert_mp(MP_EINVAL, mp_wait(NULL, 0, INFINITY, NULL));
  assert_mp(MP_EINVAL, mp_wait(NULL, 0, MP_FOREVER, NULL));
  mp_process_t *p = mp_process_new(set_flag, NULL, 0, NULL);
  assert_mp(MP_EINVAL, mp_process_join(p, nan));
  mp_process_free(p);
  mp_conn_free(a);
  mp_conn_free(z);
  mp_value_free(v);
  mp_joinable_queue_free(jq);
  mp_queue_free(q);
  mp_barrier_free(b);
  mp_condition_free(c);
  mp_event_free(e);
  mp_semaphore_free(s);
  mp_rlock_free(r);
  mp_lock_free(l);
}

/* ---- 7. MPROC_START_METHOD with a typo ------------------------------------
 */

static int bad_start_method(void) {
  /* stderr into a memfd, to read what was said. */
  int err = memfd_create("stderr", 0);
  if (err < 0 || dup2(err, 2) < 0)
    return 1;
  setenv("MPROC_START_METHOD", "spwan", 1);
  mp_set_start_method(NULL, true); /* unfixed: the variable decides */
  errno = 0;
  if (mp_get_start_method() != NULL || errno != EINVAL)
    return 2;
  if (mp_get_context(NULL) != NULL)
    return 3;
  mp_process_t *p = mp_process_new(set_flag, NULL, 0, NULL);
  if (!p || mp_process_start(p) != MP_EINVAL)
    return 4;
  mp_process_free(p);
  char text[512] = {0};
  if (pread(err, text, sizeof text - 1, 0) <= 0)
    return 5;
  if (!strstr(text, "spwan") || !strstr(text, "\"fork\"") ||
      !strstr(text, "\"spawn\"") || !strstr(text, "\"forkserver\""))
    return 6;
  /* Said once. */
  if (strstr(strstr(text, "spwan") + 1, "spwan"))
    return 7;
  /* set_start_method repairs it. */
  if (mp_set_start_method("fork", true) != 0 ||
      strcmp(mp_get_start_method(), "fork") != 0)
    return 8;
  return 0;
}

static void test_unknown_start_method_is_an_error(void **state) {
  (void)state;
  assert_int_equal(in_helper(bad_start_method, 60), 0);
}

/* ---- 8. a fully static program ------------------------------------------ */

static void test_static_program_starts_children(void **state) {
  (void)state;
#ifdef MPT_STATIC_CHILD
  char *argv[] = {MPT_STATIC_CHILD, NULL};
  char *out = NULL;
  int status = 0;
  assert_mp_ok(mpt_run_command(argv, 120, &out, &status));
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_int_equal(mpt_count_lines(out, "spawn: start=OK exitcode=0 flag=42"),
                   1);
  assert_int_equal(
      mpt_count_lines(out, "forkserver: start=OK exitcode=0 flag=42"), 1);
  free(out);
#else
  skip(); /* no static libc here, or a sanitizer build */
#endif
}

/* ---- 3. pool tasks that write past their room ------------------------------
 */

/* Ignores out_cap: always writes 8 KiB and says so. */
static int write_8k(const void *in, size_t in_len, void *out, size_t out_cap,
                    size_t *out_len) {
  (void)in, (void)in_len, (void)out_cap;
  memset(out, 0x5a, 8192);
  *out_len = 8192;
  return 0;
}

/* A result of *(size_t *)in bytes, byte k being k % 251. */
static int write_n(const void *in, size_t in_len, void *out, size_t out_cap,
                   size_t *out_len) {
  (void)in_len, (void)out_cap;
  size_t n = *(const size_t *)in;
  for (size_t k = 0; k < n; k++)
    ((unsigned char *)out)[k] = (unsigned char)(k % 251);
  *out_len = n;
  return 0;
}

/* A map function that writes twice its out_size (8 bytes) for item 3. */
static int overrun_at_3(const void *in, void *out) {
  int k = *(const int *)in;
  memset(out, 0x77, k == 3 ? 4096 * 4 : 8);
  return 0;
}

typedef struct fenced {
  uint64_t before[64];
  uint64_t out[8];
  uint64_t after[64];
} fenced_t;

static void test_pool_task_overrun_is_an_error(void **state) {
  (void)state;
  mp_pool_t *pool = mp_pool_new(&(mp_pool_opts_t){.processes = 2});
  assert_non_null(pool);
  /* apply_async has room for any size by default. */
  mp_async_t *a = mp_pool_apply_async(pool, write_8k, NULL, 0, NULL);
  assert_non_null(a);
  const void *result;
  size_t len;
  assert_mp_ok(mp_async_get(a, 60, &result, &len));
  assert_int_equal(len, 8192);
  assert_int_equal(((const unsigned char *)result)[8191], 0x5a);
  mp_async_free(a);
  size_t big = 10u << 20;
  a = mp_pool_apply_async(pool, write_n, &big, sizeof big, NULL);
  assert_mp_ok(mp_async_get(a, 60, &result, &len));
  assert_int_equal(len, big);
  for (size_t k = 0; k < big; k += 4099)
    assert_int_equal(((const unsigned char *)result)[k], k % 251);
  mp_async_free(a);
  /* A task that writes past the room it was given dies on it: the parent's
   * memory is untouched and the task's result is MP_EWORKER. */
  fenced_t *f = calloc(1, sizeof *f);
  assert_mp(MP_EWORKER, mp_pool_apply(pool, write_8k, NULL, 0, f->out,
                                      sizeof f->out, &len));
  a = mp_pool_apply_async(pool, write_8k, NULL, 0,
                          &(mp_async_opts_t){.result_max = 100});
  assert_mp(MP_EWORKER, mp_async_get(a, 60, &result, &len));
  mp_async_free(a);
  int in[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  assert_mp(MP_EWORKER, mp_pool_map(pool, overrun_at_3, in, sizeof *in, f->out,
                                    sizeof *f->out, 8, 1));
  for (int k = 0; k < 64; k++)
    assert_true(f->before[k] == 0 && f->after[k] == 0);
  for (int k = 0; k < 8; k++)
    if (k != 3)
      assert_int_equal(f->out[k], 0x7777777777777777ull);
  /* The pool goes on. */
  assert_mp_ok(mp_pool_apply(pool, write_n, &(size_t){16}, sizeof(size_t),
                             f->out, sizeof f->out, &len));
  assert_int_equal(len, 16);
  free(f);
  assert_mp_ok(mp_pool_close(pool));
  assert_mp_ok(mp_pool_join(pool));
  mp_pool_free(pool);
}

/* ---- 4. freed, foreign and NULL handles -----------------------------------
 */

static void test_freed_and_foreign_handles_are_einval(void **state) {
  (void)state;
  mp_lock_t *l = mp_lock_new();
  mp_rlock_t *r = mp_rlock_new();
  mp_semaphore_t *s = mp_semaphore_new(1);
  mp_event_t *e = mp_event_new();
  mp_condition_t *c = mp_condition_new(NULL);
  mp_barrier_t *b = mp_barrier_new(2, NULL, MP_FOREVER);
  mp_queue_t *q = mp_queue_new(0);
  mp_simple_queue_t *sq = mp_simple_queue_new();
  mp_joinable_queue_t *jq = mp_joinable_queue_new(0);
  mp_value_t *v = mp_value_new(8, true);
  mp_conn_t *a, *z;
  assert_mp_ok(mp_pipe(&a, &z, true));
  /* Foreign: an object of another kind, or memory that is no object. */
  int local = 0;
  assert_mp(MP_EINVAL, mp_lock_acquire((mp_lock_t *)e, 0));
  assert_mp(MP_EINVAL, mp_lock_acquire((mp_lock_t *)&local, 0));
  assert_mp(MP_EINVAL, mp_event_set((mp_event_t *)l));
  assert_mp(MP_EINVAL, mp_queue_put((mp_queue_t *)sq, "x", 1, 0));
  assert_mp(MP_EINVAL, mp_simple_queue_put((mp_simple_queue_t *)q, "x", 1));
  assert_mp(MP_EINVAL, mp_conn_send_bytes((mp_conn_t *)v, "x", 1));
  /* Freed: every call says so instead of acting on freed memory. */
  mp_lock_free(l);
  mp_rlock_free(r);
  mp_semaphore_free(s);
  mp_event_free(e);
  mp_condition_free(c);
  mp_barrier_free(b);
  mp_queue_free(q);
  mp_simple_queue_free(sq);
  mp_joinable_queue_free(jq);
  mp_value_free(v);
  mp_conn_free(z);
  assert_mp(MP_EINVAL, mp_lock_acquire(l, MP_FOREVER));
  assert_mp(MP_EINVAL, mp_lock_release(l));
  assert_mp(MP_EINVAL, mp_rlock_acquire(r, MP_FOREVER));
  assert_false(mp_rlock_is_mine(r));
  assert_mp(MP_EINVAL, mp_semaphore_acquire(s, MP_FOREVER));
  assert_mp(MP_EINVAL, mp_semaphore_release(s));
  assert_mp(MP_EINVAL, mp_event_set(e));
  assert_mp(MP_EINVAL, mp_event_wait(e, MP_FOREVER));
  assert_false(mp_event_is_set(e));
  assert_mp(MP_EINVAL, mp_condition_acquire(c, MP_FOREVER));
  assert_mp(MP_EINVAL, mp_condition_notify_all(c));
  assert_mp(MP_EINVAL, mp_barrier_wait(b));
  assert_int_equal(mp_barrier_parties(b), 0);
  assert_mp(MP_EINVAL, mp_queue_put(q, "x", 1, MP_FOREVER));
  void *buf;
  size_t len;
  assert_mp(MP_EINVAL, mp_queue_get(q, &buf, &len, MP_FOREVER));
  assert_int_equal(mp_queue_qsize(q), 0);
  assert_mp(MP_EINVAL, mp_simple_queue_put(sq, "x", 1));
  assert_mp(MP_EINVAL, mp_joinable_queue_join(jq, MP_FOREVER));
  assert_null(mp_value_ptr(v));
  assert_mp(MP_EINVAL, mp_value_acquire(v, MP_FOREVER));
  assert_mp(MP_EINVAL, mp_conn_send_bytes(z, "x", 1));
  assert_true(mp_conn_closed(z));
  mp_conn_free(a);
  /* New objects of the same kinds do not take the freed ones' memory (the
   * arena keeps freed blocks out of reuse for a while): the old handles
   * still say MP_EINVAL. */
  mp_lock_t *l2[4];
  mp_queue_t *q2 = mp_queue_new(0);
  mp_event_t *e2 = mp_event_new();
  for (int i = 0; i < 4; i++) {
    l2[i] = mp_lock_new();
    assert_ptr_not_equal(l2[i], l);
  }
  assert_ptr_not_equal(q2, q);
  assert_ptr_not_equal(e2, e);
  assert_mp(MP_EINVAL, mp_lock_acquire(l, 0));
  assert_mp(MP_EINVAL, mp_queue_put(q, "x", 1, 0));
  assert_mp(MP_EINVAL, mp_event_set(e));
  for (int i = 0; i < 4; i++)
    mp_lock_free(l2[i]);
  mp_queue_free(q2);
  mp_event_free(e2);
}

/* ---- 4. stale handles: the memory of a freed object holds a new one ------
 * For each kind: the handle of a freed object, once the arena gave its
 * memory to a new object of the same kind (the test learns it from the
 * untagged address, no timing involved), is MP_EINVAL; the new object's
 * own handle works. */

typedef struct kind {
  const char *name;
  void *(*make)(void);
  void (*destroy)(void *);
  int (*use)(void *); /* 0 on a live object */
} kind_t;

/* make_<name>, destroy_<name> (mp_<name>_free) and use_<name>: `use`, and
 * when it succeeds `undo` (0 when there is nothing to undo). */
#define KIND_FUNCTIONS(name, make, use, undo)                                  \
  static void *make_##name(void) {                                             \
    return make;                                                               \
  }                                                                            \
  static void destroy_##name(void *h) {                                        \
    mp_##name##_free(h);                                                       \
  }                                                                            \
  static int use_##name(void *h) {                                             \
    int rc = use;                                                              \
    return rc < 0 ? rc : undo;                                                 \
  }

KIND_FUNCTIONS(lock, mp_lock_new(), mp_lock_acquire(h, 0), mp_lock_release(h))
KIND_FUNCTIONS(rlock, mp_rlock_new(), mp_rlock_acquire(h, 0),
               mp_rlock_release(h))
KIND_FUNCTIONS(semaphore, mp_semaphore_new(1), mp_semaphore_acquire(h, 0),
               mp_semaphore_release(h))
KIND_FUNCTIONS(event, mp_event_new(), mp_event_set(h), 0)
KIND_FUNCTIONS(condition, mp_condition_new(NULL), mp_condition_acquire(h, 0),
               mp_condition_release(h))
KIND_FUNCTIONS(barrier, mp_barrier_new(2, NULL, MP_FOREVER),
               mp_barrier_reset(h), 0)
KIND_FUNCTIONS(queue, mp_queue_new(0), mp_queue_put(h, "x", 1, 0), 0)
KIND_FUNCTIONS(simple_queue, mp_simple_queue_new(),
               mp_simple_queue_put(h, "x", 1), 0)
KIND_FUNCTIONS(joinable_queue, mp_joinable_queue_new(0),
               mp_joinable_queue_put(h, "x", 1, 0), 0)
KIND_FUNCTIONS(value, mp_value_new(8, true), mp_value_acquire(h, 0),
               mp_value_release(h))
KIND_FUNCTIONS(conn, mp_conn_from_fd(open("/dev/null", O_RDWR | O_CLOEXEC)),
               mp_conn_fileno(h), 0)
KIND_FUNCTIONS(dict, mp_dict_new(), mp_dict_set(h, "k", 1, "v", 1), 0)
KIND_FUNCTIONS(list, mp_list_new(), mp_list_append(h, "x", 1), 0)

#define KIND(name)                                                             \
  { #name, make_##name, destroy_##name, use_##name }
static const kind_t kinds[] = {
    KIND(lock),           KIND(rlock),   KIND(semaphore), KIND(event),
    KIND(condition),      KIND(barrier), KIND(queue),     KIND(simple_queue),
    KIND(joinable_queue), KIND(value),   KIND(conn),      KIND(dict),
    KIND(list),
};

/* Makes an object of kind k, frees it, and makes (and frees) more until
 * the arena gives its memory to one: returns that one's handle and the
 * stale one in *stale. */
static void *reuse(const kind_t *k, void **stale) {
  void *old = k->make();
  assert_non_null(old);
  k->destroy(old);
  for (int i = 0; i < 100000; i++) {
    void *fresh = k->make();
    assert_non_null(fresh);
    if (mp__object_address(fresh) == mp__object_address(old)) {
      *stale = old;
      return fresh;
    }
    k->destroy(fresh);
  }
  fail_msg("the arena never reused the memory of a freed %s", k->name);
  return NULL;
}

static void test_stale_handle_of_reused_memory_is_einval(void **state) {
  (void)state;
  /* Addresses in the arena that hold no object's start: misaligned, or in
   * its last bytes (an 8-byte read there would cross its end). */
  mp_lock_t *l = mp_lock_new();
  int fd;
  uintptr_t base;
  uint64_t size;
  assert_mp_ok(mp__arena_info(&fd, &base, &size));
  assert_mp(MP_EINVAL,
            mp_lock_acquire((void *)((char *)mp__object_address(l) + 4), 0));
  assert_mp(MP_EINVAL, mp_lock_acquire((void *)(base + size - 4), 0));
  mp_lock_free(l);
  for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
    const kind_t *k = &kinds[i];
    void *stale, *fresh = reuse(k, &stale);
    assert_ptr_not_equal(stale, fresh);
    assert_int_equal(k->use(stale), MP_EINVAL);
    assert_mp_ok(k->use(fresh));
    k->destroy(fresh);
  }
}

/* A child (of the test's start method) given both handles. */
typedef struct two_locks {
  mp_lock_t *stale, *fresh;
} two_locks_t;

static void use_both(void *arg) {
  two_locks_t *t = arg;
  int stale = mp_lock_acquire(t->stale, 0);
  int fresh = mp_lock_acquire(t->fresh, 0);
  exit(stale == MP_EINVAL && fresh == 0 ? 0 : 1);
}

static void test_stale_handle_is_einval_in_a_child(void **state) {
  (void)state;
  void *stale, *fresh = reuse(&kinds[0], &stale);
  two_locks_t arg = {stale, fresh};
  expect_exit_zero(start_child(use_both, &arg, sizeof arg), 60);
  mp_lock_free(fresh);
}

static void test_null_handles_never_crash(void **state) {
  (void)state;
  assert_null(mp_process_name(NULL));
  size_t keylen = 1;
  assert_null(mp_process_authkey(NULL, &keylen));
  assert_int_equal(keylen, 0);
  assert_mp(MP_EINVAL, mp_pipe(NULL, NULL, true));
  assert_int_equal(mp_process_pid(NULL), -1);
  assert_mp(MP_EINVAL, mp_process_start(NULL));
  assert_mp(MP_EINVAL, mp_process_join(NULL, 0));
  assert_mp(MP_EINVAL, mp_process_terminate(NULL));
  assert_false(mp_process_is_alive(NULL));
  int code;
  assert_mp(MP_EINVAL, mp_process_exitcode(NULL, &code));
  assert_mp(MP_EINVAL, mp_process_sentinel(NULL));
  mp_process_free(NULL);
  assert_mp(MP_EINVAL, mp_lock_acquire(NULL, 0));
  assert_mp(MP_EINVAL, mp_rlock_release(NULL));
  assert_int_equal(mp_rlock_count(NULL), 0);
  assert_mp(MP_EINVAL, mp_semaphore_value(NULL));
  assert_false(mp_event_is_set(NULL));
  assert_mp(MP_EINVAL, mp_condition_wait(NULL, 0));
  assert_false(mp_barrier_broken(NULL));
  assert_mp(MP_EINVAL, mp_queue_put(NULL, "x", 1, 0));
  assert_true(mp_queue_empty(NULL) == false);
  assert_mp(MP_EINVAL, mp_simple_queue_close(NULL));
  assert_mp(MP_EINVAL, mp_joinable_queue_task_done(NULL));
  assert_null(mp_value_ptr(NULL));
  assert_int_equal(mp_value_size(NULL), 0);
  assert_mp(MP_EINVAL, mp_conn_send_bytes(NULL, "x", 1));
  assert_mp(MP_EINVAL, mp_conn_poll(NULL, 0));
  mp_waitable_t w = mp_waitable_conn(NULL);
  assert_mp(MP_EINVAL, mp_wait(&w, 1, 0, NULL));
  assert_null(mp_shm_buf(NULL));
  assert_null(mp_listener_address(NULL));
  assert_mp(MP_EINVAL, mp_pool_close(NULL));
  assert_mp(MP_EINVAL, mp_async_wait(NULL, 0));
  assert_mp(MP_EINVAL, mp_iter_next(NULL, 0, NULL, NULL));
  /* Freeing NULL is nothing, as free(NULL). */
  mp_lock_free(NULL);
  mp_queue_free(NULL);
  mp_conn_free(NULL);
  mp_value_free(NULL);
  mp_pool_free(NULL);
  mp_async_free(NULL);
  mp_listener_free(NULL);
}

/* Frees a lock twice with stderr in a memfd; the helper must abort. */
static int stderr_fd = -1;

static int free_lock_twice(void) {
  dup2(stderr_fd, 2);
  mp_lock_t *l = mp_lock_new();
  mp_lock_free(l);
  mp_lock_free(l);
  return 0; /* not reached */
}

static int free_queue_twice(void) {
  dup2(stderr_fd, 2);
  mp_queue_t *q = mp_queue_new(0);
  mp_queue_free(q);
  mp_queue_free(q);
  return 0;
}

/* A stale handle (its memory holds a new lock): a second free all the
 * same. */
static int free_stale_lock(void) {
  dup2(stderr_fd, 2);
  void *stale, *fresh = reuse(&kinds[0], &stale);
  (void)fresh;
  mp_lock_free(stale);
  return 0;
}

static void expect_abort(int (*fn)(void), const char *message) {
  stderr_fd = memfd_create("stderr", 0);
  assert_true(stderr_fd >= 0);
  assert_int_equal(in_helper(fn, 60), 128 + SIGABRT);
  char text[512] = {0};
  assert_true(pread(stderr_fd, text, sizeof text - 1, 0) > 0);
  assert_non_null(strstr(text, message));
  close(stderr_fd);
}

static void test_double_free_aborts_naming_the_kind(void **state) {
  (void)state;
  expect_abort(free_lock_twice, "mp_lock_free: this lock was already freed");
  expect_abort(free_queue_twice, "mp_queue_free: this queue was already freed");
  expect_abort(free_stale_lock, "mp_lock_free: this lock was already freed");
}

/* ---- the checking mode ------------------------------------------------------
 */

typedef struct pointers {
  void *stack, *heap, *arena;
  long number;
} pointers_t;

static void ignore_arg(void *arg) {
  (void)arg;
}

static void hold_and_return(void *arg) {
  mp_lock_acquire(*(mp_lock_t **)arg, MP_FOREVER); /* and never release */
}

static int kill_worker(const void *in, size_t in_len, void *out, size_t out_cap,
                       size_t *out_len) {
  (void)in, (void)in_len, (void)out, (void)out_cap, (void)out_len;
  raise(SIGKILL);
  return 0;
}

/* 0 when every step went as expected (stderr in stderr_fd). */
static int debug_session(void) {
  if (mp_set_debug(MP_DEBUG_INFO) != 0)
    return 1;
  int local = 7;
  void *heap = malloc(64);
  pointers_t arg = {&local, heap, mp_raw_alloc(8), 42};
  mp_context_t *spawn = mp_get_context("spawn");
  mp_process_t *p = mp_process_new(ignore_arg, &arg, sizeof arg,
                                   &(mp_process_opts_t){.ctx = spawn});
  if (!p || mp_process_start(p) != 0 || mp_process_join(p, 60) != 0)
    return 2;
  mp_process_free(p);
  /* A lock whose holder ended is taken over. */
  mp_lock_t *l = mp_lock_new();
  p = mp_process_new(hold_and_return, &l, sizeof l, NULL);
  if (!p || mp_process_start(p) != 0 || mp_process_join(p, 60) != 0)
    return 3;
  mp_process_free(p);
  if (mp_lock_acquire(l, 60) != MP_EOWNERDEAD)
    return 4;
  mp_lock_release(l);
  mp_lock_free(l);
  /* A pool worker that dies is replaced. */
  mp_pool_t *pool = mp_pool_new(&(mp_pool_opts_t){.processes = 1});
  size_t len;
  char out[8];
  if (!pool || mp_pool_apply(pool, kill_worker, NULL, 0, out, sizeof out,
                             &len) != MP_EWORKER)
    return 5;
  mp_pool_close(pool);
  mp_pool_join(pool);
  mp_pool_free(pool);
  /* Off: nothing more is said. */
  mp_set_debug(MP_DEBUG_OFF);
  off_t said = lseek(stderr_fd, 0, SEEK_END);
  p = mp_process_new(ignore_arg, &arg, sizeof arg,
                     &(mp_process_opts_t){.ctx = spawn});
  if (!p || mp_process_start(p) != 0 || mp_process_join(p, 60) != 0)
    return 6;
  mp_process_free(p);
  if (lseek(stderr_fd, 0, SEEK_END) != said)
    return 7;
  free(heap);
  mp_raw_free(arg.arena);
  return 0;
}

static void test_checking_mode_logs_and_warns(void **state) {
  (void)state;
  /* In this process (a pool in a forked helper upsets ThreadSanitizer),
   * with stderr in a memfd for the time of the session. */
  stderr_fd = memfd_create("stderr", 0);
  assert_true(stderr_fd >= 0);
  fflush(stderr);
  int saved = dup(2);
  dup2(stderr_fd, 2);
  int status = debug_session();
  mp_set_debug(MP_DEBUG_OFF);
  dup2(saved, 2);
  close(saved);
  char *text = calloc(1, 1 << 16);
  assert_true(pread(stderr_fd, text, (1 << 16) - 1, 0) > 0);
  close(stderr_fd);
  if (status != 0)
    fprintf(stderr, "%s", text);
  assert_int_equal(status, 0);
  /* Pointers into the stack and the heap are warned about, not the arena
   * pointer, nor the number. */
  assert_non_null(strstr(text, "holds at byte 0 a pointer into this "
                               "process's stack"));
  assert_non_null(strstr(text, "holds at byte 8 a pointer into this "
                               "process's heap"));
  assert_null(strstr(text, "at byte 16"));
  assert_null(strstr(text, "at byte 24"));
  assert_non_null(strstr(text, "] started process Process-"));
  assert_non_null(strstr(text, "with spawn"));
  assert_non_null(strstr(text, "ended with exit code 0"));
  assert_non_null(strstr(text, "took over Lock"));
  assert_non_null(strstr(text, "pool worker 0 ended with exit code -9"));
  free(text);
}

/* A child blocked on a queue or an event that its parent frees wakes up
 * with MP_EINVAL instead of sleeping for ever (or finds it freed already:
 * the same answer, whatever the order). */
typedef struct blocked_arg {
  mp_queue_t *q;
  mp_event_t *e;
} blocked_arg_t;

static void get_from_freed(void *arg) {
  blocked_arg_t *a = arg;
  void *buf;
  size_t len;
  int rq = mp_queue_get(a->q, &buf, &len, MP_FOREVER);
  int re = mp_event_wait(a->e, MP_FOREVER);
  exit(rq == MP_EINVAL && re == MP_EINVAL ? 0 : 1);
}

static bool sleeping(void *arg) {
  char path[64], state = 0;
  snprintf(path, sizeof path, "/proc/%d/stat", (int)mp_process_pid(arg));
  FILE *f = fopen(path, "r");
  if (f) {
    if (fscanf(f, "%*d %*s %c", &state) != 1)
      state = 0;
    fclose(f);
  }
  return state == 'S';
}

static void test_waiter_on_freed_object_wakes(void **state) {
  (void)state;
  blocked_arg_t arg = {mp_queue_new(0), mp_event_new()};
  mp_process_t *p = start_child(get_from_freed, &arg, sizeof arg);
  /* Most often it sleeps in the get by then; either way is right. */
  mpt_wait_until(sleeping, p, 5);
  mp_queue_free(arg.q);
  mp_event_free(arg.e);
  expect_exit_zero(p, 60);
}

/* The same for a Lock, an RLock (both held by the test), a Semaphore at
 * 0, a Condition (waited on forever) and a Barrier of 2 parties: the child
 * is known to sleep once it announced it in the object and its state is
 * 'S'; the free must wake it with MP_EINVAL. */
enum {
  SLEEP_LOCK,
  SLEEP_RLOCK,
  SLEEP_SEMAPHORE,
  SLEEP_CONDITION,
  SLEEP_BARRIER
};

typedef struct sleeper {
  int kind;
  void *h;
  mp_process_t *p;
} sleeper_t;

static int sleep_on(const sleeper_t *s) {
  switch (s->kind) {
  case SLEEP_LOCK:
    return mp_lock_acquire(s->h, MP_FOREVER);
  case SLEEP_RLOCK:
    return mp_rlock_acquire(s->h, MP_FOREVER);
  case SLEEP_SEMAPHORE:
    return mp_semaphore_acquire(s->h, MP_FOREVER);
  case SLEEP_CONDITION: {
    int rc = mp_condition_acquire(s->h, MP_FOREVER);
    return rc < 0 ? rc : mp_condition_wait(s->h, MP_FOREVER);
  }
  default:
    return mp_barrier_wait_timeout(s->h, MP_FOREVER);
  }
}

static void acquire_then_exit(void *arg) {
  exit(sleep_on(arg) == MP_EINVAL ? 0 : 1);
}

static bool announced_and_asleep(void *arg) {
  sleeper_t *s = arg;
  bool flagged = s->kind == SLEEP_SEMAPHORE   ? mp__semaphore_has_sleepers(s->h)
                 : s->kind == SLEEP_CONDITION ? mp__condition_has_sleepers(s->h)
                 : s->kind == SLEEP_BARRIER   ? mp__barrier_has_sleepers(s->h)
                                              : mp__lock_has_sleepers(s->h);
  return flagged && sleeping(s->p);
}

static void test_sleeper_on_freed_lock_wakes(void **state) {
  (void)state;
  for (int kind = SLEEP_LOCK; kind <= SLEEP_BARRIER; kind++) {
    sleeper_t s = {kind, NULL, NULL};
    if (kind == SLEEP_LOCK) {
      s.h = mp_lock_new();
      assert_mp_ok(mp_lock_acquire(s.h, 0));
    } else if (kind == SLEEP_RLOCK) {
      s.h = mp_rlock_new();
      assert_mp_ok(mp_rlock_acquire(s.h, 0));
    } else if (kind == SLEEP_SEMAPHORE) {
      s.h = mp_semaphore_new(0);
    } else if (kind == SLEEP_CONDITION) {
      s.h = mp_condition_new(NULL);
    } else {
      s.h = mp_barrier_new(2, NULL, MP_FOREVER);
    }
    assert_non_null(s.h);
    s.p = start_child(acquire_then_exit, &s, sizeof s);
    bool asleep = mpt_wait_until(announced_and_asleep, &s, 60);
    if (kind == SLEEP_LOCK)
      mp_lock_free(s.h);
    else if (kind == SLEEP_RLOCK)
      mp_rlock_free(s.h);
    else if (kind == SLEEP_SEMAPHORE)
      mp_semaphore_free(s.h);
    else if (kind == SLEEP_CONDITION)
      mp_condition_free(s.h);
    else
      mp_barrier_free(s.h);
    expect_exit_zero(s.p, 60);
    assert_true(asleep);
  }
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_stdio_closed_in_parent),
      mpt_test(test_marker_without_start_data),
      mpt_test(test_connection_reaches_grandchild),
      mpt_test(test_pool_task_overrun_is_an_error),
      mpt_test(test_freed_and_foreign_handles_are_einval),
      mpt_test(test_stale_handle_of_reused_memory_is_einval),
      mpt_test(test_stale_handle_is_einval_in_a_child),
      mpt_test(test_null_handles_never_crash),
      mpt_test(test_double_free_aborts_naming_the_kind),
      mpt_test(test_waiter_on_freed_object_wakes),
      mpt_test(test_sleeper_on_freed_lock_wakes),
      mpt_test(test_huge_sizes_fail_promptly),
      mpt_test(test_nan_timeouts_are_einval),
      mpt_test(test_unknown_start_method_is_an_error),
      mpt_test(test_static_program_starts_children),
      mpt_test(test_checking_mode_logs_and_warns),
  };
  return MPT_RUN(argc, argv, tests);
}

/* The pool on MPI, run by mpirun (tests/mpi/run.sh). One program, a
 * sub-command per scenario; rank 0 checks and prints "mpi-test: PASS" as
 * its last line when every check held (the launcher's exit status is
 * checked separately: after a lost rank it must be a failure).
 *
 *   equal METHOD      every pool call across ranks gives what the local
 *                     pool gives, per-item errors included (MP_ETASK with
 *                     codes, MP_EWORKER, MP_ETIMEDOUT), under METHOD
 *   loss RETRIES [METHOD]  rank 2 dies during a map (mpirun --enable-recovery):
 *                     with retries every item is right, without them its
 *                     items fail with MP_ELOST; finalize says MP_ELOST
 *   lifecycle         close/join and terminate with chunks out on the
 *                     ranks; then a second pool on the same ranks
 *   rootloss          rank 0 dies while the others serve: they end
 *   abort             rank 2 dies under the default launcher: the job ends
 *   build             ranks run different builds (MPT_OTHER_BUILD): refused
 *   plugin PATH       a task's library is another build on ranks 1 and 2
 *                     (plugin.sh): their items fail with -ENOEXEC
 *   hold              a map whose rank-2 items never end (the network test
 *                     cuts rank 2's link): they are lost, the rest right
 *   late              rank 2 looks lost between a result's header and its
 *                     data, which it sends after the map returned: rank 0
 *                     must not let it land in the job (mpirun
 *                     --enable-recovery) */
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mproc.h"
#include "mproc/mpi.h"
#include "testing.h"

static int failures;
/* What mp_mpi_finalize said: after a loss the program exits nonzero, as
 * the guide tells programs to (mpirun --enable-recovery reports a job
 * whose ranks ended well as a success otherwise). */
static int finalized = 0;

static int finalize(void) {
  finalized = mp_mpi_finalize();
  return finalized;
}

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "mpi-test: %s:%d: check failed: %s\n", __FILE__,         \
              __LINE__, #cond);                                                \
      failures++;                                                              \
    }                                                                          \
  } while (0)

#define CHECK_RC(expected, actual)                                             \
  do {                                                                         \
    int rc_ = (actual);                                                        \
    if (rc_ != (expected)) {                                                   \
      fprintf(stderr, "mpi-test: %s:%d: %s gave %s, expected %s\n", __FILE__,  \
              __LINE__, #actual, mp_errname(rc_), mp_errname(expected));       \
      failures++;                                                              \
    }                                                                          \
  } while (0)

/* The rank a task runs on, from the launcher's environment (inherited by
 * the workers under every start method). */
static int64_t task_rank(void) {
  const char *r = getenv("OMPI_COMM_WORLD_RANK");
  if (!r)
    r = getenv("PMI_RANK");
  return r ? atoll(r) : -1;
}

typedef struct out_item {
  int64_t value;
  int64_t rank;
} out_item_t;

static int square(const void *in, void *out) {
  int64_t x = *(const int64_t *)in;
  *(int64_t *)out = x * x;
  return 0;
}

static int square_where(const void *in, void *out) {
  int64_t x = *(const int64_t *)in;
  out_item_t *o = out;
  o->value = x * x;
  o->rank = task_rank();
  usleep(20000);
  return 0;
}

/* Fails some items in each way the pool reports (the item's value decides,
 * so that the local pool and the MPI pool fail the same items). */
static int mixed(const void *in, void *out) {
  int64_t x = *(const int64_t *)in;
  if (x % 11 == 3)
    return (int)(x % 50) + 1; /* MP_ETASK with this code */
  if (x == 40)
    raise(SIGKILL); /* MP_EWORKER */
  if (x == 61)
    sleep(30); /* MP_ETIMEDOUT */
  *(int64_t *)out = x + 1000;
  return 0;
}

/* Fails every item: with its rank + 1 as the task's code, or by killing
 * its worker. */
static int fail_where(const void *in, void *out) {
  (void)out;
  int64_t x = *(const int64_t *)in;
  usleep(10000);
  if (x % 16 == 5)
    raise(SIGKILL);
  return (int)task_rank() + 1;
}

static int status_only(const void *in, void *out) {
  (void)out;
  return *(const int64_t *)in % 5 == 0 ? 7 : 0;
}

/* The bytes form: the input reversed; code 9 for an input starting '!'. */
static int reverse(const void *in, size_t in_len, void *out, size_t out_cap,
                   size_t *out_len) {
  const char *s = in;
  if (in_len && s[0] == '!')
    return 9;
  *out_len = in_len;
  if (in_len > out_cap)
    return 0;
  for (size_t i = 0; i < in_len; i++)
    ((char *)out)[i] = s[in_len - 1 - i];
  return 0;
}

static int64_t *iota(size_t n) {
  int64_t *a = malloc(n * sizeof *a);
  for (size_t i = 0; i < n; i++)
    a[i] = (int64_t)i;
  return a;
}

/* ---- equal -----------------------------------------------------------------
 */

/* Output arrays filled with a pattern: the failed items' places must keep
 * it on both pools. shared: in the arena, where the pools use them in
 * place. */
static char *out_array(size_t bytes, bool shared) {
  char *p =
      shared ? mp_raw_alloc(bytes ? bytes : 1) : malloc(bytes ? bytes : 1);
  memset(p, 0xab, bytes);
  return p;
}

static void out_free(char *p, bool shared) {
  if (shared)
    mp_raw_free(p);
  else
    free(p);
}

/* A map_async on both pools: the same result, item by item, and the same
 * output arrays. */
static void compare_map(mp_pool_t *local, mp_pool_t *mpi, mp_pool_map_fn fn,
                        size_t n, size_t chunk, size_t out_size, bool shared) {
  int64_t *in = iota(n);
  char *a = out_array(n * out_size, shared);
  char *b = out_array(n * out_size, shared);
  mp_async_t *ra =
      mp_pool_map_async(local, fn, in, sizeof *in, a, out_size, n, chunk, NULL);
  mp_async_t *rb =
      mp_pool_map_async(mpi, fn, in, sizeof *in, b, out_size, n, chunk, NULL);
  CHECK(ra && rb);
  if (ra && rb) {
    CHECK_RC(mp_async_get(ra, MP_FOREVER, NULL, NULL),
             mp_async_get(rb, MP_FOREVER, NULL, NULL));
    CHECK_RC(mp_async_task_code(ra), mp_async_task_code(rb));
    for (size_t k = 0; k < n; k++) {
      int ca = 0, cb = 0;
      int ea = mp_async_item(ra, k, &ca), eb = mp_async_item(rb, k, &cb);
      CHECK_RC(ea, eb);
      CHECK(ca == cb);
    }
    CHECK(memcmp(a, b, n * out_size) == 0);
  }
  mp_async_free(ra);
  mp_async_free(rb);
  free(in);
  out_free(a, shared);
  out_free(b, shared);
}

static void check_map(mp_pool_t *pool) {
  size_t n = 100000;
  int64_t *in = iota(n), *out = calloc(n, sizeof *out);
  CHECK_RC(0,
           mp_pool_map(pool, square, in, sizeof *in, out, sizeof *out, n, 0));
  for (size_t k = 0; k < n; k++)
    CHECK(out[k] == (int64_t)(k * k) || (k = n, false));
  CHECK_RC(0,
           mp_pool_map(pool, square, in, sizeof *in, out, sizeof *out, 0, 0));
  free(in);
  free(out);
}

/* Items run on more than one rank (slow items, so that every rank's slots
 * fill at the first hand-out). */
static void check_spread(mp_pool_t *pool) {
  size_t n = 48;
  int64_t *in = iota(n);
  out_item_t *out = calloc(n, sizeof *out);
  CHECK_RC(0, mp_pool_map(pool, square_where, in, sizeof *in, out, sizeof *out,
                          n, 1));
  bool seen[3] = {false};
  for (size_t k = 0; k < n; k++) {
    CHECK(out[k].value == (int64_t)(k * k));
    if (out[k].rank >= 0 && out[k].rank < 3)
      seen[out[k].rank] = true;
  }
  CHECK(seen[1] || seen[2]);
  free(in);
  free(out);
}

/* Per-item errors made on the other ranks come back as they were made. */
static void check_remote_errors(mp_pool_t *pool) {
  size_t n = 48;
  int64_t *in = iota(n), *out = calloc(n, sizeof *out);
  mp_async_t *a = mp_pool_map_async(pool, fail_where, in, sizeof *in, out,
                                    sizeof *out, n, 1, NULL);
  CHECK(a != NULL);
  if (!a)
    return;
  CHECK_RC(MP_ETASK, mp_async_get(a, MP_FOREVER, NULL, NULL));
  CHECK(mp_async_task_code(a) == 1 || mp_async_task_code(a) == 2 ||
        mp_async_task_code(a) == 3);
  bool remote = false;
  for (size_t k = 0; k < n; k++) {
    int code = 0;
    int e = mp_async_item(a, k, &code);
    if (k % 16 == 5) {
      CHECK_RC(MP_EWORKER, e);
      continue;
    }
    CHECK_RC(MP_ETASK, e);
    CHECK(code >= 1 && code <= 3);
    remote |= code > 1;
  }
  CHECK(remote);
  mp_async_free(a);
  free(in);
  free(out);
}

static void check_imap(mp_pool_t *pool, bool unordered) {
  size_t n = 500;
  int64_t *in = iota(n);
  bool *got = calloc(n, 1);
  mp_iter_t *it =
      unordered
          ? mp_pool_imap_unordered(pool, square, in, sizeof *in,
                                   sizeof(int64_t), n, 16)
          : mp_pool_imap(pool, square, in, sizeof *in, sizeof(int64_t), n, 16);
  CHECK(it != NULL);
  int64_t v;
  mp_iter_item_t item;
  size_t count = 0;
  while (it && mp_iter_next(it, MP_FOREVER, &v, &item) == 1) {
    CHECK(item.error == 0 && item.index < n && !got[item.index]);
    CHECK(unordered || item.index == count);
    CHECK(v == (int64_t)(item.index * item.index));
    got[item.index] = true;
    count++;
  }
  CHECK(count == n);
  mp_iter_free(it);
  free(got);
  free(in);
}

static void check_apply(mp_pool_t *pool) {
  char out[64];
  size_t len = 0;
  CHECK_RC(0, mp_pool_apply(pool, reverse, "hello", 5, out, sizeof out, &len));
  CHECK(len == 5 && memcmp(out, "olleh", 5) == 0);
  CHECK_RC(MP_EOVERFLOW,
           mp_pool_apply(pool, reverse, "hello", 5, out, 3, &len));
  CHECK(len == 5);
  CHECK_RC(MP_ETASK,
           mp_pool_apply(pool, reverse, "!x", 2, out, sizeof out, &len));
  CHECK(mp_pool_task_code() == 9);
  enum { N = 24 };
  mp_async_t *a[N];
  char text[N][16];
  for (int i = 0; i < N; i++) {
    snprintf(text[i], sizeof text[i], "item-%02d", i);
    a[i] = mp_pool_apply_async(pool, reverse, text[i], strlen(text[i]), NULL);
    CHECK(a[i] != NULL);
  }
  for (int i = 0; i < N; i++) {
    const void *res = NULL;
    size_t rlen = 0;
    if (!a[i])
      continue;
    CHECK_RC(0, mp_async_get(a[i], MP_FOREVER, &res, &rlen));
    CHECK(rlen == strlen(text[i]) && ((const char *)res)[0] == text[i][6]);
    mp_async_free(a[i]);
  }
}

static _Atomic int callbacks;
static void on_result(void *arg, const void *result, size_t len) {
  (void)arg;
  if (len == 64 * sizeof(int64_t) && ((const int64_t *)result)[63] == 63 * 63)
    atomic_fetch_add(&callbacks, 1);
}

static void check_callbacks(mp_pool_t *pool) {
  int64_t *in = iota(64), out[64];
  mp_async_opts_t o = {.callback = on_result};
  mp_async_t *a = mp_pool_map_async(pool, square, in, sizeof *in, out,
                                    sizeof *out, 64, 1, &o);
  CHECK(a != NULL);
  CHECK_RC(0, mp_async_get(a, MP_FOREVER, NULL, NULL));
  CHECK(atomic_load(&callbacks) == 1);
  mp_async_free(a);
  free(in);
}

static int run_equal(const char *method) {
  mp_pool_opts_t po = {.ctx = mp_get_context(method), .task_timeout = 5.0};
  mp_mpi_opts_t mo = {.local_processes = 2};
  mp_pool_t *pool = mp_pool_new_mpi(&po, &mo);
  if (mp_mpi_rank() != 0) {
    int served = pool == NULL && errno == 0;
    return finalize() == 0 && served ? 0 : 1;
  }
  CHECK(pool != NULL);
  if (!pool)
    return 1;
  po.processes = 2;
  mp_pool_t *local = mp_pool_new(&po);
  CHECK(local != NULL);
  check_map(pool);
  check_spread(pool);
  compare_map(local, pool, square, 10000, 0, sizeof(int64_t), false);
  compare_map(local, pool, square, 1001, 7, sizeof(int64_t), true);
  compare_map(local, pool, mixed, 120, 4, sizeof(int64_t), false);
  compare_map(local, pool, mixed, 120, 3, sizeof(int64_t), true);
  compare_map(local, pool, status_only, 300, 0, 0, false);
  check_remote_errors(pool);
  check_imap(pool, false);
  check_imap(pool, true);
  check_apply(pool);
  check_callbacks(pool);
  mp_pool_close(pool);
  CHECK_RC(0, mp_pool_join(pool));
  mp_pool_free(pool);
  mp_pool_free(local);
  CHECK_RC(0, finalize());
  return failures;
}

/* ---- life cycle -----------------------------------------------------------
 */

static int slow_square(const void *in, void *out) {
  usleep(30000);
  return square(in, out);
}

/* close then join with chunks out on other ranks: join waits for them and
 * every item is done; terminate with chunks out: what was not done fails
 * with MP_ECLOSED, nothing hangs, and the ranks are free for a new pool. */
static int run_lifecycle(void) {
  mp_mpi_opts_t mo = {.local_processes = 1};
  for (int round = 0; round < 2; round++) {
    mp_pool_t *pool = mp_pool_new_mpi(NULL, &mo);
    if (mp_mpi_rank() != 0) {
      if (pool || errno != 0)
        return 1;
      continue;
    }
    CHECK(pool != NULL);
    if (!pool)
      return 1;
    size_t n = 60;
    int64_t *in = iota(n), *out = calloc(n, sizeof *out);
    mp_async_t *a = mp_pool_map_async(pool, slow_square, in, sizeof *in, out,
                                      sizeof *out, n, 1, NULL);
    CHECK(a != NULL);
    if (round == 0) {
      CHECK_RC(0, mp_pool_close(pool));
      CHECK_RC(0, mp_pool_join(pool));
      CHECK(mp_async_ready(a));
      CHECK_RC(0, mp_async_get(a, 0, NULL, NULL));
      for (size_t k = 0; k < n; k++)
        CHECK(out[k] == (int64_t)(k * k));
    } else {
      usleep(100000); /* some items done, some out on the ranks */
      CHECK_RC(0, mp_pool_terminate(pool));
      int rc = mp_async_get(a, MP_FOREVER, NULL, NULL);
      CHECK(rc == MP_ECLOSED || rc == 0);
      for (size_t k = 0; k < n; k++) {
        int e = mp_async_item(a, k, NULL);
        CHECK(e == 0 || e == MP_ECLOSED);
        if (e == 0)
          CHECK(out[k] == (int64_t)(k * k));
      }
    }
    mp_async_free(a);
    mp_pool_free(pool);
    free(in);
    free(out);
  }
  CHECK_RC(0, finalize());
  return failures;
}

/* ---- losses -------------------------------------------------------------- */

/* The rank's own pid, for its workers under every start method (set before
 * the pool, so that a forkserver inherits it too). */
static void export_rank_pid(void) {
  char pid[32];
  snprintf(pid, sizeof pid, "%d", (int)getpid());
  setenv("MPT_RANK_PID", pid, 1);
}

/* On rank 2 the task kills its rank, once. */
static int square_or_kill_rank(const void *in, void *out) {
  if (task_rank() == 2) {
    kill((pid_t)atoi(getenv("MPT_RANK_PID")), SIGKILL);
    pause(); /* ends with the rank */
  }
  usleep(2000);
  return square(in, out);
}

static int run_loss(int retries, const char *method) {
  mp_pool_opts_t po = {.ctx = mp_get_context(method)};
  mp_mpi_opts_t mo = {.local_processes = 1, .max_retries = retries};
  mp_pool_t *pool = mp_pool_new_mpi(&po, &mo);
  if (mp_mpi_rank() != 0)
    return finalize() == MP_ELOST ? 0 : 1;
  CHECK(pool != NULL);
  if (!pool)
    return 1;
  size_t n = 400;
  int64_t *in = iota(n), *out = calloc(n, sizeof *out);
  mp_async_t *a = mp_pool_map_async(pool, square_or_kill_rank, in, sizeof *in,
                                    out, sizeof *out, n, 10, NULL);
  CHECK(a != NULL);
  int rc = mp_async_get(a, MP_FOREVER, NULL, NULL);
  size_t lost = 0;
  for (size_t k = 0; k < n; k++) {
    int e = mp_async_item(a, k, NULL);
    CHECK(e == 0 || e == MP_ELOST);
    lost += e == MP_ELOST;
    if (e == 0)
      CHECK(out[k] == (int64_t)(k * k));
  }
  if (retries >= 0) {
    CHECK_RC(0, rc);
    CHECK(lost == 0);
  } else {
    CHECK_RC(MP_ELOST, rc);
    CHECK(lost > 0);
  }
  mp_async_free(a);
  /* The pool goes on with the ranks it has. */
  CHECK_RC(0,
           mp_pool_map(pool, square, in, sizeof *in, out, sizeof *out, n, 0));
  mp_pool_free(pool);
  CHECK_RC(MP_ELOST, finalize());
  free(in);
  free(out);
  return failures;
}

static int run_rootloss(void) {
  mp_mpi_opts_t mo = {.local_processes = 1, .liveness_timeout = 2.0};
  mp_pool_t *pool = mp_pool_new_mpi(NULL, &mo);
  if (mp_mpi_rank() == 0) {
    /* The verdict first: what is checked is that the others end. */
    printf("mpi-test: PASS\n");
    fflush(stdout);
    raise(SIGKILL);
  }
  (void)pool;
  return 1; /* never: the rank ends when rank 0 is lost */
}

static int run_abort(void) {
  mp_mpi_opts_t mo = {.local_processes = 1};
  mp_pool_t *pool = mp_pool_new_mpi(NULL, &mo);
  if (mp_mpi_rank() != 0)
    return 1; /* killed by the launcher */
  printf("mpi-test: PASS\n");
  fflush(stdout);
  size_t n = 400;
  int64_t *in = iota(n), *out = calloc(n, sizeof *out);
  mp_pool_map(pool, square_or_kill_rank, in, sizeof *in, out, sizeof *out, n,
              10);
  return 1; /* the launcher ends the job first */
}

static int run_build(void) {
  mp_pool_t *pool = mp_pool_new_mpi(NULL, NULL);
  int ok = pool == NULL && errno == ENOEXEC;
#ifdef MPT_OTHER_BUILD
  /* Another build: a different program text, so a different build id. */
  fprintf(stderr, "mpi-test: rank %d is the other build\n", mp_mpi_rank());
#endif
  if (mp_mpi_rank() == 0)
    CHECK(ok);
  mp_pool_free(pool);
  CHECK_RC(0, finalize());
  return ok ? failures : 1;
}

/* The items on rank 2 never end: the network test cuts its link. */
static int square_hold_on_2(const void *in, void *out) {
  if (task_rank() == 2)
    pause();
  usleep(2000);
  return square(in, out);
}

static int run_hold(void) {
  mp_mpi_opts_t mo = {
      .local_processes = 1, .max_retries = -1, .liveness_timeout = 2.0};
  mp_pool_t *pool = mp_pool_new_mpi(NULL, &mo);
  if (mp_mpi_rank() != 0)
    return finalize() == MP_ELOST ? 0 : 1;
  size_t n = 200;
  int64_t *in = iota(n), *out = calloc(n, sizeof *out);
  printf("mpi-test: mapping\n");
  fflush(stdout);
  mp_async_t *a = mp_pool_map_async(pool, square_hold_on_2, in, sizeof *in, out,
                                    sizeof *out, n, 5, NULL);
  CHECK_RC(MP_ELOST, mp_async_get(a, MP_FOREVER, NULL, NULL));
  for (size_t k = 0; k < n; k++) {
    int e = mp_async_item(a, k, NULL);
    CHECK(e == 0 || e == MP_ELOST);
    if (e == 0)
      CHECK(out[k] == (int64_t)(k * k));
  }
  mp_async_free(a);
  mp_pool_free(pool);
  CHECK_RC(MP_ELOST, finalize());
  return failures;
}

/* ---- late data ------------------------------------------------------------
 * Ranks meet through marker files named by the run's tag (run.sh gives
 * every rank MPT_TAG): waiting for one is waiting for an event, with a
 * deadline only so that a broken run ends. */

static void marker_path(const char *name, char *path, size_t cap) {
  const char *tag = getenv("MPT_TAG");
  snprintf(path, cap, "/tmp/mpt-%s-%s", tag ? tag : "untagged", name);
}

static void marker_set(const char *name) {
  char path[256];
  marker_path(name, path, sizeof path);
  int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  if (fd >= 0)
    close(fd);
}

static bool marker_wait(const char *name, int seconds) {
  char path[256];
  marker_path(name, path, sizeof path);
  for (int i = 0;; i++) {
    if (access(path, F_OK) == 0)
      return true;
    if (i >= seconds * 100)
      return false;
    usleep(10000);
  }
}

static void marker_clear(const char *name) {
  char path[256];
  marker_path(name, path, sizeof path);
  unlink(path);
}

/* Items large enough that MPI sends a chunk's output by rendezvous: the
 * sender's call returns only once the data is at rank 0. */
#define LATE_ITEM 2048 /* int64 words */

/* Right values, but poison on rank 2 (its data must never be taken). Rank
 * 0's worker waits until rank 2 runs something, so that rank 2 has work
 * whatever the timing. */
static int fill_or_poison(const void *in, void *out) {
  int64_t x = *(const int64_t *)in, v = x * x, *o = out;
  int64_t rank = task_rank();
  if (rank == 2) {
    marker_set("started");
    v = -1;
  } else if (rank == 0) {
    marker_wait("started", 60);
  }
  for (int i = 0; i < LATE_ITEM; i++)
    o[i] = v;
  return 0;
}

/* Rank 2, its first result: once rank 0 has the header, the rank cuts its
 * liveness connection (rank 0 takes it for lost and gives its chunks back)
 * and sends the rest only after rank 0's map returned; then it ends. */
static void late_hook(int part) {
  static bool cut;
  if (task_rank() != 2)
    return;
  if (part == 0 && !cut) {
    cut = true;
    mp__mpi_test_cut_liveness();
    if (!marker_wait("mapped", 60))
      _exit(1);
  } else if (part == 1 && cut) {
    marker_set("sent");
    _exit(0);
  }
}

static bool late_right(const int64_t *out, size_t n) {
  for (size_t k = 0; k < n; k++)
    for (int i = 0; i < LATE_ITEM; i++)
      if (out[k * LATE_ITEM + i] != (int64_t)(k * k))
        return false;
  return true;
}

static int run_late(void) {
  mp__mpi_result_hook = late_hook;
  mp_mpi_opts_t mo = {.local_processes = 1};
  mp_pool_t *pool = mp_pool_new_mpi(NULL, &mo);
  if (mp_mpi_rank() != 0)
    return finalize() == MP_ELOST ? 0 : 1;
  CHECK(pool != NULL);
  if (!pool)
    return 1;
  size_t n = 96, bytes = n * LATE_ITEM * sizeof(int64_t);
  int64_t *in = iota(n);
  /* In the arena: the chunks' outputs are written in place, so data that
   * landed late would show here. */
  int64_t *out = mp_raw_alloc(bytes);
  mp_async_t *a = mp_pool_map_async(pool, fill_or_poison, in, sizeof *in, out,
                                    LATE_ITEM * sizeof(int64_t), n, 4, NULL);
  CHECK(a != NULL);
  CHECK_RC(0, mp_async_get(a, MP_FOREVER, NULL, NULL));
  CHECK(late_right(out, n));
  mp_async_free(a);
  marker_set("mapped");
  /* Rank 0 keeps MPI going (maps on the ranks left) until rank 2's late
   * data is in: it must not have landed in the job. */
  int64_t small[64];
  bool sent = false;
  for (int i = 0; i < 6000 && !(sent = marker_wait("sent", 0)); i++) {
    CHECK_RC(0, mp_pool_map(pool, square, in, sizeof *in, small, sizeof *small,
                            64, 4));
    usleep(10000);
  }
  CHECK(sent);
  CHECK_RC(0, mp_pool_map(pool, square, in, sizeof *in, small, sizeof *small,
                          64, 4));
  CHECK(late_right(out, n));
  mp_pool_free(pool);
  CHECK_RC(MP_ELOST, finalize());
  mp_raw_free(out);
  free(in);
  marker_clear("started");
  marker_clear("mapped");
  marker_clear("sent");
  return failures;
}

/* A task in a library loaded with dlopen at the same path everywhere, but
 * another build of it on ranks 1 and 2 (plugin.sh): the items there fail
 * with -ENOEXEC instead of running the wrong code; rank 0's run. Rank 0's
 * one worker holds its first item until an item was refused (plugin.c),
 * so that the other ranks take chunks whatever the timing. */
static int run_plugin(const char *path) {
  void *lib = dlopen(path, RTLD_NOW);
  mp_pool_map_fn fn =
      lib ? (mp_pool_map_fn)dlsym(lib, "mpt_plugin_square") : NULL;
  mp_mpi_opts_t mo = {.local_processes = 1};
  mp_pool_t *pool = mp_pool_new_mpi(NULL, &mo);
  if (mp_mpi_rank() != 0)
    return finalize() == 0 ? 0 : 1;
  CHECK(fn != NULL && pool != NULL);
  if (!fn || !pool)
    return 1;
  size_t n = 48, refused = 0, count = 0;
  int64_t *in = iota(n), v;
  mp_iter_t *it =
      mp_pool_imap_unordered(pool, fn, in, sizeof *in, sizeof v, n, 1);
  CHECK(it != NULL);
  mp_iter_item_t item;
  while (it && mp_iter_next(it, MP_FOREVER, &v, &item) == 1) {
    count++;
    CHECK(item.error == 0 || item.error == -ENOEXEC);
    if (item.error == -ENOEXEC && refused++ == 0)
      marker_set("go");
    if (item.error == 0)
      CHECK(v == (int64_t)(item.index * item.index)); /* rank 0's build */
  }
  CHECK(count == n);
  CHECK(refused > 0);
  mp_iter_free(it);
  mp_pool_free(pool);
  free(in);
  marker_clear("go");
  CHECK_RC(0, finalize());
  return failures;
}

int main(int argc, char **argv) {
  mp_main(argc, argv);
  export_rank_pid();
  if (mp_mpi_init(&argc, &argv) != 0 || argc < 2) {
    fprintf(stderr, "usage: mpirun ... %s equal|loss|rootloss|abort|build\n",
            argv[0]);
    return 2;
  }
  const char *what = argv[1];
  int rc = 2;
  if (strcmp(what, "equal") == 0)
    rc = run_equal(argc > 2 ? argv[2] : "fork");
  else if (strcmp(what, "loss") == 0)
    rc = run_loss(argc > 2 ? atoi(argv[2]) : 0, argc > 3 ? argv[3] : "fork");
  else if (strcmp(what, "lifecycle") == 0)
    rc = run_lifecycle();
  else if (strcmp(what, "rootloss") == 0)
    rc = run_rootloss();
  else if (strcmp(what, "abort") == 0)
    rc = run_abort();
  else if (strcmp(what, "build") == 0)
    rc = run_build();
  else if (strcmp(what, "plugin") == 0 && argc > 2)
    rc = run_plugin(argv[2]);
  else if (strcmp(what, "hold") == 0)
    rc = run_hold();
  else if (strcmp(what, "late") == 0)
    rc = run_late();
  if (mp_mpi_rank() == 0 && rc == 0) {
    printf("mpi-test: PASS\n");
    fflush(stdout);
  }
  return rc ? rc : finalized == MP_ELOST ? 3 : 0;
}

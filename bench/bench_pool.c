/* The pool against Python's Pool(2) (bench_pool.py) and against the raw
 * limit: hand-made workers forked once, fed through a MAP_SHARED array and
 * futexes, claiming items with one atomic add (no robustness at all).
 *
 * Rows (ns per task):
 *   - map of 200,000 trivial tasks (x -> 2x), automatic chunksize and
 *     chunksize 1;
 *   - apply_async + get of one trivial task (the round trip);
 *   - map of 8 CPU-bound tasks of about 0.2 s on 2 workers (raw: 2 forked
 *     workers taking 4 each); the efficiency (speedup / 2) goes to stderr;
 *   - the trivial map with task_timeout set (raw: the same map in a pool
 *     without it), the cost of the failure handling.
 * Optional argument: the start method of the pool (default: fork). */
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mproc.h>

#include "bench_common.h"

#define TRIVIAL_N 200000
#define CPU_TASKS 8
#define WORKERS   2

/* ---- Tasks --------------------------------------------------------------- */

static int double_it(const void *in, void *out) {
  *(int64_t *)out = 2 * *(const int64_t *)in;
  return 0;
}

static int double_bytes(const void *in, size_t in_len, void *out,
                        size_t out_cap, size_t *out_len) {
  (void)in_len;
  (void)out_cap;
  *(int64_t *)out = 2 * *(const int64_t *)in;
  *out_len = sizeof(int64_t);
  return 0;
}

/* A dependent chain the compiler cannot shorten: about `n` cycles. */
static uint64_t burn_loop(uint64_t n) {
  uint64_t x = n;
  for (uint64_t i = 0; i < n; i++)
    x = x * 6364136223846793005u + 1442695040888963407u;
  return x;
}

static int burn(const void *in, void *out) {
  *(uint64_t *)out = burn_loop(*(const uint64_t *)in);
  return 0;
}

/* ---- The raw reference: persistent forked workers ------------------------ */

typedef struct raw_pool {
  _Atomic uint32_t gen;  /* bumped for each job */
  _Atomic uint32_t done; /* workers finished with the current job */
  _Atomic uint64_t next; /* next item to claim */
  _Atomic uint32_t quit;
  uint32_t workers;
  uint32_t kind; /* 0: double, 1: burn */
  uint64_t n, chunk;
  int64_t in[TRIVIAL_N];
  int64_t out[TRIVIAL_N];
} raw_pool_t;

static void futex_wait(_Atomic uint32_t *word, uint32_t value) {
  syscall(SYS_futex, word, FUTEX_WAIT, value, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *word) {
  syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

/* Waits while *word == value: spins up to spin_ns, then sleeps (what the
 * pool does too: waking a sleeper costs tens of us on a virtual machine). */
static uint32_t wait_change(_Atomic uint32_t *word, uint32_t value,
                            uint64_t spin_ns) {
  uint64_t t0 = bench_now_ns();
  uint32_t now;
  while ((now = atomic_load(word)) == value) {
    if (bench_now_ns() - t0 < spin_ns)
      bench_cpu_relax();
    else
      futex_wait(word, value);
  }
  return now;
}

static void raw_worker(raw_pool_t *rp) {
  uint32_t seen = 0;
  for (;;) {
    uint32_t gen = wait_change(&rp->gen, seen, 50000);
    seen = gen;
    if (atomic_load(&rp->quit))
      _exit(0);
    uint64_t i;
    while ((i = atomic_fetch_add(&rp->next, rp->chunk)) < rp->n) {
      uint64_t end = i + rp->chunk < rp->n ? i + rp->chunk : rp->n;
      for (; i < end; i++)
        rp->kind ? burn(&rp->in[i], &rp->out[i])
                 : double_it(&rp->in[i], &rp->out[i]);
    }
    if (atomic_fetch_add(&rp->done, 1) + 1 == rp->workers)
      futex_wake(&rp->done);
  }
}

static raw_pool_t *raw_start(uint32_t workers, pid_t *pids) {
  raw_pool_t *rp = mmap(NULL, sizeof *rp, PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (rp == MAP_FAILED)
    exit(1);
  rp->workers = workers;
  for (uint32_t w = 0; w < workers; w++)
    if ((pids[w] = fork()) == 0)
      raw_worker(rp);
  return rp;
}

/* One job: copy in, run, copy out, as the pool does. */
static void raw_run(raw_pool_t *rp, uint32_t kind, const int64_t *in,
                    int64_t *out, uint64_t n, uint64_t chunk) {
  memcpy(rp->in, in, n * sizeof *in);
  rp->kind = kind;
  rp->n = n;
  rp->chunk = chunk;
  atomic_store(&rp->next, 0);
  atomic_store(&rp->done, 0);
  atomic_fetch_add(&rp->gen, 1);
  futex_wake(&rp->gen);
  uint32_t done;
  while ((done = atomic_load(&rp->done)) != rp->workers)
    wait_change(&rp->done, done, 20000);
  memcpy(out, rp->out, n * sizeof *out);
}

static void raw_stop(raw_pool_t *rp, const pid_t *pids) {
  atomic_store(&rp->quit, 1);
  atomic_fetch_add(&rp->gen, 1);
  futex_wake(&rp->gen);
  for (uint32_t w = 0; w < rp->workers; w++)
    waitpid(pids[w], NULL, 0);
  munmap(rp, sizeof *rp);
}

/* ---- Measurements ------------------------------------------------------- */

typedef struct trivial {
  mp_pool_t *pool;
  raw_pool_t *raw;
  int64_t *in, *out;
  size_t chunk; /* 0: Python's choice */
  int maps;     /* maps per measurement (0: 1) */
} trivial_t;

static size_t python_chunksize(size_t n) {
  size_t div = 4 * WORKERS;
  return n / div + (n % div != 0);
}

static void check(const trivial_t *t, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    if (t->out[i] != 2 * t->in[i]) {
      fprintf(stderr, "bench_pool: wrong result at %llu\n",
              (unsigned long long)i);
      exit(1);
    }
  }
}

static double mproc_map(void *arg, int n) {
  trivial_t *t = arg;
  memset(t->out, 0, (size_t)n * sizeof *t->out);
  int maps = t->maps ? t->maps : 1;
  uint64_t t0 = bench_now_ns();
  for (int i = 0; i < maps; i++)
    if (mp_pool_map(t->pool, double_it, t->in, 8, t->out, 8, (size_t)n,
                    t->chunk) != 0)
      exit(1);
  double ns = (double)(bench_now_ns() - t0) / n / maps;
  check(t, (uint64_t)n);
  return ns;
}

static double raw_map(void *arg, int n) {
  trivial_t *t = arg;
  memset(t->out, 0, (size_t)n * sizeof *t->out);
  uint64_t t0 = bench_now_ns();
  size_t chunk = t->chunk ? t->chunk : python_chunksize((size_t)n);
  raw_run(t->raw, 0, t->in, t->out, (uint64_t)n, chunk);
  double ns = (double)(bench_now_ns() - t0) / n;
  check(t, (uint64_t)n);
  return ns;
}

static double mproc_apply(void *arg, int n) {
  trivial_t *t = arg;
  uint64_t t0 = bench_now_ns();
  for (int i = 0; i < n; i++) {
    int64_t x = i;
    mp_async_t *a =
        mp_pool_apply_async(t->pool, double_bytes, &x, sizeof x, NULL);
    const void *result;
    if (!a || mp_async_get(a, MP_FOREVER, &result, NULL) != 0 ||
        *(const int64_t *)result != 2 * x)
      exit(1);
    mp_async_free(a);
  }
  return (double)(bench_now_ns() - t0) / n;
}

static double raw_apply(void *arg, int n) {
  trivial_t *t = arg;
  uint64_t t0 = bench_now_ns();
  for (int i = 0; i < n; i++) {
    int64_t x = i, y;
    raw_run(t->raw, 0, &x, &y, 1, 1);
    if (y != 2 * x)
      exit(1);
  }
  return (double)(bench_now_ns() - t0) / n;
}

typedef struct cpu {
  mp_pool_t *pool;
  raw_pool_t *raw;
  uint64_t loops;
} cpu_t;

static double mproc_cpu(void *arg, int n) {
  cpu_t *c = arg;
  uint64_t in[CPU_TASKS], out[CPU_TASKS];
  for (int i = 0; i < CPU_TASKS; i++)
    in[i] = c->loops;
  uint64_t t0 = bench_now_ns();
  if (mp_pool_map(c->pool, burn, in, 8, out, 8, CPU_TASKS, 0) != 0)
    exit(1);
  return (double)(bench_now_ns() - t0) / n;
}

static double raw_cpu(void *arg, int n) {
  cpu_t *c = arg;
  int64_t in[CPU_TASKS], out[CPU_TASKS];
  for (int i = 0; i < CPU_TASKS; i++)
    in[i] = (int64_t)c->loops;
  uint64_t t0 = bench_now_ns();
  raw_run(c->raw, 1, in, out, CPU_TASKS, 1);
  return (double)(bench_now_ns() - t0) / n;
}

static double serial_task(uint64_t loops) {
  uint64_t t0 = bench_now_ns();
  volatile uint64_t sink = burn_loop(loops);
  (void)sink;
  return (double)(bench_now_ns() - t0);
}

/* Loops of burn_loop that take about `seconds` here: the fastest of a few
 * runs, the one least disturbed by the rest of the machine. */
static uint64_t calibrate(double seconds) {
  uint64_t loops = 1u << 20;
  while (serial_task(loops) < 2e7)
    loops *= 2;
  double best = serial_task(loops);
  for (int i = 0; i < 4; i++) {
    double ns = serial_task(loops);
    best = ns < best ? ns : best;
  }
  return (uint64_t)((double)loops * seconds * 1e9 / best);
}

/* The CPU-bound row: mproc, raw and one serial task in alternation, so
 * that the efficiency (speedup / cores) compares runs under the same
 * load. */
static void cpu_row(cpu_t *c) {
  enum { REPS = 5 };
  double mine[REPS], ref[REPS], serial[REPS];
  for (int i = 0; i < REPS; i++) {
    mine[i] = mproc_cpu(c, CPU_TASKS);
    ref[i] = raw_cpu(c, CPU_TASKS);
    serial[i] = serial_task(c->loops);
  }
  qsort(mine, REPS, sizeof mine[0], bench_compare_double);
  qsort(ref, REPS, sizeof ref[0], bench_compare_double);
  qsort(serial, REPS, sizeof serial[0], bench_compare_double);
  bench_row("pool map 8 CPU tasks of 0.2 s (per task)", mine[REPS / 2],
            ref[REPS / 2], "forked workers, atomic claims");
  fprintf(stderr,
          "bench_pool: CPU-bound efficiency (speedup / %d cores): mproc "
          "%.3f, raw %.3f\n",
          WORKERS, serial[REPS / 2] / (mine[REPS / 2] * WORKERS),
          serial[REPS / 2] / (ref[REPS / 2] * WORKERS));
}

static mp_pool_t *pool_new(mp_context_t *ctx, double task_timeout) {
  mp_pool_opts_t opts = {
      .processes = WORKERS, .ctx = ctx, .task_timeout = task_timeout};
  mp_pool_t *pool = mp_pool_new(&opts);
  if (!pool) {
    fprintf(stderr, "bench_pool: mp_pool_new: %s\n", mp_strerror(-errno));
    exit(1);
  }
  return pool;
}

int main(int argc, char **argv) {
  if (mp_main(argc, argv) != 0)
    return 1;
  mp_context_t *ctx = mp_get_context(argc > 1 ? argv[1] : "fork");
  if (!ctx)
    return 1;
  pid_t pids[WORKERS], ping_pid;
  raw_pool_t *raw = raw_start(WORKERS, pids);
  raw_pool_t *ping = raw_start(1, &ping_pid);
  trivial_t t = {.pool = pool_new(ctx, 0), .raw = raw};
  t.in = malloc(TRIVIAL_N * sizeof *t.in);
  t.out = malloc(TRIVIAL_N * sizeof *t.out);
  for (int i = 0; i < TRIVIAL_N; i++)
    t.in[i] = i;
  double mine, ref;

  mproc_map(&t, TRIVIAL_N); /* warm up: the workers, the pool's buffers */
  bench_pair(mproc_map, &t, raw_map, &t, TRIVIAL_N, 9, &mine, &ref);
  bench_row("pool map x->2x, auto chunksize (per task)", mine, ref,
            "forked workers, atomic claims");
  t.chunk = 1;
  bench_pair(mproc_map, &t, raw_map, &t, TRIVIAL_N, 5, &mine, &ref);
  bench_row("pool map x->2x, chunksize 1 (per task)", mine, ref,
            "forked workers, atomic claims");

  trivial_t one = t;
  one.raw = ping;
  bench_pair(mproc_apply, &t, raw_apply, &one, 2000, 7, &mine, &ref);
  bench_row("pool apply_async+get round trip", mine, ref,
            "futex ping-pong with a forked worker, spinning");

  /* The failure handling's cost: the same map with task_timeout set. */
  /* Ten maps a measurement: two pools in alternation, each waking its
   * sleeping workers, would otherwise measure mostly the wake-ups. */
  trivial_t timed = t;
  timed.pool = pool_new(ctx, 10.0);
  timed.chunk = t.chunk = 0;
  timed.maps = t.maps = 10;
  mproc_map(&timed, TRIVIAL_N);
  bench_pair(mproc_map, &timed, mproc_map, &t, TRIVIAL_N, 9, &mine, &ref);
  bench_row("pool map x->2x, task_timeout set (per task)", mine, ref,
            "the same map without task_timeout");
  mp_pool_free(timed.pool);

  cpu_t c = {.pool = t.pool, .raw = raw, .loops = calibrate(0.2)};
  cpu_row(&c);

  mp_pool_free(t.pool);
  raw_stop(raw, pids);
  raw_stop(ping, &ping_pid);
  free(t.in);
  free(t.out);
  return 0;
}

/* The pool on MPI against the local pool (and mpi4py.futures when Debian's
 * python3-mpi4py is installed), on 1, 2 and 3 ranks of this host.
 *
 * Run without a launcher (as `make bench` does), it runs itself under
 * mpirun for each rank count, then the Python twin (bench_mpi.py). Rows:
 *   - a trivial map of 1M items (x -> x*x): the MPI pool's whole map
 *     against the local pool's (goal: within 2x);
 *   - a CPU-bound map of 64 tasks of 50 ms: the MPI pool's time against
 *     the local pool's on the same CPUs (goal: efficiency at least 0.9).
 * `bench_mpi cpu [RUNS]` runs the CPU-bound map alone, on 2 ranks of one
 * local process each against a local pool of 2 processes (2 CPU-bound
 * processes either way: no oversubscription on a 2-CPU host), RUNS times
 * in alternation (default 7), and prints each run and the medians with
 * three efficiencies: the local pool's time over the MPI pool's; the ideal
 * time (64 x 50 ms over the 2 CPUs, the tasks calibrated just before)
 * over the MPI pool's; and how busy the pool kept its workers (the tasks'
 * time over workers x the map's time: the one figure that the other
 * programs on a shared host hardly move, as it counts only the gaps the
 * pool leaves between tasks). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mproc.h"
#include "mproc/mpi.h"
#include "../bench_common.h"

#define TRIVIAL_N 1000000
#define CPU_TASKS 64
#define CPU_MS    50
#define REPS      9
#define CPU_RUNS  7

static int square(const void *in, void *out) {
  int64_t x = *(const int64_t *)in;
  *(int64_t *)out = x * x;
  return 0;
}

/* A CPU-bound task's output: its result (so that the loop must run), and
 * when it ran (CLOCK_MONOTONIC: one clock for every process of the host). */
typedef struct spin_out {
  uint64_t x, start, end;
} spin_out_t;

/* The input is the loop count, so every rank does the same work. */
static int spin(const void *in, void *out) {
  uint64_t loops = *(const uint64_t *)in, x = 1;
  spin_out_t *o = out;
  o->start = bench_now_ns();
  for (uint64_t i = 0; i < loops; i++)
    x = x * 6364136223846793005u + 1442695040888963407u;
  o->x = x;
  o->end = bench_now_ns();
  return 0;
}

static uint64_t thread_cpu_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* The loop count of a task of CPU_MS of CPU time (not of wall time, which
 * the other programs on a shared host stretch). */
static uint64_t calibrate(void) {
  uint64_t loops = 1000000;
  for (;;) {
    spin_out_t o;
    uint64_t t0 = thread_cpu_ns();
    spin(&loops, &o);
    uint64_t ns = thread_cpu_ns() - t0;
    if (ns > 20000000u)
      return (uint64_t)((double)loops * CPU_MS * 1e6 / (double)ns);
    loops *= 4;
  }
}

/* How busy the pool kept its workers during a map of wall ns: the tasks'
 * time over workers x wall. Unlike the time against an ideal one, it does
 * not move with what other programs take from the CPUs while a task runs,
 * only with the gaps the pool leaves between tasks. */
static double occupancy(const spin_out_t *o, size_t n, int workers,
                        double wall) {
  double busy = 0;
  for (size_t i = 0; i < n; i++)
    busy += (double)(o[i].end - o[i].start);
  return busy / (workers * wall);
}

typedef struct job {
  mp_pool_t *pool;
  mp_pool_map_fn fn;
  void *in, *out;
  size_t out_size, n, chunk;
} job_t;

static double run_map(void *arg, int iterations) {
  job_t *j = arg;
  uint64_t t0 = bench_now_ns();
  for (int i = 0; i < iterations; i++)
    if (mp_pool_map(j->pool, j->fn, j->in, 8, j->out, j->out_size, j->n,
                    j->chunk) != 0)
      fprintf(stderr, "bench_mpi: map failed\n");
  return (double)(bench_now_ns() - t0) / iterations;
}

/* The CPU-bound map on the MPI pool and on the local pool, runs times in
 * alternation (the machine is shared: an ideal time from one serial run
 * would move with the load); the row gives the medians. verbose: each
 * run too. */
typedef struct cpu_side {
  mp_pool_t *pool;
  int workers;
  double t[32], occupancy[32];
} cpu_side_t;

static void run_cpu(cpu_side_t *side, const uint64_t *loops, int i) {
  spin_out_t res[CPU_TASKS];
  job_t j = {side->pool, spin, (void *)loops, res, sizeof *res, CPU_TASKS, 1};
  side->t[i] = run_map(&j, 1);
  side->occupancy[i] = occupancy(res, CPU_TASKS, side->workers, side->t[i]);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof v[0], bench_compare_double);
  return v[n / 2];
}

/* The CPU-bound map on the MPI pool and on the local pool, runs times in
 * alternation (the machine is shared: an ideal time from one serial run
 * would move with the load); the row gives the medians. verbose: each
 * run too. */
static void bench_cpu(cpu_side_t *mpi, cpu_side_t *local, int runs,
                      bool verbose) {
  uint64_t loops[CPU_TASKS];
  uint64_t l = calibrate();
  for (int i = 0; i < CPU_TASKS; i++)
    loops[i] = l;
  if (runs > 32)
    runs = 32;
  run_cpu(mpi, loops, 0); /* warm-up */
  for (int i = 0; i < runs; i++) {
    run_cpu(mpi, loops, i);
    run_cpu(local, loops, i);
    if (verbose)
      fprintf(stderr,
              "bench_mpi: run %d: mpi %.3f s (workers busy %.3f), local "
              "%.3f s (%.3f)\n",
              i + 1, mpi->t[i] / 1e9, mpi->occupancy[i], local->t[i] / 1e9,
              local->occupancy[i]);
  }
  double t = median(mpi->t, runs), t_local = median(local->t, runs);
  double busy = median(mpi->occupancy, runs);
  double busy_local = median(local->occupancy, runs);
  int ranks = mp_mpi_size();
  /* The ideal: the work over the workers, or over the CPUs when there
   * are fewer. */
  int cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
  double work = (double)CPU_TASKS * CPU_MS * 1e6;
  double ideal = work / (mpi->workers < cpus ? mpi->workers : cpus);
  double ideal_local = work / (local->workers < cpus ? local->workers : cpus);
  char op[96];
  snprintf(op, sizeof op, "mpi map %d CPU tasks of %d ms, %d rank%s", CPU_TASKS,
           CPU_MS, ranks, ranks > 1 ? "s" : "");
  bench_row(op, t, t_local, "local pool, same host");
  fprintf(stderr,
          "bench_mpi: %d rank(s), %d workers (local pool: %d), CPU-bound, "
          "medians of %d: mpi %.3f s, local %.3f s; efficiency: relative to "
          "the local pool %.3f; against the ideal %.3f s %.3f (local pool: "
          "%.3f); workers busy %.3f (local pool: %.3f)\n",
          ranks, mpi->workers, local->workers, runs, t / 1e9, t_local / 1e9,
          t_local / t, ideal / 1e9, ideal / t, ideal_local / t_local, busy,
          busy_local);
}

/* 2 ranks of one process each against a local pool of 2. */
static int bench_cpu_only(int runs) {
  mp_mpi_opts_t mo = {.local_processes = 1};
  mp_pool_t *pool = mp_pool_new_mpi(NULL, &mo);
  if (mp_mpi_rank() != 0)
    return mp_mpi_finalize() == 0 ? 0 : 1;
  if (!pool)
    return 1;
  mp_pool_t *local = mp_pool_new(&(mp_pool_opts_t){.processes = 2});
  cpu_side_t mpi = {.pool = pool, .workers = 2};
  cpu_side_t ref = {.pool = local, .workers = 2};
  bench_cpu(&mpi, &ref, runs, true);
  mp_pool_free(local);
  mp_pool_free(pool);
  return mp_mpi_finalize() == 0 ? 0 : 1;
}

static int bench(bool quick) {
  mp_pool_t *pool = mp_pool_new_mpi(NULL, NULL);
  if (mp_mpi_rank() != 0)
    return mp_mpi_finalize() == 0 ? 0 : 1;
  if (!pool) {
    fprintf(stderr, "bench_mpi: mp_pool_new_mpi: %s\n", strerror(errno));
    return 1;
  }
  int ranks = mp_mpi_size();
  mp_pool_t *local = mp_pool_new(NULL);
  int64_t *in = malloc(TRIVIAL_N * sizeof *in);
  int64_t *out = malloc(TRIVIAL_N * sizeof *out);
  for (int64_t i = 0; i < TRIVIAL_N; i++)
    in[i] = i;
  job_t a = {pool, square, in, out, 8, TRIVIAL_N, 0};
  job_t b = {local, square, in, out, 8, TRIVIAL_N, 0};
  run_map(&a, 1); /* warm-up: the blocks, the workers' pages */
  run_map(&b, 1);
  double mine, ref;
  bench_pair(run_map, &a, run_map, &b, 1, REPS, &mine, &ref);
  char op[96];
  snprintf(op, sizeof op, "mpi map 1M x->x*x, %d rank%s (whole map)", ranks,
           ranks > 1 ? "s" : "");
  bench_row(op, mine, ref, "local pool, same host");
  fprintf(stderr,
          "bench_mpi: %d rank(s): trivial map %.2f ms (local %.2f ms, "
          "%.2fx)\n",
          ranks, mine / 1e6, ref / 1e6, mine / ref);
  if (!quick) {
    /* The workers as mp_pool_new_mpi and mp_pool_new count them here. */
    int cpus = mp_cpu_count(), per_rank = cpus / ranks > 0 ? cpus / ranks : 1;
    cpu_side_t mpi = {.pool = pool, .workers = per_rank * ranks};
    cpu_side_t here = {.pool = local, .workers = mp_pool_processes(local)};
    bench_cpu(&mpi, &here, 3, false);
  }
  mp_pool_free(local);
  mp_pool_free(pool);
  free(in);
  free(out);
  return mp_mpi_finalize() == 0 ? 0 : 1;
}

/* Without a launcher: this program under mpirun on 1..3 ranks, then the
 * Python twin on 2..3 (mpi4py.futures needs a worker rank). */
static int drive(const char *self, const char *arg) {
  const char *root = getuid() == 0 ? "--allow-run-as-root" : "";
  char cmd[4096];
  int rc = 0;
  if (strncmp(arg, "cpu", 3) == 0) {
    snprintf(cmd, sizeof cmd,
             "mpirun %s --oversubscribe --bind-to none -np 2 %s %s", root, self,
             arg);
    return system(cmd);
  }
  for (int ranks = 1; ranks <= 3; ranks++) {
    snprintf(cmd, sizeof cmd,
             "mpirun %s --oversubscribe --bind-to none -np %d %s %s", root,
             ranks, self, arg);
    rc |= system(cmd);
  }
  if (strcmp(arg, "quick") == 0)
    return rc;
  if (system("/usr/bin/python3 -c 'import mpi4py.futures' 2>/dev/null") != 0) {
    fprintf(stderr, "bench_mpi: no mpi4py (apt-get install python3-mpi4py): "
                    "no mpi4py.futures rows\n");
    return rc;
  }
  for (int ranks = 2; ranks <= 3; ranks++) {
    snprintf(cmd, sizeof cmd,
             "mpirun %s --oversubscribe --bind-to none -np %d /usr/bin/python3 "
             "-m mpi4py.futures %s/bench/mpi/bench_mpi.py",
             root, ranks, MPROC_SOURCE_DIR);
    rc |= system(cmd);
  }
  return rc;
}

int main(int argc, char **argv) {
  if (mp_main(argc, argv) != 0)
    return 1;
  /* quick: the trivial map only (no CPU-bound rows, no Python); cpu
   * [RUNS]: the CPU-bound map only, on 2 ranks. */
  bool quick = argc > 1 && strcmp(argv[1], "quick") == 0;
  bool cpu = argc > 1 && strcmp(argv[1], "cpu") == 0;
  int runs = cpu && argc > 2 ? atoi(argv[2]) : CPU_RUNS;
  if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMI_SIZE")) {
    char arg[32];
    snprintf(arg, sizeof arg, "%s", quick ? "quick" : "");
    if (cpu)
      snprintf(arg, sizeof arg, "cpu %d", runs > 0 ? runs : CPU_RUNS);
    return drive(argv[0], arg) ? 1 : 0;
  }
  if (mp_mpi_init(&argc, &argv) != 0)
    return 1;
  return cpu ? bench_cpu_only(runs > 0 ? runs : CPU_RUNS) : bench(quick);
}

/* Start+join of a trivial process, per start method, against the raw
 * system calls it stands on. */
#include <spawn.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mproc.h>

#include "bench_common.h"

extern char **environ;

static void trivial(void *arg) {
  (void)arg;
}

static double mproc_start_join(void *arg, int n) {
  mp_context_t *ctx = arg;
  mp_process_opts_t opts = {.ctx = ctx};
  uint64_t t0 = bench_now_ns();
  for (int i = 0; i < n; i++) {
    mp_process_t *p = mp_process_new(trivial, NULL, 0, &opts);
    if (!p || mp_process_start(p) != 0 || mp_process_join(p, MP_FOREVER)) {
      fprintf(stderr, "bench_process: start failed\n");
      exit(1);
    }
    mp_process_free(p);
  }
  return (double)(bench_now_ns() - t0) / n;
}

static double raw_fork(void *arg, int n) {
  (void)arg;
  uint64_t t0 = bench_now_ns();
  for (int i = 0; i < n; i++) {
    pid_t pid = fork();
    if (pid == 0)
      _exit(0);
    waitpid(pid, NULL, 0);
  }
  return (double)(bench_now_ns() - t0) / n;
}

/* posix_spawn of a tiny static binary (bench/tiny/true.c) and waitpid. */
static double raw_posix_spawn(void *arg, int n) {
  (void)arg;
  char *argv[] = {"tiny_true", NULL};
  uint64_t t0 = bench_now_ns();
  for (int i = 0; i < n; i++) {
    pid_t pid;
    if (posix_spawn(&pid, MPROC_TINY_TRUE, NULL, NULL, argv, environ) == 0)
      waitpid(pid, NULL, 0);
  }
  return (double)(bench_now_ns() - t0) / n;
}

/* The floor of spawn: posix_spawn of this very program, which returns from
 * main() at once (FLOOR_ARG). A spawned child is this program run up to
 * mp_main(): it cannot cost less than loading it. Built twice: linked
 * dynamically (bench_process, as most programs are: the dynamic loader's
 * work is then most of the floor) and statically with libmproc.a
 * (bench_process_static, MPROC_BENCH_STATIC: spawn rows only). */
#define FLOOR_ARG "--exit-at-once"

#ifdef MPROC_BENCH_STATIC
#define LINKED ", program linked statically"
#else
#define LINKED ""
#endif

static double floor_posix_spawn(void *arg, int n) {
  (void)arg;
  char *argv[] = {"bench_process", FLOOR_ARG, NULL};
  uint64_t t0 = bench_now_ns();
  for (int i = 0; i < n; i++) {
    pid_t pid;
    if (posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ) == 0)
      waitpid(pid, NULL, 0);
  }
  return (double)(bench_now_ns() - t0) / n;
}

/* The spawn row and its floor, measured in one alternation (mproc, floor,
 * static true, ...) so that all three see the same load: mproc against the
 * static true (the goal's ratio), the floor against the static true (what
 * loading a dynamically linked program costs by itself), and mproc against
 * the floor (what mproc adds). */
static void spawn_floor_rows(mp_context_t *ctx, int n, int reps) {
  double (*fns[3])(void *, int) = {mproc_start_join, floor_posix_spawn,
                                   raw_posix_spawn};
  void *args[3] = {ctx, NULL, NULL};
  double results[3][32], median[3];
  for (int r = 0; r < reps; r++)
    for (int f = 0; f < 3; f++)
      results[f][r] = fns[f](args[f], n);
  for (int f = 0; f < 3; f++) {
    qsort(results[f], (size_t)reps, sizeof results[f][0], bench_compare_double);
    median[f] = results[f][reps / 2];
  }
  bench_row("process start+join (spawn" LINKED ")", median[0], median[2],
            "posix_spawn of a static true");
  bench_row("spawn floor: exec of this program to main" LINKED, median[1],
            median[2], "posix_spawn of a static true");
  bench_row("process start+join (spawn" LINKED ") over its floor", median[0],
            median[1], "posix_spawn of this program to main");
}

static void *ballast(size_t bytes) {
  char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p != MAP_FAILED)
    memset(p, 1, bytes);
  return p;
}

/* One row: start+join under a method against its raw reference. The first
 * start also warms up (it starts the forkserver). */
static void row(const char *method, const char *what, int n, bool big_parent) {
  mp_context_t *ctx = mp_get_context(method);
  mp_process_t *probe =
      mp_process_new(trivial, NULL, 0, &(mp_process_opts_t){.ctx = ctx});
  if (mp_process_start(probe) != 0) {
    mp_process_free(probe);
    return;
  }
  mp_process_join(probe, MP_FOREVER);
  mp_process_free(probe);
  bool forked = strcmp(method, "fork") == 0 || big_parent;
  if (strcmp(method, "spawn") == 0 && !big_parent) {
    spawn_floor_rows(ctx, n, 9);
    return;
  }
  char op[96];
  snprintf(op, sizeof op, "process start+join%s (%s)", what, method);
  double mine, raw;
  bench_pair(mproc_start_join, ctx, forked ? raw_fork : raw_posix_spawn, NULL,
             n, big_parent ? 5 : 9, &mine, &raw);
  bench_row(op, mine, raw,
            forked ? "fork+_exit+waitpid" : "posix_spawn of a static true");
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], FLOOR_ARG) == 0)
    return 0;
  if (mp_main(argc, argv) != 0)
    return 1;
  const char *only = argc > 1 ? argv[1] : NULL;
#ifdef MPROC_BENCH_STATIC
  if (!only || strcmp(only, "spawn") == 0)
    row("spawn", "", 50, false);
  return 0;
#endif
  const char *methods[] = {"fork", "spawn", "forkserver"};
  for (int m = 0; m < 3; m++)
    if (!only || strcmp(only, methods[m]) == 0)
      row(methods[m], "", m == 0 ? 200 : 50, false);
  /* The same with a 256 MiB parent: fork grows with the parent's size,
   * spawn and forkserver must not. */
  void *big = ballast(256u << 20);
  for (int m = 0; m < 3 && big; m++)
    if (!only || strcmp(only, methods[m]) == 0)
      row(methods[m], ", 256 MiB parent", 20, true);
  return 0;
}

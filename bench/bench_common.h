/* Helpers shared by the benchmark programs: timing, medians, the row format
 * scripts/bench.sh reads ("row\t<operation>\t<mproc ns>\t<raw ns>\t<raw>"). */
#ifndef MPROC_BENCH_COMMON_H
#define MPROC_BENCH_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* The pause between two reads of a spin (the raw baselines' own copy of
 * the library's: x86's pause, aarch64's yield, else a compiler fence). */
static inline void bench_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  __asm__ __volatile__("yield" ::: "memory");
#else
  __asm__ __volatile__("" ::: "memory");
#endif
}

static inline uint64_t bench_now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int bench_compare_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median of reps measurements of fn(arg, iterations), in ns per op. */
static inline double bench_median(double (*fn)(void *arg, int iterations),
                                  void *arg, int iterations, int reps) {
  double results[32];
  if (reps > 32)
    reps = 32;
  for (int i = 0; i < reps; i++)
    results[i] = fn(arg, iterations);
  qsort(results, (size_t)reps, sizeof results[0], bench_compare_double);
  return results[reps / 2];
}

/* Measures two operations in alternation (a, b, a, b, ...) so that both
 * see the same load on a shared machine; medians in ns per op. */
static inline void bench_pair(double (*a)(void *arg, int iterations),
                              void *arg_a,
                              double (*b)(void *arg, int iterations),
                              void *arg_b, int iterations, int reps,
                              double *median_a, double *median_b) {
  double ra[32], rb[32];
  if (reps > 32)
    reps = 32;
  for (int i = 0; i < reps; i++) {
    ra[i] = a(arg_a, iterations);
    rb[i] = b(arg_b, iterations);
  }
  qsort(ra, (size_t)reps, sizeof ra[0], bench_compare_double);
  qsort(rb, (size_t)reps, sizeof rb[0], bench_compare_double);
  *median_a = ra[reps / 2];
  *median_b = rb[reps / 2];
}

static inline void bench_row(const char *operation, double mproc_ns,
                             double raw_ns, const char *raw_label) {
  printf("row\t%s\t%.1f\t%.1f\t%s\n", operation, mproc_ns, raw_ns, raw_label);
  fflush(stdout);
}

#endif

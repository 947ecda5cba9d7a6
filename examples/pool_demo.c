/* The process pool, as in Python:
 *
 *   with Pool(2) as pool:
 *       print(pool.map(square, range(10)))
 *       for done, r in enumerate(pool.imap_unordered(slow_square, range(6)),
 * 1): print(f"progress {done}/6") pool.apply_async(square, (7,),
 * callback=report) print(pool.starmap(power, [(2, 10), (3, 4), (10, 3)]))
 *       pool.close(); pool.join()
 *
 * Task functions take their input and write their output as bytes: map's
 * items are fixed-size (an int64 here, a struct for starmap), apply's are
 * any length. Every worker is a separate process (fork, or spawn and
 * forkserver with MPROC_START_METHOD): mp_main() must come first in main. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <mproc.h>

/* map form: one int64 in, one int64 out. */
static int square(const void *in, void *out) {
  int64_t x = *(const int64_t *)in;
  *(int64_t *)out = x * x;
  return 0;
}

static int slow_square(const void *in, void *out) {
  struct timespec pause = {0, 20 * 1000 * 1000};
  nanosleep(&pause, NULL);
  return square(in, out);
}

/* starmap is map over structs. */
struct power_args {
  int64_t base, exponent;
};

static int power(const void *in, void *out) {
  const struct power_args *a = in;
  int64_t result = 1;
  for (int64_t i = 0; i < a->exponent; i++)
    result *= a->base;
  *(int64_t *)out = result;
  return 0;
}

/* apply form: bytes in, bytes out (at most out_cap). */
static int square_bytes(const void *in, size_t in_len, void *out,
                        size_t out_cap, size_t *out_len) {
  if (in_len != sizeof(int64_t) || out_cap < sizeof(int64_t))
    return 1; /* the task's own error code: the result is MP_ETASK */
  *out_len = sizeof(int64_t);
  return square(in, out);
}

/* Runs in the parent, on the pool's thread, once the result is there. */
static void report(void *arg, const void *result, size_t len) {
  (void)len;
  printf("%s %lld\n", (const char *)arg, (long long)*(const int64_t *)result);
}

static void print_all(const char *label, const int64_t *v, size_t n) {
  printf("%s", label);
  for (size_t i = 0; i < n; i++)
    printf(" %lld", (long long)v[i]);
  printf("\n");
}

int main(int argc, char **argv) {
  if (mp_main(argc, argv) != 0)
    return 1;
  mp_pool_t *pool = mp_pool_new(&(mp_pool_opts_t){.processes = 2});
  if (!pool) {
    fprintf(stderr, "mp_pool_new: %s\n", mp_strerror(-errno));
    return 1;
  }

  int64_t in[10], out[10];
  for (int i = 0; i < 10; i++)
    in[i] = i;
  int rc =
      mp_pool_map(pool, square, in, sizeof in[0], out, sizeof out[0], 10, 0);
  if (rc != 0)
    printf("map failed: %s\n", mp_strerror(rc));
  print_all("map:", out, 10);

  /* Results as they come, while the others still run. */
  mp_iter_t *it = mp_pool_imap_unordered(pool, slow_square, in, sizeof in[0],
                                         sizeof(int64_t), 6, 1);
  int64_t sum = 0, value;
  if (!it)
    fprintf(stderr, "imap_unordered: %s\n", mp_strerror(-errno));
  for (int done = 1; it && mp_iter_next(it, MP_FOREVER, &value, NULL) == 1;
       done++) {
    sum += value;
    printf("progress %d/6\n", done);
  }
  mp_iter_free(it);
  printf("imap_unordered: sum of squares %lld\n", (long long)sum);

  int64_t seven = 7;
  mp_async_opts_t opts = {.callback = report, .arg = "apply_async callback:"};
  mp_async_t *a =
      mp_pool_apply_async(pool, square_bytes, &seven, sizeof seven, &opts);
  mp_async_wait(a, MP_FOREVER); /* the callback has run when this returns */
  mp_async_free(a);

  struct power_args args[] = {{2, 10}, {3, 4}, {10, 3}};
  int64_t powers[3];
  mp_pool_map(pool, power, args, sizeof args[0], powers, sizeof powers[0], 3,
              0);
  print_all("starmap:", powers, 3);

  mp_pool_close(pool);
  mp_pool_join(pool);
  mp_pool_free(pool);
  return 0;
}

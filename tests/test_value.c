/* Value and Array: shared bytes with the lock kinds Python allows, used
 * from several processes at once, and their error cases. */
#include <string.h>

#include "sync_fixtures.h"
#include "testing.h"

#define WORKERS    3
#define INCREMENTS 2000

struct counter_args {
  mp_value_t *v;
};

/* Python's classic: with v.get_lock(): v.value += 1. The RLock is taken
 * twice, as nested `with` blocks would. */
static void increment_child(void *arg) {
  mp_value_t *v = ((struct counter_args *)arg)->v;
  for (int i = 0; i < INCREMENTS; i++) {
    if (mp_value_acquire(v, MP_FOREVER) != 0)
      _exit(2);
    if (mp_value_lock(v) && mp_rlock_acquire(mp_value_lock(v), 0) != 0)
      _exit(3);
    long *n = mp_value_ptr(v);
    long seen = *n;
    sched_yield(); /* provoke: a lost update if the lock did not hold */
    *n = seen + 1;
    if (mp_value_lock(v))
      mp_rlock_release(mp_value_lock(v));
    mp_value_release(v);
  }
}

static void run_counter(mp_value_t *v) {
  struct counter_args a = {v};
  mp_process_t *p[WORKERS];
  for (int i = 0; i < WORKERS; i++)
    p[i] = start_child(increment_child, &a, sizeof a);
  for (int i = 0; i < WORKERS; i++)
    assert_int_equal(0, finish_child(p[i]));
  assert_int_equal(WORKERS * INCREMENTS, *(long *)mp_value_ptr(v));
}

/* Value(lock=True): an RLock of its own that makes += safe. */
static void test_value_own_rlock(void **state) {
  (void)state;
  mp_value_t *v = mp_value_new(sizeof(long), true);
  assert_non_null(v);
  assert_int_equal(0, *(long *)mp_value_ptr(v)); /* zeroed */
  assert_int_equal(sizeof(long), mp_value_size(v));
  assert_int_equal(1, mp_value_len(v));
  assert_non_null(mp_value_lock(v));
  assert_null(mp_value_plain_lock(v));
  assert_int_equal(0, (uintptr_t)mp_value_ptr(v) % 64);
  run_counter(v);
  /* The RLock is recursive and owned, as get_lock() is. */
  assert_mp_ok(mp_value_acquire(v, 0));
  assert_mp_ok(mp_value_acquire(v, 0));
  assert_int_equal(2, mp_rlock_count(mp_value_lock(v)));
  assert_mp_ok(mp_value_release(v));
  assert_mp_ok(mp_value_release(v));
  assert_mp(MP_ENOTOWNER, mp_value_release(v));
  mp_value_free(v);
}

/* Value(lock=<Lock>) and Value(lock=<RLock>): the caller's lock, shared by
 * two values and kept after they are freed. */
static void test_value_given_locks(void **state) {
  (void)state;
  mp_lock_t *l = mp_lock_new();
  mp_value_t *a = mp_value_new_with_lock(sizeof(long), l);
  mp_value_t *b = mp_value_new_with_lock(sizeof(long), l);
  assert_ptr_equal(l, mp_value_plain_lock(a));
  assert_null(mp_value_lock(a));
  assert_mp_ok(mp_value_acquire(a, 0));
  assert_mp(MP_ETIMEDOUT, mp_value_acquire(b, 0)); /* the same lock */
  assert_mp_ok(mp_value_release(b));
  assert_mp(MP_EOVERFLOW, mp_value_release(a));
  run_counter(a);
  mp_value_free(a);
  mp_value_free(b);
  assert_mp_ok(mp_lock_acquire(l, 0)); /* still alive */
  assert_mp_ok(mp_lock_release(l));
  mp_lock_free(l);

  mp_rlock_t *r = mp_rlock_new();
  mp_value_t *c = mp_value_new_with_rlock(8, r);
  assert_ptr_equal(r, mp_value_lock(c));
  run_counter(c);
  mp_value_free(c);
  assert_mp_ok(mp_rlock_acquire(r, 0));
  assert_mp_ok(mp_rlock_release(r));
  mp_rlock_free(r);
}

/* Value(lock=False): raw, no lock to take. */
static void test_value_no_lock(void **state) {
  (void)state;
  mp_value_t *v = mp_value_new(3, false);
  assert_non_null(v);
  assert_null(mp_value_lock(v));
  assert_null(mp_value_plain_lock(v));
  assert_mp(MP_ESTATE, mp_value_acquire(v, 0));
  assert_mp(MP_ESTATE, mp_value_release(v));
  memcpy(mp_value_ptr(v), "abc", 3);
  assert_memory_equal("abc", mp_value_ptr(v), 3);
  mp_value_free(v);
}

struct array_args {
  mp_value_t *a;
  int part;
};

static void fill_part_child(void *arg) {
  struct array_args *a = arg;
  int *x = mp_value_ptr(a->a);
  size_t n = mp_value_len(a->a) / WORKERS;
  for (size_t i = 0; i < n; i++)
    x[(size_t)a->part * n + i] = a->part * 1000 + (int)i;
}

/* Array: children fill their parts; the parent sees them all. */
static void test_array(void **state) {
  (void)state;
  mp_value_t *arr = mp_array_new(WORKERS * 100, sizeof(int), true);
  assert_non_null(arr);
  assert_int_equal(WORKERS * 100, mp_value_len(arr));
  assert_int_equal(WORKERS * 100 * sizeof(int), mp_value_size(arr));
  mp_process_t *p[WORKERS];
  for (int i = 0; i < WORKERS; i++) {
    struct array_args a = {arr, i};
    p[i] = start_child(fill_part_child, &a, sizeof a);
  }
  for (int i = 0; i < WORKERS; i++)
    assert_int_equal(0, finish_child(p[i]));
  int *x = mp_value_ptr(arr);
  for (int part = 0; part < WORKERS; part++)
    for (int i = 0; i < 100; i++)
      assert_int_equal(part * 1000 + i, x[part * 100 + i]);
  mp_value_free(arr);

  mp_value_t *empty = mp_array_new(0, sizeof(double), false);
  assert_non_null(empty); /* Array('d', 0) */
  assert_int_equal(0, mp_value_len(empty));
  assert_non_null(mp_value_ptr(empty));
  mp_value_free(empty);
}

/* A child checks the initial contents it was given. */
struct init_args {
  mp_value_t *value, *array;
  int *ok;
};

static void check_init_child(void *arg) {
  struct init_args *a = arg;
  const double *xs = mp_value_ptr(a->array);
  *a->ok = *(int *)mp_value_ptr(a->value) == 7 && mp_value_len(a->array) == 3 &&
           xs[0] == 1.5 && xs[1] == -2.0 && xs[2] == 0.25;
}

/* Value('i', 7), Array('d', [1.5, -2.0, 0.25]) in one call each, and
 * Array(..., lock=<Lock>) / lock=<RLock>. */
static void test_initial_contents_and_given_lock(void **state) {
  (void)state;
  int seven = 7;
  const double xs[] = {1.5, -2.0, 0.25};
  struct init_args a = {
      .value = mp_value_new_from(&seven, sizeof seven, true),
      .array = mp_array_new_from(xs, 3, sizeof xs[0], false),
      .ok = shared(64),
  };
  assert_non_null(a.value);
  assert_non_null(a.array);
  assert_non_null(mp_value_lock(a.value));
  assert_null(mp_value_lock(a.array));
  assert_int_equal(0,
                   finish_child(start_child(check_init_child, &a, sizeof a)));
  assert_true(*a.ok);
  mp_value_free(a.value);
  mp_value_free(a.array);
  mp_raw_free(a.ok);
  mp_value_t *zeroed = mp_value_new_from(NULL, 16, false);
  assert_non_null(zeroed);
  assert_memory_equal("\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", mp_value_ptr(zeroed),
                      16);
  mp_value_free(zeroed);

  /* An array guarded by the caller's Lock, then by its RLock: += is safe. */
  mp_lock_t *l = mp_lock_new();
  long start = 0;
  mp_value_t *arr = mp_array_new_with_lock(1, sizeof(long), &start, l);
  assert_non_null(arr);
  assert_ptr_equal(l, mp_value_plain_lock(arr));
  assert_null(mp_value_lock(arr));
  run_counter(arr);
  mp_value_free(arr);
  mp_lock_free(l);
  mp_rlock_t *r = mp_rlock_new();
  arr = mp_array_new_with_rlock(1, sizeof(long), NULL, r);
  assert_non_null(arr);
  assert_ptr_equal(r, mp_value_lock(arr));
  run_counter(arr);
  mp_value_free(arr);
  mp_rlock_free(r);

  errno = 0;
  assert_null(mp_array_new_with_lock(4, 8, NULL, NULL));
  assert_int_equal(EINVAL, errno);
  assert_null(mp_array_new_with_rlock(4, 0, NULL, (mp_rlock_t *)1));
  assert_int_equal(EINVAL, errno);
  assert_null(mp_value_new_from(&seven, 0, true));
  assert_int_equal(EINVAL, errno);
  assert_null(mp_array_new_from(xs, SIZE_MAX / 2, 4, true));
  assert_int_equal(ENOMEM, errno);
}

static void test_errors_and_memory(void **state) {
  (void)state;
  mp_lock_free(mp_lock_new()); /* the owner table exists from here on */
  uint64_t base = mp__arena_in_use();
  errno = 0;
  assert_null(mp_value_new(0, true));
  assert_int_equal(EINVAL, errno);
  assert_null(mp_value_new_with_lock(8, NULL));
  assert_int_equal(EINVAL, errno);
  assert_null(mp_value_new_with_rlock(8, NULL));
  assert_int_equal(EINVAL, errno);
  assert_null(mp_value_new_with_rlock(0, (mp_rlock_t *)1));
  assert_int_equal(EINVAL, errno);
  assert_null(mp_array_new(4, 0, true));
  assert_int_equal(EINVAL, errno);
  assert_null(mp_array_new(SIZE_MAX / 2, 4, true));
  assert_int_equal(ENOMEM, errno);
  assert_null(mp_value_new((size_t)1 << 46, true)); /* beyond the arena */
  assert_int_equal(ENOMEM, errno);
  mp_value_free(NULL);
  mp_value_free(mp_value_new(100000, true));
  mp_value_free(mp_array_new(10, 8, false));
  assert_int_equal(base, mp__arena_in_use());
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_value_own_rlock),
      mpt_test(test_value_given_locks),
      mpt_test(test_value_no_lock),
      mpt_test(test_array),
      mpt_test(test_errors_and_memory),
      sync_test(test_initial_contents_and_given_lock),
  };
  return MPT_RUN(argc, argv, tests);
}

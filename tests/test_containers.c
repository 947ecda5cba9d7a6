/* The shared dict and list: Python's semantics and error cases, children
 * (under each start method) working on containers made before they
 * started, processes killed at random instants inside every operation, and
 * no arena memory left behind. */
#include <limits.h>
#include <stdio.h>

#include "sync_fixtures.h"
#include "testing.h"

#include <stdatomic.h>
#include <string.h>

/* The arena's bytes in use (src/core/arena.c, for leak checks). */

/* At most how many bytes processes killed inside the arena's allocator
 * (which is not safe against that) lost there for the container. */
uint64_t mp__dict_arena_lost(const mp_dict_t *d);
uint64_t mp__list_arena_lost(const mp_list_t *l);

/* In-use bytes once the family-wide objects (the owner table) exist. */
static uint64_t arena_baseline(void) {
  mp_lock_free(mp_lock_new());
  return mp__arena_in_use();
}

static bool flag_set(void *arg) {
  return atomic_load((_Atomic int *)arg) != 0;
}

static uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  return x;
}

/* The arena is back to base, but for what killed processes may have lost
 * inside the allocator (at most `lost` bytes). */
static void check_level(uint64_t base, uint64_t lost) {
  uint64_t now = mp__arena_in_use();
  if (lost)
    print_message("killed inside the arena: %llu bytes lost of at most %llu\n",
                  (unsigned long long)(now - base), (unsigned long long)lost);
  assert_true(now >= base);
  assert_true(now - base <= lost);
}

static void free_dict_checked(mp_dict_t *d, uint64_t base) {
  uint64_t lost = mp__dict_arena_lost(d);
  mp_dict_free(d);
  check_level(base, lost);
}

static void free_list_checked(mp_list_t *l, uint64_t base) {
  uint64_t lost = mp__list_arena_lost(l);
  mp_list_free(l);
  check_level(base, lost);
}

/* Expects d[key] == want (a string). */
static void expect_dict_value(mp_dict_t *d, const char *key, const char *want) {
  void *val = NULL;
  size_t len = 0;
  assert_mp_ok(mp_dict_get(d, key, strlen(key), &val, &len));
  assert_int_equal(strlen(want), len);
  assert_memory_equal(want, val, len);
  mp_free(val);
}

static void expect_list_item(mp_list_t *l, long index, const char *want) {
  void *buf = NULL;
  size_t len = 0;
  assert_mp_ok(mp_list_get(l, index, &buf, &len));
  assert_int_equal(strlen(want), len);
  assert_memory_equal(want, buf, len);
  mp_free(buf);
}

static size_t dict_len(mp_dict_t *d) {
  size_t n = 12345;
  assert_mp_ok(mp_dict_len(d, &n));
  return n;
}

static size_t list_len(mp_list_t *l) {
  size_t n = 12345;
  assert_mp_ok(mp_list_len(l, &n));
  return n;
}

/* ---- dict ------------------------------------------------------------------
 */

static void test_dict_basics(void **state) {
  (void)state;
  uint64_t base = arena_baseline();
  mp_dict_t *d = mp_dict_new();
  assert_non_null(d);
  assert_int_equal(0, dict_len(d));
  void *val;
  size_t len;
  assert_mp(MP_EKEY, mp_dict_get(d, "a", 1, &val, &len));
  assert_mp(MP_EKEY, mp_dict_del(d, "a", 1));
  assert_int_equal(0, mp_dict_contains(d, "a", 1));
  assert_mp_ok(mp_dict_set(d, "a", 1, "one", 3));
  assert_mp_ok(mp_dict_set(d, "b", 1, "two", 3));
  assert_int_equal(1, mp_dict_contains(d, "a", 1));
  expect_dict_value(d, "a", "one");
  assert_mp_ok(mp_dict_set(d, "a", 1, "uno", 3)); /* overwrite */
  expect_dict_value(d, "a", "uno");
  assert_int_equal(2, dict_len(d));
  /* Empty keys and values are keys and values. */
  assert_mp_ok(mp_dict_set(d, "", 0, "empty key", 9));
  assert_mp_ok(mp_dict_set(d, "e", 1, NULL, 0));
  expect_dict_value(d, "", "empty key");
  expect_dict_value(d, "e", "");
  assert_int_equal(4, dict_len(d));
  /* Keys are bytes: a prefix is another key. */
  assert_mp(MP_EKEY, mp_dict_get(d, "ab", 2, &val, &len));
  assert_mp_ok(mp_dict_del(d, "a", 1));
  assert_mp(MP_EKEY, mp_dict_del(d, "a", 1));
  assert_int_equal(0, mp_dict_contains(d, "a", 1));
  assert_int_equal(3, dict_len(d));
  free_dict_checked(d, base);
}

static void test_dict_get_into_and_large(void **state) {
  (void)state;
  uint64_t base = arena_baseline();
  mp_dict_t *d = mp_dict_new();
  size_t big = 3u << 20;
  unsigned char *p = malloc(big);
  for (size_t i = 0; i < big; i++)
    p[i] = (unsigned char)(i * 7 + (i >> 11));
  assert_mp_ok(mp_dict_set(d, "big", 3, p, big));
  void *val;
  size_t len;
  assert_mp_ok(mp_dict_get(d, "big", 3, &val, &len));
  assert_int_equal(big, len);
  assert_memory_equal(p, val, big);
  mp_free(val);
  char small[4];
  len = 0;
  assert_mp(MP_EOVERFLOW,
            mp_dict_get_into(d, "big", 3, small, sizeof small, &len));
  assert_int_equal(big, len);
  assert_mp_ok(mp_dict_set(d, "k", 1, "abc", 3));
  assert_mp_ok(mp_dict_get_into(d, "k", 1, small, sizeof small, &len));
  assert_int_equal(3, len);
  assert_memory_equal("abc", small, 3);
  assert_mp(MP_EKEY, mp_dict_get_into(d, "x", 1, small, sizeof small, &len));
  free(p);
  free_dict_checked(d, base);
}

/* Many keys: every stripe grows several times; deletes leave tombstones
 * that later inserts reuse and resizes drop. */
static void test_dict_many_keys(void **state) {
  (void)state;
  uint64_t base = arena_baseline();
  mp_dict_t *d = mp_dict_new();
  enum { N = 20000 };
  char key[32], val[32];
  for (int i = 0; i < N; i++) {
    int kl = snprintf(key, sizeof key, "key-%d", i);
    int vl = snprintf(val, sizeof val, "val-%d", i * 3);
    assert_mp_ok(mp_dict_set(d, key, (size_t)kl, val, (size_t)vl));
  }
  assert_int_equal(N, dict_len(d));
  for (int i = 0; i < N; i += 2) {
    int kl = snprintf(key, sizeof key, "key-%d", i);
    assert_mp_ok(mp_dict_del(d, key, (size_t)kl));
  }
  assert_int_equal(N / 2, dict_len(d));
  for (int round = 0; round < 3; round++)
    for (int i = 0; i < N; i += 2) {
      int kl = snprintf(key, sizeof key, "key-%d", i);
      assert_mp_ok(mp_dict_set(d, key, (size_t)kl, "x", 1));
      assert_mp_ok(mp_dict_del(d, key, (size_t)kl));
    }
  for (int i = 1; i < N; i += 2) {
    int kl = snprintf(key, sizeof key, "key-%d", i);
    snprintf(val, sizeof val, "val-%d", i * 3);
    expect_dict_value(d, key, val);
    kl = snprintf(key, sizeof key, "key-%d", i - 1);
    assert_int_equal(0, mp_dict_contains(d, key, (size_t)kl));
  }
  assert_mp_ok(mp_dict_clear(d));
  assert_int_equal(0, dict_len(d));
  assert_mp_ok(mp_dict_set(d, "again", 5, "v", 1));
  expect_dict_value(d, "again", "v");
  free_dict_checked(d, base);
}

static void test_dict_pop_setdefault(void **state) {
  (void)state;
  uint64_t base = arena_baseline();
  mp_dict_t *d = mp_dict_new();
  void *val;
  size_t len;
  assert_mp(MP_EKEY, mp_dict_pop(d, "k", 1, &val, &len));
  assert_int_equal(1, mp_dict_setdefault(d, "k", 1, "first", 5, &val, &len));
  assert_int_equal(5, len);
  assert_memory_equal("first", val, 5);
  mp_free(val);
  assert_int_equal(0, mp_dict_setdefault(d, "k", 1, "second", 6, &val, &len));
  assert_memory_equal("first", val, 5);
  mp_free(val);
  assert_int_equal(0, mp_dict_setdefault(d, "k", 1, "x", 1, NULL, NULL));
  assert_mp_ok(mp_dict_pop(d, "k", 1, &val, &len));
  assert_int_equal(5, len);
  assert_memory_equal("first", val, 5);
  mp_free(val);
  assert_mp(MP_EKEY, mp_dict_pop(d, "k", 1, &val, &len));
  assert_mp_ok(mp_dict_set(d, "k", 1, "v", 1));
  assert_mp_ok(mp_dict_pop(d, "k", 1, NULL, NULL));
  assert_int_equal(0, dict_len(d));
  free_dict_checked(d, base);
}

static int find_item(const mp_dict_item_t *items, size_t n, const char *key) {
  for (size_t i = 0; i < n; i++)
    if (items[i].klen == strlen(key) &&
        memcmp(items[i].key, key, items[i].klen) == 0)
      return (int)i;
  return -1;
}

static void test_dict_update_items_keys(void **state) {
  (void)state;
  uint64_t base = arena_baseline();
  mp_dict_t *d = mp_dict_new();
  mp_dict_item_t in[] = {
      {"a", 1, "1", 1}, {"b", 1, "22", 2}, {"c", 1, "", 0}, {"a", 1, "3", 1}};
  assert_mp_ok(mp_dict_update(d, in, 4));
  assert_int_equal(3, dict_len(d));
  expect_dict_value(d, "a", "3"); /* the later pair wins, as in Python */
  mp_dict_item_t *items;
  size_t n;
  assert_mp_ok(mp_dict_items(d, &items, &n));
  assert_int_equal(3, n);
  int b = find_item(items, n, "b");
  assert_true(b >= 0);
  assert_int_equal(2, items[b].vlen);
  assert_memory_equal("22", items[b].val, 2);
  assert_true(find_item(items, n, "c") >= 0);
  /* A copy of the dict from its snapshot. */
  mp_dict_t *copy = mp_dict_new();
  assert_mp_ok(mp_dict_update(copy, items, n));
  mp_free(items);
  expect_dict_value(copy, "b", "22");
  expect_dict_value(copy, "a", "3");
  mp_dict_free(copy);
  assert_mp_ok(mp_dict_keys(d, &items, &n));
  assert_int_equal(3, n);
  assert_true(find_item(items, n, "a") >= 0);
  assert_null(items[0].val);
  mp_free(items);
  /* Bad pairs are refused before anything is stored. */
  mp_dict_item_t bad[] = {{"z", 1, "1", 1}, {NULL, 3, "1", 1}};
  assert_mp(MP_EINVAL, mp_dict_update(d, bad, 2));
  assert_int_equal(0, mp_dict_contains(d, "z", 1));
  assert_mp_ok(mp_dict_update(d, NULL, 0));
  assert_mp_ok(mp_dict_clear(d));
  assert_mp_ok(mp_dict_items(d, &items, &n));
  assert_int_equal(0, n);
  mp_free(items);
  free_dict_checked(d, base);
}

/* modify callbacks: a counter, a delete, a keep, an error. */
static int add_one(const void *old, size_t old_len, bool found,
                   const void **new_val, size_t *new_len, void *arg) {
  uint64_t *v = arg;
  *v = 0;
  if (found) {
    if (old_len != sizeof *v)
      return MP_EINVAL;
    memcpy(v, old, sizeof *v);
  }
  (*v)++;
  *new_val = v;
  *new_len = sizeof *v;
  return MP_DICT_STORE;
}

static int decide(const void *old, size_t old_len, bool found,
                  const void **new_val, size_t *new_len, void *arg) {
  (void)old, (void)old_len, (void)found, (void)new_val, (void)new_len;
  return *(int *)arg;
}

static uint64_t counter_of(mp_dict_t *d, const char *key) {
  uint64_t v = 0;
  size_t len;
  assert_mp_ok(mp_dict_get_into(d, key, strlen(key), &v, sizeof v, &len));
  assert_int_equal(sizeof v, len);
  return v;
}

static void test_dict_modify(void **state) {
  (void)state;
  uint64_t base = arena_baseline();
  mp_dict_t *d = mp_dict_new();
  uint64_t scratch;
  for (int i = 0; i < 5; i++)
    assert_mp_ok(mp_dict_modify(d, "n", 1, add_one, &scratch));
  assert_int_equal(5, counter_of(d, "n"));
  int what = MP_DICT_KEEP;
  assert_mp_ok(mp_dict_modify(d, "n", 1, decide, &what));
  assert_int_equal(5, counter_of(d, "n"));
  what = MP_ETIMEDOUT; /* the callback's code, nothing changed */
  assert_mp(MP_ETIMEDOUT, mp_dict_modify(d, "n", 1, decide, &what));
  assert_int_equal(5, counter_of(d, "n"));
  what = 7; /* not a decision */
  assert_mp(MP_EINVAL, mp_dict_modify(d, "n", 1, decide, &what));
  what = MP_DICT_DELETE;
  assert_mp_ok(mp_dict_modify(d, "n", 1, decide, &what));
  assert_int_equal(0, mp_dict_contains(d, "n", 1));
  assert_mp_ok(mp_dict_modify(d, "n", 1, decide, &what)); /* absent: fine */
  assert_mp(MP_EINVAL, mp_dict_modify(d, "n", 1, NULL, NULL));
  free_dict_checked(d, base);
}

/* NULL, freed and foreign handles, and bad arguments: MP_EINVAL. */
static void test_dict_bad_handles(void **state) {
  (void)state;
  void *val;
  size_t len;
  mp_dict_t *freed = mp_dict_new();
  mp_dict_free(freed);
  mp_list_t *list = mp_list_new();
  char stack[128] = {0};
  mp_dict_t *bad[] = {NULL, freed, (mp_dict_t *)list, (mp_dict_t *)stack};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_mp(MP_EINVAL, mp_dict_set(bad[i], "a", 1, "b", 1));
    assert_mp(MP_EINVAL, mp_dict_get(bad[i], "a", 1, &val, &len));
    assert_mp(MP_EINVAL, mp_dict_del(bad[i], "a", 1));
    assert_mp(MP_EINVAL, mp_dict_contains(bad[i], "a", 1));
    assert_mp(MP_EINVAL, mp_dict_len(bad[i], &len));
    assert_mp(MP_EINVAL, mp_dict_clear(bad[i]));
    assert_mp(MP_EINVAL, mp_dict_update(bad[i], NULL, 0));
  }
  mp_list_free(list);
  mp_dict_t *d = mp_dict_new();
  assert_mp(MP_EINVAL, mp_dict_set(d, NULL, 1, "b", 1));
  assert_mp(MP_EINVAL, mp_dict_set(d, "a", 1, NULL, 1));
  assert_mp(MP_EINVAL, mp_dict_get(d, "a", 1, NULL, &len));
  assert_mp(MP_EINVAL, mp_dict_len(d, NULL));
  assert_mp(MP_EINVAL, mp_dict_items(d, NULL, &len));
  assert_mp(MP_EINVAL, mp_dict_set(d, "a", 1, "b", SIZE_MAX - 8));
  assert_int_equal(0, dict_len(d));
  mp_dict_free(d);
  mp_dict_free(NULL);
}

/* ---- list ------------------------------------------------------------------
 */

static void test_list_basics(void **state) {
  (void)state;
  uint64_t base = arena_baseline();
  mp_list_t *l = mp_list_new();
  assert_non_null(l);
  void *buf;
  size_t len;
  assert_int_equal(0, list_len(l));
  assert_mp(MP_EINDEX, mp_list_get(l, 0, &buf, &len));
  assert_mp(MP_EINDEX, mp_list_get(l, -1, &buf, &len));
  assert_mp(MP_EINDEX, mp_list_pop(l, -1, &buf, &len));
  assert_mp(MP_EINDEX, mp_list_set(l, 0, "x", 1));
  assert_mp_ok(mp_list_append(l, "a", 1));
  assert_mp_ok(mp_list_append(l, "bb", 2));
  assert_mp_ok(mp_list_append(l, "", 0));
  assert_int_equal(3, list_len(l));
  expect_list_item(l, 0, "a");
  expect_list_item(l, 1, "bb");
  expect_list_item(l, 2, "");
  expect_list_item(l, -1, "");
  expect_list_item(l, -3, "a");
  assert_mp(MP_EINDEX, mp_list_get(l, 3, &buf, &len));
  assert_mp(MP_EINDEX, mp_list_get(l, -4, &buf, &len));
  assert_mp(MP_EINDEX, mp_list_get(l, LONG_MIN, &buf, &len));
  assert_mp(MP_EINDEX, mp_list_get(l, LONG_MAX, &buf, &len));
  assert_mp_ok(mp_list_set(l, -1, "c", 1));
  expect_list_item(l, 2, "c");
  assert_mp(MP_EINDEX, mp_list_set(l, 3, "x", 1));
  /* pop: the last by default (-1), or any index. */
  assert_mp_ok(mp_list_pop(l, -1, &buf, &len));
  assert_int_equal(1, len);
  assert_memory_equal("c", buf, 1);
  mp_free(buf);
  assert_mp_ok(mp_list_pop(l, 0, &buf, &len));
  assert_memory_equal("a", buf, 1);
  mp_free(buf);
  assert_int_equal(1, list_len(l));
  expect_list_item(l, 0, "bb");
  assert_mp_ok(mp_list_pop(l, 0, NULL, NULL));
  assert_int_equal(0, list_len(l));
  free_list_checked(l, base);
}

/* insert follows Python: before index, clamped at both ends. */
static void test_list_insert_extend_slice(void **state) {
  (void)state;
  uint64_t base = arena_baseline();
  mp_list_t *l = mp_list_new();
  assert_mp_ok(mp_list_insert(l, 0, "c", 1));    /* [c] */
  assert_mp_ok(mp_list_insert(l, 0, "a", 1));    /* [a c] */
  assert_mp_ok(mp_list_insert(l, 1, "b", 1));    /* [a b c] */
  assert_mp_ok(mp_list_insert(l, 100, "e", 1));  /* [a b c e] */
  assert_mp_ok(mp_list_insert(l, -1, "d", 1));   /* [a b c d e] */
  assert_mp_ok(mp_list_insert(l, -100, "_", 1)); /* [_ a b c d e] */
  mp_list_item_t more[] = {{"f", 1}, {"g", 1}, {"", 0}};
  assert_mp_ok(mp_list_extend(l, more, 3)); /* [_ a b c d e f g ''] */
  assert_int_equal(9, list_len(l));
  const char *want[] = {"_", "a", "b", "c", "d", "e", "f", "g", ""};
  for (int i = 0; i < 9; i++)
    expect_list_item(l, i, want[i]);
  mp_list_item_t *items;
  size_t n;
  assert_mp_ok(mp_list_slice(l, 0, LONG_MAX, &items, &n));
  assert_int_equal(9, n);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(strlen(want[i]), items[i].len);
    assert_memory_equal(want[i], items[i].buf, items[i].len);
  }
  mp_free(items);
  assert_mp_ok(mp_list_slice(l, 2, -3, &items, &n)); /* [b c d e] */
  assert_int_equal(4, n);
  assert_memory_equal("b", items[0].buf, 1);
  assert_memory_equal("e", items[3].buf, 1);
  mp_free(items);
  assert_mp_ok(mp_list_slice(l, -2, 100, &items, &n)); /* [g ''] */
  assert_int_equal(2, n);
  assert_memory_equal("g", items[0].buf, 1);
  mp_free(items);
  assert_mp_ok(mp_list_slice(l, 5, 2, &items, &n)); /* empty */
  assert_int_equal(0, n);
  mp_free(items);
  mp_list_item_t bad[] = {{"h", 1}, {NULL, 2}};
  assert_mp(MP_EINVAL, mp_list_extend(l, bad, 2));
  assert_int_equal(9, list_len(l));
  assert_mp_ok(mp_list_clear(l));
  assert_int_equal(0, list_len(l));
  assert_mp_ok(mp_list_append(l, "z", 1));
  expect_list_item(l, 0, "z");
  free_list_checked(l, base);
}

/* A long list: inserts and pops at the front shift every item; the array
 * grows several times. */
static void test_list_long(void **state) {
  (void)state;
  uint64_t base = arena_baseline();
  mp_list_t *l = mp_list_new();
  enum { N = 3000 };
  char item[16];
  for (int i = 0; i < N; i++) {
    int len = snprintf(item, sizeof item, "%d", i);
    assert_mp_ok(i % 2 ? mp_list_append(l, item, (size_t)len)
                       : mp_list_insert(l, 0, item, (size_t)len));
  }
  assert_int_equal(N, list_len(l));
  /* Evens in falling order, then odds rising. */
  for (int i = 0; i < N / 2; i++) {
    snprintf(item, sizeof item, "%d", N - 2 - 2 * i);
    expect_list_item(l, i, item);
    snprintf(item, sizeof item, "%d", 2 * i + 1);
    expect_list_item(l, N / 2 + i, item);
  }
  for (int i = 0; i < N / 2; i++)
    assert_mp_ok(mp_list_pop(l, 0, NULL, NULL));
  snprintf(item, sizeof item, "%d", 1);
  expect_list_item(l, 0, item);
  free_list_checked(l, base);
}

static void test_list_bad_handles(void **state) {
  (void)state;
  void *buf;
  size_t len;
  mp_list_t *freed = mp_list_new();
  mp_list_free(freed);
  mp_dict_t *dict = mp_dict_new();
  char stack[128] = {0};
  mp_list_t *bad[] = {NULL, freed, (mp_list_t *)dict, (mp_list_t *)stack};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_mp(MP_EINVAL, mp_list_append(bad[i], "a", 1));
    assert_mp(MP_EINVAL, mp_list_get(bad[i], 0, &buf, &len));
    assert_mp(MP_EINVAL, mp_list_set(bad[i], 0, "a", 1));
    assert_mp(MP_EINVAL, mp_list_pop(bad[i], 0, &buf, &len));
    assert_mp(MP_EINVAL, mp_list_len(bad[i], &len));
    assert_mp(MP_EINVAL, mp_list_clear(bad[i]));
  }
  mp_dict_free(dict);
  mp_list_t *l = mp_list_new();
  assert_mp(MP_EINVAL, mp_list_append(l, NULL, 1));
  assert_mp(MP_EINVAL, mp_list_get(l, 0, NULL, &len));
  assert_mp(MP_EINVAL, mp_list_slice(l, 0, 1, NULL, &len));
  assert_mp(MP_EINVAL, mp_list_append(l, "a", SIZE_MAX - 8));
  mp_list_free(l);
  mp_list_free(NULL);
}

/* ---- children
 * ----------------------------------------------------------------
 */
#define WORKERS 3
#define ROUNDS  400

struct shared_args {
  mp_dict_t *d;
  mp_list_t *l;
  int id;
};

/* Each child counts in a shared counter (atomic modify), writes keys of its
 * own and appends to the list. */
static void worker_child(void *arg) {
  struct shared_args *a = arg;
  uint64_t scratch;
  char key[32];
  for (int i = 0; i < ROUNDS; i++) {
    if (mp_dict_modify(a->d, "count", 5, add_one, &scratch) != 0)
      _exit(2);
    int kl = snprintf(key, sizeof key, "w%d-%d", a->id, i);
    if (mp_dict_set(a->d, key, (size_t)kl, &i, sizeof i) != 0 ||
        mp_list_append(a->l, key, (size_t)kl) != 0)
      _exit(3);
  }
}

static void test_children(void **state) {
  (void)state;
  uint64_t base = arena_baseline();
  struct shared_args a = {mp_dict_new(), mp_list_new(), 0};
  mp_process_t *p[WORKERS];
  for (int i = 0; i < WORKERS; i++) {
    a.id = i;
    p[i] = start_child(worker_child, &a, sizeof a);
  }
  for (int i = 0; i < WORKERS; i++)
    assert_int_equal(0, finish_child(p[i]));
  assert_int_equal(WORKERS * ROUNDS, counter_of(a.d, "count"));
  assert_int_equal(WORKERS * ROUNDS + 1, dict_len(a.d));
  assert_int_equal(WORKERS * ROUNDS, list_len(a.l));
  char key[32];
  for (int w = 0; w < WORKERS; w++)
    for (int i = 0; i < ROUNDS; i++) {
      int kl = snprintf(key, sizeof key, "w%d-%d", w, i), v = -1;
      size_t len;
      assert_mp_ok(mp_dict_get_into(a.d, key, (size_t)kl, &v, sizeof v, &len));
      assert_int_equal(i, v);
    }
  mp_dict_free(a.d);
  mp_list_free(a.l);
  assert_int_equal(base, mp__arena_in_use());
}

/* A process killed inside a modify callback (holding the stripe's lock)
 * changes nothing, and the others go on. */
struct stuck_args {
  mp_dict_t *d;
  _Atomic int *inside;
};

static int stuck_cb(const void *old, size_t old_len, bool found,
                    const void **new_val, size_t *new_len, void *arg) {
  (void)old, (void)old_len, (void)found, (void)new_val, (void)new_len;
  atomic_store((_Atomic int *)arg, 1);
  for (;;)
    pause();
  return MP_DICT_KEEP;
}

static void stuck_child(void *arg) {
  struct stuck_args *a = arg;
  mp_dict_modify(a->d, "k", 1, stuck_cb, (void *)a->inside);
}

static void test_killed_in_modify(void **state) {
  (void)state;
  struct stuck_args a = {mp_dict_new(), shared(64)};
  assert_mp_ok(mp_dict_set(a.d, "k", 1, "before", 6));
  mp_process_t *p = start_child(stuck_child, &a, sizeof a);
  assert_true(poll_until(flag_set, (void *)a.inside));
  assert_int_equal(-SIGKILL, kill_child(p));
  expect_dict_value(a.d, "k", "before");
  assert_mp_ok(mp_dict_set(a.d, "k", 1, "after", 5));
  expect_dict_value(a.d, "k", "after");
  assert_int_equal(1, dict_len(a.d));
  mp_dict_free(a.d);
  mp_raw_free((void *)a.inside);
}

/* ---- random kills
 * ------------------------------------------------------------ Workers change
 * the containers as fast as they can while the test kills them at random
 * instants. Values verify themselves, so afterwards every entry can be checked:
 * each value names its key; every list item is whole. */
static unsigned rng_state;

static unsigned rnd(unsigned n) {
  rng_state = rng_state * 1103515245u + 12345u;
  return (rng_state >> 8) % n;
}

#define KEYS 3000
/* Keys KEYS.. KEYS + GROUP - 1 are only ever set together, by one update,
 * all with one version (or all cleared): a dict shows all or none of them,
 * all of one version. */
#define GROUP 6

struct churn_args {
  mp_dict_t *d;
  mp_list_t *l;
  unsigned seed;
};

static size_t make_value(unsigned char *buf, unsigned key, unsigned version) {
  size_t len = 8 + (mix32(key ^ version) % 200);
  memcpy(buf, &key, 4);
  memcpy(buf + 4, &version, 4);
  for (size_t i = 8; i < len; i++)
    buf[i] = (unsigned char)(key * 31u + version + i);
  return len;
}

static bool value_valid(const unsigned char *buf, size_t len, unsigned key) {
  unsigned k, version;
  if (len < 8)
    return false;
  memcpy(&k, buf, 4);
  memcpy(&version, buf + 4, 4);
  unsigned char want[256];
  return k == key && make_value(want, key, version) == len &&
         memcmp(want, buf, len) == 0;
}

/* An update of the group (see GROUP), or an extend of the list by GROUP
 * items, all of version v. */
static void churn_batch(struct churn_args *a, unsigned v, bool dict) {
  unsigned char bufs[GROUP][256];
  unsigned keys[GROUP];
  mp_dict_item_t pairs[GROUP];
  mp_list_item_t items[GROUP];
  for (unsigned i = 0; i < GROUP; i++) {
    keys[i] = KEYS + i;
    size_t len = make_value(bufs[i], keys[i], v);
    pairs[i] = (mp_dict_item_t){&keys[i], sizeof keys[i], bufs[i], len};
    items[i] = (mp_list_item_t){bufs[i], len};
  }
  if (dict)
    mp_dict_update(a->d, pairs, GROUP);
  else
    mp_list_extend(a->l, items, GROUP);
}

static void churn_child(void *arg) {
  struct churn_args *a = arg;
  rng_state = a->seed;
  unsigned char buf[256];
  for (unsigned v = 0;; v++) {
    unsigned key = rnd(KEYS);
    size_t len = make_value(buf, key, v);
    switch (rnd(10)) {
    case 6:
      churn_batch(a, v, true);
      break;
    case 7:
      churn_batch(a, v, false);
      break;
    case 0:
      mp_dict_del(a->d, &key, sizeof key);
      break;
    case 1:
      if (rnd(200) == 0)
        mp_dict_clear(a->d);
      break;
    case 2:
      mp_list_insert(a->l, (long)rnd(4000), buf, len);
      break;
    case 3:
      mp_list_pop(a->l, rnd(2) ? 0 : -1, NULL, NULL);
      break;
    case 4:
      mp_list_set(a->l, (long)rnd(4000), buf, len);
      break;
    case 5:
      if (rnd(300) == 0)
        mp_list_clear(a->l);
      else
        mp_list_append(a->l, buf, len);
      break;
    default:
      mp_dict_set(a->d, &key, sizeof key, buf, len);
      break;
    }
  }
}

/* still: nobody else changes the dict meanwhile (then the snapshot, len
 * and get agree exactly). */
static void check_dict_consistent(mp_dict_t *d, bool still) {
  mp_dict_item_t *items;
  size_t n, in_group = 0;
  unsigned group_version = 0;
  assert_mp_ok(mp_dict_items(d, &items, &n));
  if (still)
    assert_int_equal(n, dict_len(d));
  for (size_t i = 0; i < n; i++) {
    unsigned key, version;
    assert_int_equal(sizeof key, items[i].klen);
    memcpy(&key, items[i].key, sizeof key);
    assert_true(value_valid(items[i].val, items[i].vlen, key));
    memcpy(&version, (const char *)items[i].val + 4, sizeof version);
    if (key >= KEYS) { /* all of the group, of one version (see GROUP) */
      assert_true(in_group == 0 || version == group_version);
      group_version = version;
      in_group++;
    }
    void *val;
    size_t len;
    int rc = mp_dict_get(d, &key, sizeof key, &val, &len);
    if (still || rc == 0) {
      assert_mp_ok(rc);
      assert_true(value_valid(val, len, key));
      if (still)
        assert_int_equal(items[i].vlen, len);
      mp_free(val);
    } else {
      assert_mp(MP_EKEY, rc);
    }
  }
  assert_true(in_group == 0 || in_group == GROUP);
  mp_free(items);
}

static void check_list_consistent(mp_list_t *l, bool still) {
  mp_list_item_t *items;
  size_t n;
  assert_mp_ok(mp_list_slice(l, 0, LONG_MAX, &items, &n));
  if (still)
    assert_int_equal(n, list_len(l));
  for (size_t i = 0; i < n; i++) {
    unsigned key;
    assert_true(items[i].len >= 8);
    memcpy(&key, items[i].buf, 4);
    assert_true(value_valid(items[i].buf, items[i].len, key));
  }
  mp_free(items);
}

#ifndef KILLS
#define KILLS 40
#endif

static void test_random_kills(void **state) {
  (void)state;
  rng_state = (unsigned)getpid() ^ (unsigned)time(NULL);
  print_message("random seed %u\n", rng_state);
  uint64_t base = arena_baseline();
  struct churn_args a = {mp_dict_new(), mp_list_new(), 0};
  mp_process_t *p[2];
  for (int i = 0; i < 2; i++) {
    a.seed = rnd(1u << 30);
    p[i] = start_child(churn_child, &a, sizeof a);
  }
  for (int k = 0; k < KILLS; k++) {
    sleep_us((long)rnd(5000));
    int i = (int)rnd(2);
    assert_int_equal(-SIGKILL, kill_child(p[i]));
    if (k % 8 == 7) { /* the survivor may be mid-change: check afterwards */
      check_dict_consistent(a.d, false);
      check_list_consistent(a.l, false);
    }
    a.seed = rnd(1u << 30);
    p[i] = start_child(churn_child, &a, sizeof a);
  }
  for (int i = 0; i < 2; i++)
    assert_int_equal(-SIGKILL, kill_child(p[i]));
  check_dict_consistent(a.d, true);
  check_list_consistent(a.l, true);
  /* Usable after all that. */
  assert_mp_ok(mp_dict_set(a.d, "after", 5, "x", 1));
  expect_dict_value(a.d, "after", "x");
  assert_mp_ok(mp_list_insert(a.l, 0, "after", 5));
  expect_list_item(a.l, 0, "after");
  uint64_t lost = mp__dict_arena_lost(a.d) + mp__list_arena_lost(a.l);
  mp_dict_free(a.d);
  mp_list_free(a.l);
  check_level(base, lost);
}

/* ---- killed in the middle of a long change
 * ----------------------------------- A child that repeats one change that
 * takes long (shifting a long list, growing a stripe's table) is killed at
 * random instants: afterwards the container is exactly as before the change or
 * as after it. */
#define LONG_LIST 60000

struct repeat_args {
  mp_list_t *l;
  mp_dict_t *d;
  _Atomic int *started;
};

static void shift_child(void *arg) {
  struct repeat_args *a = arg;
  atomic_store(a->started, 1);
  for (;;) {
    mp_list_insert(a->l, 0, "X", 1);
    mp_list_pop(a->l, 0, NULL, NULL);
  }
}

/* The list is 0..LONG_LIST-1, with or without an "X" in front (which the
 * check then takes away, so that the next child starts from the same). */
static void check_long_list(mp_list_t *l) {
  mp_list_item_t *items;
  size_t n, first = 0;
  assert_mp_ok(mp_list_slice(l, 0, LONG_MAX, &items, &n));
  assert_int_equal(n, list_len(l));
  if (n == LONG_LIST + 1) {
    assert_int_equal(1, items[0].len);
    assert_memory_equal("X", items[0].buf, 1);
    first = 1;
  } else {
    assert_int_equal(LONG_LIST, n);
  }
  for (size_t i = first; i < n; i++) {
    unsigned v;
    assert_int_equal(sizeof v, items[i].len);
    memcpy(&v, items[i].buf, sizeof v);
    assert_int_equal(i - first, v);
  }
  mp_free(items);
  if (first)
    assert_mp_ok(mp_list_pop(l, 0, NULL, NULL));
}

static void test_killed_mid_shift(void **state) {
  (void)state;
  rng_state = (unsigned)getpid() ^ (unsigned)time(NULL);
  print_message("random seed %u\n", rng_state);
  uint64_t base = arena_baseline();
  struct repeat_args a = {mp_list_new(), NULL, shared(64)};
  for (unsigned i = 0; i < LONG_LIST; i++)
    assert_mp_ok(mp_list_append(a.l, &i, sizeof i));
  for (int k = 0; k < 12; k++) {
    atomic_store(a.started, 0);
    mp_process_t *p = start_child(shift_child, &a, sizeof a);
    assert_true(poll_until(flag_set, (void *)a.started));
    sleep_us(200 + (long)rnd(3000));
    assert_int_equal(-SIGKILL, kill_child(p));
    check_long_list(a.l);
  }
  mp_raw_free((void *)a.started);
  free_list_checked(a.l, base);
}

/* Sets keys 0, 1, 2, ... in order (each stripe's table grows many times). */
static void grow_child(void *arg) {
  struct repeat_args *a = arg;
  atomic_store(a->started, 1);
  for (unsigned i = 0;; i++) {
    unsigned char val[256];
    size_t len = make_value(val, i, 1);
    mp_dict_set(a->d, &i, sizeof i, val, len);
  }
}

/* The keys present are 0..m-1, each with its value. */
static void check_grown(mp_dict_t *d) {
  size_t n = dict_len(d);
  for (unsigned i = 0; i < n + 2; i++) {
    unsigned char val[256];
    size_t len;
    int rc = mp_dict_get_into(d, &i, sizeof i, val, sizeof val, &len);
    if (i < n) {
      assert_mp_ok(rc);
      assert_true(value_valid(val, len, i));
    } else {
      assert_mp(MP_EKEY, rc);
    }
  }
}

static void test_killed_growing(void **state) {
  (void)state;
  rng_state = (unsigned)getpid() ^ (unsigned)time(NULL);
  print_message("random seed %u\n", rng_state);
  uint64_t base = arena_baseline();
  struct repeat_args a = {NULL, mp_dict_new(), shared(64)};
  for (int k = 0; k < 12; k++) {
    atomic_store(a.started, 0);
    mp_process_t *p = start_child(grow_child, &a, sizeof a);
    assert_true(poll_until(flag_set, (void *)a.started));
    sleep_us(200 + (long)rnd(8000));
    assert_int_equal(-SIGKILL, kill_child(p));
    check_grown(a.d);
    if (k % 4 == 3)
      assert_mp_ok(mp_dict_clear(a.d));
  }
  mp_raw_free((void *)a.started);
  free_dict_checked(a.d, base);
}

/* ---- killed at every step --------------------------------------------------
 * The store's seam (mp__store_kill_countdown) kills a child at its k-th
 * protocol step inside one operation, for k = 1, 2, ... until the operation
 * completes: after each death the container must be exactly as before the
 * operation or as after it, usable, and its arena memory accounted for. */

enum step_op {
  STEP_SET_NEW,     /* into an empty dict: its stripe's first table */
  STEP_SET_MORE,    /* a new key into a dict of STEP_KEYS keys */
  STEP_SET_REPLACE, /* a new value for a key */
  STEP_DEL,
  STEP_CLEAR,
  STEP_INSERT_FRONT, /* shifts every item */
  STEP_POP_FRONT,
  STEP_APPEND_GROW, /* the array grows */
  STEP_LIST_SET,
  STEP_LIST_CLEAR,
  STEP_UPDATE,     /* replaces, adds and repeats keys */
  STEP_UPDATE_NEW, /* into an empty dict: the stripes' first tables */
  STEP_EXTEND,     /* the array grows */
  STEP_OPS,
};

#define STEP_KEYS  100
#define STEP_ITEMS 16

struct step_args {
  mp_dict_t *d;
  mp_list_t *l;
  int op, k;
};

#define STEP_BATCH 8

/* An update of STEP_BATCH pairs: key 0 twice (the later wins), the rest new
 * keys. */
static void step_update(mp_dict_t *d) {
  unsigned keys[STEP_BATCH];
  mp_dict_item_t items[STEP_BATCH];
  for (unsigned i = 0; i < STEP_BATCH; i++) {
    keys[i] = i == 0 || i == STEP_BATCH - 1 ? 0 : STEP_KEYS + i;
    items[i] =
        (mp_dict_item_t){&keys[i], sizeof keys[i], i ? "batch" : "first", 5};
  }
  mp_dict_update(d, items, STEP_BATCH);
}

static void step_extend(mp_list_t *l) {
  mp_list_item_t items[STEP_BATCH];
  for (unsigned i = 0; i < STEP_BATCH; i++)
    items[i] = (mp_list_item_t){&"extended"[i], 8 - i};
  mp_list_extend(l, items, STEP_BATCH);
}

static void step_op(mp_dict_t *d, mp_list_t *l, int op) {
  unsigned key = STEP_KEYS, zero = 0;
  switch (op) {
  case STEP_UPDATE:
  case STEP_UPDATE_NEW:
    step_update(d);
    break;
  case STEP_EXTEND:
    step_extend(l);
    break;
  case STEP_SET_NEW:
  case STEP_SET_MORE:
    mp_dict_set(d, &key, sizeof key, "new", 3);
    break;
  case STEP_SET_REPLACE:
    mp_dict_set(d, &zero, sizeof zero, "replaced", 8);
    break;
  case STEP_DEL:
    mp_dict_del(d, &zero, sizeof zero);
    break;
  case STEP_CLEAR:
    mp_dict_clear(d);
    break;
  case STEP_INSERT_FRONT:
    mp_list_insert(l, 0, "front", 5);
    break;
  case STEP_POP_FRONT:
    mp_list_pop(l, 0, NULL, NULL);
    break;
  case STEP_APPEND_GROW:
    mp_list_append(l, "end", 3);
    break;
  case STEP_LIST_SET:
    mp_list_set(l, 3, "three", 5);
    break;
  default:
    mp_list_clear(l);
  }
}

static void step_child(void *arg) {
  struct step_args *a = arg;
  mp__store_kill_countdown = a->k;
  step_op(a->d, a->l, a->op);
  mp__store_kill_countdown = 0;
}

/* The state an op starts from. */
static void step_prepare(struct step_args *a) {
  a->d = mp_dict_new();
  a->l = mp_list_new();
  bool empty = a->op == STEP_SET_NEW || a->op == STEP_UPDATE_NEW;
  unsigned keys = empty ? 0 : STEP_KEYS;
  for (unsigned i = 0; i < keys; i++)
    assert_mp_ok(mp_dict_set(a->d, &i, sizeof i, "v", 1));
  /* A full array, so that an append or an extend grows it. */
  for (unsigned i = 0; i < STEP_ITEMS; i++)
    assert_mp_ok(mp_list_append(a->l, &i, sizeof i));
}

/* What one key's and one index's own lock show (the first look after a
 * death: for a dict, a stripe's lock, which must settle an update under
 * every lock first): key 0's value and the last item, as a digest. */
static uint64_t step_peek(mp_dict_t *d, mp_list_t *l) {
  unsigned zero = 0;
  char buf[64];
  size_t len = 0;
  uint64_t h = 0;
  int rc = mp_dict_get_into(d, &zero, sizeof zero, buf, sizeof buf, &len);
  assert_true(rc == 0 || rc == MP_EKEY);
  for (size_t i = 0; rc == 0 && i < len; i++)
    h = h * 31 + (unsigned char)buf[i];
  void *item;
  rc = mp_list_get(l, -1, &item, &len);
  assert_true(rc == 0 || rc == MP_EINDEX);
  for (size_t i = 0; rc == 0 && i < len; i++)
    h = h * 37 + ((unsigned char *)item)[i];
  if (rc == 0)
    mp_free(item);
  return h;
}

/* A digest of the whole state: the sorted-free sum of the items. */
static uint64_t step_digest(mp_dict_t *d, mp_list_t *l) {
  uint64_t h = 0;
  mp_dict_item_t *items;
  size_t n;
  assert_mp_ok(mp_dict_items(d, &items, &n));
  assert_int_equal(n, dict_len(d));
  for (size_t i = 0; i < n; i++) {
    uint32_t x = 0x9e3779b9u;
    for (size_t j = 0; j < items[i].klen; j++)
      x = mix32(x ^ ((const unsigned char *)items[i].key)[j]);
    for (size_t j = 0; j < items[i].vlen; j++)
      x = mix32(x + ((const unsigned char *)items[i].val)[j]);
    h += x; /* order-free: stripes come in any order */
  }
  mp_free(items);
  mp_list_item_t *list;
  assert_mp_ok(mp_list_slice(l, 0, LONG_MAX, &list, &n));
  assert_int_equal(n, list_len(l));
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < list[i].len; j++)
      h = h * 31 + ((const unsigned char *)list[i].buf)[j] + i;
  mp_free(list);
  return h;
}

static void test_killed_at_every_step(void **state) {
  (void)state;
  uint64_t base = arena_baseline();
  for (int op = 0; op < STEP_OPS; op++) {
    /* The two states the op may leave. */
    struct step_args a = {NULL, NULL, op, 0};
    step_prepare(&a);
    uint64_t peek_before = step_peek(a.d, a.l);
    uint64_t before = step_digest(a.d, a.l);
    step_op(a.d, a.l, op);
    uint64_t peek_after = step_peek(a.d, a.l);
    uint64_t after = step_digest(a.d, a.l);
    assert_true(before != after);
    mp_dict_free(a.d);
    mp_list_free(a.l);
    int k;
    for (k = 1;; k++) {
      a = (struct step_args){NULL, NULL, op, k};
      step_prepare(&a);
      mp_process_t *p = start_child(step_child, &a, sizeof a);
      int code = finish_child(p);
      uint64_t peek = step_peek(a.d, a.l), now = step_digest(a.d, a.l);
      assert_true((now == before && peek == peek_before) ||
                  (now == after && peek == peek_after));
      if (now == before) /* usable: the op can be done at last */
        step_op(a.d, a.l, op);
      assert_int_equal(after, step_digest(a.d, a.l));
      uint64_t lost = mp__dict_arena_lost(a.d) + mp__list_arena_lost(a.l);
      mp_dict_free(a.d);
      mp_list_free(a.l);
      if (mp__arena_in_use() - base > lost)
        print_message("op %d killed at step %d: %llu bytes left\n", op, k,
                      (unsigned long long)(mp__arena_in_use() - base));
      check_level(base, lost);
      base = mp__arena_in_use(); /* what was lost stays lost */
      if (code == 0)
        break; /* the op finished before its k-th step */
      assert_int_equal(-SIGKILL, code);
    }
    print_message("op %d: killed at each of its %d steps\n", op, k - 1);
    assert_true(k > 2);
  }
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      sync_test(test_dict_basics),
      sync_test(test_dict_get_into_and_large),
      sync_test(test_dict_many_keys),
      sync_test(test_dict_pop_setdefault),
      sync_test(test_dict_update_items_keys),
      sync_test(test_dict_modify),
      sync_test(test_dict_bad_handles),
      sync_test(test_list_basics),
      sync_test(test_list_insert_extend_slice),
      sync_test(test_list_long),
      sync_test(test_list_bad_handles),
      sync_test(test_children),
      sync_test(test_killed_in_modify),
      sync_test(test_random_kills),
      sync_test(test_killed_mid_shift),
      sync_test(test_killed_growing),
      sync_test(test_killed_at_every_step),
  };
  return MPT_RUN(argc, argv, tests);
}

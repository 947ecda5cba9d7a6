/* The arena: mp_raw_alloc memory shared at the same address with every
 * child, under every start method. */
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support.h"
#include "testing.h"

/* Internal hooks, linked from the static library. */

static void test_alloc_is_zeroed_and_aligned(void **state) {
  (void)state;
  errno = 0;
  assert_null(mp_raw_alloc(0));
  assert_int_equal(errno, EINVAL);
  size_t sizes[] = {1, 63, 64, 100, 4000, 4096, 5000, 1 << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    unsigned char *p = mp_raw_alloc(sizes[i]);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 64, 0);
    for (size_t k = 0; k < sizes[i]; k++)
      assert_int_equal(p[k], 0);
    memset(p, 0xab, sizes[i]);
    mp_raw_free(p);
    /* Reused memory is zeroed again. */
    unsigned char *q = mp_raw_alloc(sizes[i]);
    for (size_t k = 0; k < sizes[i]; k++)
      assert_int_equal(q[k], 0);
    mp_raw_free(q);
  }
}

static void test_limit_gives_enomem(void **state) {
  (void)state;
  errno = 0;
  assert_null(mp_raw_alloc((size_t)1 << 46));
  assert_int_equal(errno, ENOMEM);
  /* The arena still works after a refusal. */
  void *p = mp_raw_alloc(64);
  assert_non_null(p);
  mp_raw_free(p);
}

static long arena_blocks(void) {
  int fd;
  uintptr_t address;
  uint64_t size;
  assert_mp_ok(mp__arena_info(&fd, &address, &size));
  struct stat st;
  assert_int_equal(fstat(fd, &st), 0);
  return (long)st.st_blocks;
}

static void test_free_returns_memory(void **state) {
  (void)state;
  uint64_t before = mp__arena_in_use();
  long blocks_before = arena_blocks();
  size_t big = 64u << 20;
  char *p = mp_raw_alloc(big);
  assert_non_null(p);
  memset(p, 1, big);
  assert_true(mp__arena_in_use() >= before + big);
  assert_true(arena_blocks() >= blocks_before + (long)(big / 512));
  mp_raw_free(p);
  assert_int_equal(mp__arena_in_use(), before);
  assert_true(arena_blocks() < blocks_before + (long)(big / 512 / 2));
  /* The freed run (merged with any free neighbour below it) is used again,
   * not fresh memory above it. */
  char *q = mp_raw_alloc(big);
  assert_true(q <= p);
  mp_raw_free(q);
}

static void test_free_coalesces(void **state) {
  (void)state;
  uint64_t before = mp__arena_in_use();
  enum { N = 64 };
  void *blocks[N];
  size_t total = 0;
  srand(7);
  for (int i = 0; i < N; i++) {
    size_t size = 4096 + (size_t)(rand() % 200000);
    blocks[i] = mp_raw_alloc(size);
    assert_non_null(blocks[i]);
    total += size;
  }
  for (int i = 0; i < N; i++) {
    int j = rand() % N;
    void *t = blocks[i];
    blocks[i] = blocks[j];
    blocks[j] = t;
  }
  char *lowest = blocks[0];
  for (int i = 0; i < N; i++) {
    if ((char *)blocks[i] < lowest)
      lowest = blocks[i];
    mp_raw_free(blocks[i]);
  }
  assert_int_equal(mp__arena_in_use(), before);
  /* Everything merged back into one run: one block of the total size fits
   * where the lowest one was. */
  void *all = mp_raw_alloc(total);
  assert_ptr_equal(all, lowest);
  mp_raw_free(all);
}

/* ---- sharing with children ------------------------------------------------
 */

typedef struct shared {
  _Atomic long counter;
  _Atomic(long *) later; /* set by the parent after the children started */
  _Atomic int seen_later;
} shared_t;

typedef struct child_arg {
  shared_t *shared;
  long increments;
} child_arg_t;

static void increment(void *arg) {
  child_arg_t *a = arg;
  for (long i = 0; i < a->increments; i++)
    atomic_fetch_add(&a->shared->counter, 1);
}

static void test_counter_by_pointer(void **state) {
  (void)state;
  shared_t *s = mp_raw_alloc(sizeof *s);
  child_arg_t arg = {s, 10000};
  mp_process_t *p[4];
  for (int i = 0; i < 4; i++) {
    p[i] = mp_process_new(increment, &arg, sizeof arg, NULL);
    assert_mp_ok(mp_process_start(p[i]));
  }
  for (int i = 0; i < 4; i++) {
    assert_mp_ok(mp_process_join(p[i], MP_FOREVER));
    int code;
    assert_mp_ok(mp_process_exitcode(p[i], &code));
    assert_int_equal(code, 0);
    mp_process_free(p[i]);
  }
  assert_int_equal(s->counter, 40000);
  mp_raw_free(s);
}

static void wait_for_later(void *arg) {
  shared_t *s = *(shared_t **)arg;
  long *later;
  /* Waits for the parent's pointer; the parent bounds the wait with its
   * join timeout. */
  while (!(later = atomic_load(&s->later)))
    sched_yield();
  s->seen_later = (int)*later;
  *later = 2024;
}

static void test_allocation_after_start_is_visible(void **state) {
  (void)state;
  shared_t *s = mp_raw_alloc(sizeof *s);
  mp_process_t *p = mp_process_new(wait_for_later, &s, sizeof s, NULL);
  assert_mp_ok(mp_process_start(p));
  /* Enough new memory that it cannot come from pages the child saw. */
  void *filler = mp_raw_alloc(8u << 20);
  long *later = mp_raw_alloc(sizeof *later);
  *later = 77;
  atomic_store(&s->later, later);
  int rc = mp_process_join(p, 30);
  if (rc != 0)
    mp_process_kill(p), mp_process_join(p, MP_FOREVER);
  assert_mp_ok(rc);
  assert_int_equal(s->seen_later, 77);
  assert_int_equal(*later, 2024);
  mp_process_free(p);
  mp_raw_free(later);
  mp_raw_free(filler);
  mp_raw_free(s);
}

static void test_threads_allocate_concurrently(void **state);

static void return_at_once(void *arg) {
  (void)arg;
}

/* A process killed while it held the allocator's lock (here: one that
 * ended, its tid left in the lock word) must not block the others, even
 * while it is an unreaped zombie. */
static void test_dead_allocator_holder_is_taken_over(void **state) {
  (void)state;
  mp_process_t *p = mp_process_new(return_at_once, NULL, 0, NULL);
  assert_mp_ok(mp_process_start(p));
  struct pollfd pfd = {.fd = mp_process_sentinel(p), .events = POLLIN};
  assert_int_equal(poll(&pfd, 1, 30000), 1); /* ended, not reaped */
  _Atomic uint32_t *lock = mp__arena_lock_word();
  uint32_t free_word = 0;
  assert_true(atomic_compare_exchange_strong(lock, &free_word,
                                             (uint32_t)mp_process_pid(p)));
  void *q = mp_raw_alloc(100);
  assert_non_null(q);
  mp_raw_free(q);
  assert_int_equal(*lock, 0);
  assert_mp_ok(mp_process_join(p, MP_FOREVER));
  mp_process_free(p);
}

/* ---- killed inside the allocator
 * --------------------------------------------- Processes allocate and free at
 * random, and are killed at random: by SIGKILL from the parent at any moment,
 * and by themselves at a random step inside the allocator's lock (every step of
 * every call is reached). Afterwards the allocator is consistent (its blocks
 * tile the arena, every free block is on its list, in_use is the sum of the
 * blocks in use) and at most one block per kill is lost: the one a dead process
 * was about to receive. */

#define CHURNERS 3
#define KILLS    120
#define ROWS     (KILLS + CHURNERS)
#define SLOTS    32

typedef struct kill_table {
  /* Each process has a row of its own: what it holds (recorded after the
   * allocation, cleared after the free). */
  _Atomic(void *) held[ROWS][SLOTS];
} kill_table_t;

typedef struct killed_arg {
  kill_table_t *table;
  int row;
  unsigned seed;
} killed_arg_t;

static unsigned kill_seed;

static void kill_self_sometimes(unsigned step) {
  (void)step;
  kill_seed = kill_seed * 1103515245u + 12345u;
  if ((kill_seed >> 8) % 4000 == 0)
    raise(SIGKILL);
}

static void churn_until_killed(void *arg) {
  killed_arg_t *a = arg;
  unsigned r = a->seed;
  kill_seed = a->seed * 7u + 1u;
  if (a->row % 2)
    mp__arena_fault_hook = kill_self_sometimes;
  _Atomic(void *) *held = a->table->held[a->row];
  for (;;) {
    r = r * 1103515245u + 12345u;
    int j = (int)((r >> 8) % SLOTS);
    void *p = atomic_load(&held[j]);
    if (p) {
      mp_raw_free(p);
      atomic_store(&held[j], NULL);
    } else {
      size_t size =
          (r >> 20) % 4 == 0 ? 4096 + (r >> 4) % 300000 : 1 + (r >> 4) % 4000;
      atomic_store(&held[j], mp_raw_alloc(size));
    }
  }
}

typedef struct used_list {
  void **ptrs;
  size_t count, cap;
} used_list_t;

static void collect_used(void *ptr, void *arg) {
  used_list_t *l = arg;
  if (l->count == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 1024;
    l->ptrs = realloc(l->ptrs, l->cap * sizeof *l->ptrs);
    assert_non_null(l->ptrs);
  }
  l->ptrs[l->count++] = ptr;
}

static bool listed(const used_list_t *l, const void *ptr) {
  for (size_t i = 0; i < l->count; i++)
    if (l->ptrs[i] == ptr)
      return true;
  return false;
}

static mp_process_t *start_churner(kill_table_t *t, int row) {
  killed_arg_t arg = {t, row, (unsigned)row * 2654435761u + 17u};
  mp_process_t *p = mp_process_new(churn_until_killed, &arg, sizeof arg, NULL);
  assert_non_null(p);
  assert_mp_ok(mp_process_start(p));
  return p;
}

static void test_killed_allocators_lose_nothing(void **state) {
  (void)state;
  used_list_t before = {0};
  assert_int_equal(mp__arena_check(collect_used, &before), 0);
  kill_table_t *t = mp_raw_alloc(sizeof *t);
  assert_non_null(t);
  mp_process_t *p[CHURNERS];
  int next_row = 0, deaths = 0;
  for (int i = 0; i < CHURNERS; i++)
    p[i] = start_churner(t, next_row++);
  srand(11);
  while (next_row < ROWS) {
    mp_waitable_t w[CHURNERS];
    for (int i = 0; i < CHURNERS; i++)
      w[i] = mp_waitable_process(p[i]);
    size_t ready[CHURNERS];
    /* A churner that killed itself is replaced; otherwise one is killed
     * after a short while (pacing only: any moment is a good one). */
    int n = mp_wait(w, CHURNERS, 0.001 * (1 + rand() % 5), ready);
    assert_true(n >= 0);
    int victim = n > 0 ? (int)ready[0] : rand() % CHURNERS;
    if (n == 0)
      assert_mp_ok(mp_process_kill(p[victim]));
    assert_mp_ok(mp_process_join(p[victim], MP_FOREVER));
    mp_process_free(p[victim]);
    deaths++;
    p[victim] = start_churner(t, next_row++);
  }
  for (int i = 0; i < CHURNERS; i++) {
    mp_process_kill(p[i]);
    assert_mp_ok(mp_process_join(p[i], MP_FOREVER));
    mp_process_free(p[i]);
    deaths++;
  }
  used_list_t after = {0};
  assert_int_equal(mp__arena_check(collect_used, &after), 0);
  /* Every block in use was in use before, is the table, or is held by a
   * row, but at most one per death (the block it was about to record).
   * What the rows hold is given back. */
  int lost = 0;
  for (size_t i = 0; i < after.count; i++) {
    void *ptr = after.ptrs[i];
    if (ptr == t || listed(&before, ptr))
      continue;
    bool held = false;
    for (int row = 0; row < ROWS && !held; row++)
      for (int j = 0; j < SLOTS && !held; j++)
        held = atomic_load(&t->held[row][j]) == ptr;
    /* Given back once (a row may still name a block its dead process
     * freed, which another row now holds). */
    if (held)
      mp_raw_free(ptr);
    lost += !held;
  }
  assert_true(lost <= deaths);
  mp_raw_free(t);
  assert_int_equal(mp__arena_check(NULL, NULL), 0);
  free(before.ptrs);
  free(after.ptrs);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_alloc_is_zeroed_and_aligned),
      mpt_test(test_limit_gives_enomem),
      mpt_test(test_free_returns_memory),
      mpt_test(test_free_coalesces),
      mpt_test(test_counter_by_pointer),
      mpt_test(test_allocation_after_start_is_visible),
      mpt_test(test_threads_allocate_concurrently),
      mpt_test(test_dead_allocator_holder_is_taken_over),
      mpt_test(test_killed_allocators_lose_nothing),
  };
  return MPT_RUN(argc, argv, tests);
}

/* Processes allocate and free at the same time: nothing is lost or handed
 * out twice. */
typedef struct churn_arg {
  _Atomic long *failures;
} churn_arg_t;

static void churn(void *arg) {
  churn_arg_t *a = arg;
  for (int round = 0; round < 200; round++) {
    unsigned char *blocks[16];
    for (int i = 0; i < 16; i++) {
      size_t size = (size_t)(64 << (i % 8)) + (size_t)round;
      blocks[i] = mp_raw_alloc(size);
      if (!blocks[i]) {
        atomic_fetch_add(a->failures, 1);
        continue;
      }
      memset(blocks[i], (int)(getpid() & 0xff), size);
      blocks[i][0] = (unsigned char)i;
    }
    for (int i = 0; i < 16; i++) {
      if (blocks[i] && blocks[i][1] != (unsigned char)(getpid() & 0xff))
        atomic_fetch_add(a->failures, 1);
      mp_raw_free(blocks[i]);
    }
  }
}

static void test_threads_allocate_concurrently(void **state) {
  (void)state;
  uint64_t before = mp__arena_in_use();
  _Atomic long *failures = mp_raw_alloc(sizeof *failures);
  churn_arg_t arg = {failures};
  mp_process_t *p[3];
  for (int i = 0; i < 3; i++) {
    p[i] = mp_process_new(churn, &arg, sizeof arg, NULL);
    assert_mp_ok(mp_process_start(p[i]));
  }
  churn(&arg);
  for (int i = 0; i < 3; i++) {
    assert_mp_ok(mp_process_join(p[i], MP_FOREVER));
    mp_process_free(p[i]);
  }
  assert_int_equal(*failures, 0);
  mp_raw_free((void *)failures);
  assert_int_equal(mp__arena_in_use(), before);
}

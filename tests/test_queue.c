/* Queue, SimpleQueue and JoinableQueue: Python's semantics and error cases,
 * messages of every size, timeouts, close, growth of unbounded queues, and
 * many producers and consumers with every message accounted for. (Killed
 * producers and consumers are in test_queue_death.c.) */
#include <pthread.h>

#include "queue_fixtures.h"

static double elapsed_since(uint64_t t0) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return ((double)now.tv_sec * 1e9 + (double)now.tv_nsec - (double)t0) / 1e9;
}

static uint64_t now_ns(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

static unsigned char *pattern(size_t len, unsigned seed) {
  unsigned char *p = malloc(len ? len : 1);
  assert_non_null(p);
  for (size_t i = 0; i < len; i++)
    p[i] = (unsigned char)(seed * 31u + i * 7u + (i >> 12));
  return p;
}

static void expect_message(mp_queue_t *q, size_t len, unsigned seed) {
  void *buf = NULL;
  size_t got = 12345;
  assert_mp_ok(mp_queue_get(q, &buf, &got, MP_FOREVER));
  assert_int_equal(len, got);
  unsigned char *want = pattern(len, seed);
  if (len)
    assert_memory_equal(want, buf, len);
  free(want);
  mp_free(buf);
}

/* ---- Basic semantics ----------------------------------------------------- */

/* Every size goes through whole and in order: empty, inline, out of line,
 * and larger than the biggest ring segment. */
static void test_sizes_in_order(void **state) {
  (void)state;
  uint64_t base = arena_baseline();
  static const size_t sizes[] = {
      0, 1, 63, 64, 4095, 4096, 4097, 100000, 1u << 20, 20u << 20, 3, 65536};
  size_t n = sizeof sizes / sizeof sizes[0];
  mp_queue_t *q = mp_queue_new(0);
  assert_non_null(q);
  assert_true(mp_queue_empty(q));
  assert_false(mp_queue_full(q)); /* unbounded */
  for (size_t i = 0; i < n; i++) {
    unsigned char *p = pattern(sizes[i], (unsigned)i);
    assert_mp_ok(mp_queue_put(q, p, sizes[i], MP_FOREVER));
    free(p);
    assert_int_equal(i + 1, mp_queue_qsize(q));
  }
  assert_false(mp_queue_empty(q));
  for (size_t i = 0; i < n; i++)
    expect_message(q, sizes[i], (unsigned)i);
  assert_true(mp_queue_empty(q));
  assert_int_equal(0, mp_queue_qsize(q));
  mp_queue_free(q);
  assert_int_equal(base, mp__arena_in_use());
}

/* get_into: a buffer too small gets MP_EOVERFLOW and the size needed, and
 * the message stays first in the queue. */
static void test_get_into(void **state) {
  (void)state;
  mp_queue_t *q = mp_queue_new(0);
  static const size_t sizes[] = {100, 0, 9000};
  for (size_t i = 0; i < 3; i++) {
    unsigned char *p = pattern(sizes[i], 40 + (unsigned)i);
    assert_mp_ok(mp_queue_put(q, p, sizes[i], 0));
    free(p);
  }
  unsigned char buf[9000];
  size_t len = 0;
  /* A NULL buffer asks for the size. */
  assert_mp(MP_EOVERFLOW, mp_queue_get_into(q, NULL, 0, &len, 0));
  assert_int_equal(100, len);
  assert_mp(MP_EOVERFLOW, mp_queue_get_into(q, buf, 99, &len, 0));
  assert_int_equal(100, len);
  assert_int_equal(3, mp_queue_qsize(q));
  assert_mp_ok(mp_queue_get_into(q, buf, 100, &len, 0));
  assert_int_equal(100, len);
  unsigned char *want = pattern(100, 40);
  assert_memory_equal(want, buf, 100);
  free(want);
  assert_mp_ok(mp_queue_get_into(q, NULL, 0, &len, 0)); /* 0 bytes fit */
  assert_int_equal(0, len);
  assert_mp(MP_EOVERFLOW, mp_queue_get_into(q, buf, 8999, &len, 0));
  assert_int_equal(9000, len);
  assert_mp_ok(mp_queue_get_into(q, buf, sizeof buf, &len, 0));
  want = pattern(9000, 42);
  assert_memory_equal(want, buf, 9000);
  free(want);
  assert_mp(MP_EEMPTY, mp_queue_get_into(q, buf, sizeof buf, &len, 0));
  mp_queue_free(q);
}

/* Empty and full with and without timeouts (queue.Empty, queue.Full). */
static void test_timeouts(void **state) {
  (void)state;
  mp_queue_t *q = mp_queue_new(2);
  void *buf;
  size_t len;
  assert_mp(MP_EEMPTY, mp_queue_get_nowait(q, &buf, &len));
  uint64_t t0 = now_ns();
  assert_mp(MP_EEMPTY, mp_queue_get(q, &buf, &len, 0.05));
  assert_true(elapsed_since(t0) >= 0.049);
  assert_mp_ok(mp_queue_put(q, "a", 1, 0));
  assert_mp_ok(mp_queue_put_nowait(q, "b", 1));
  assert_true(mp_queue_full(q));
  assert_int_equal(2, mp_queue_qsize(q));
  assert_mp(MP_EFULL, mp_queue_put_nowait(q, "c", 1));
  t0 = now_ns();
  assert_mp(MP_EFULL, mp_queue_put(q, "c", 1, 0.05));
  assert_true(elapsed_since(t0) >= 0.049);
  /* Large messages too: the block taken for the copy goes back. */
  unsigned char *big = pattern(50000, 9);
  assert_mp(MP_EFULL, mp_queue_put(q, big, 50000, 0));
  assert_mp(MP_EFULL, mp_queue_put(q, big, 50000, 0.02));
  assert_mp_ok(mp_queue_get_nowait(q, &buf, &len));
  assert_memory_equal("a", buf, 1);
  mp_free(buf);
  assert_false(mp_queue_full(q));
  assert_mp_ok(mp_queue_put(q, big, 50000, 0));
  free(big);
  char b;
  assert_mp_ok(mp_queue_get_into(q, &b, 1, &len, 0));
  assert_int_equal('b', b);
  expect_message(q, 50000, 9);
  mp_queue_free(q);
}

/* close(): puts fail, gets drain and then fail, for every kind of get. */
static void test_close(void **state) {
  (void)state;
  mp_queue_t *q = mp_queue_new(0);
  unsigned char *big = pattern(70000, 3);
  assert_mp_ok(mp_queue_put(q, "x", 1, 0));
  assert_mp_ok(mp_queue_put(q, big, 70000, 0));
  assert_mp_ok(mp_queue_close(q));
  assert_mp_ok(mp_queue_close(q)); /* twice is harmless */
  assert_mp(MP_ECLOSED, mp_queue_put(q, "y", 1, MP_FOREVER));
  assert_mp(MP_ECLOSED, mp_queue_put(q, big, 70000, MP_FOREVER));
  void *buf;
  size_t len;
  assert_mp_ok(mp_queue_get(q, &buf, &len, MP_FOREVER));
  mp_free(buf);
  expect_message(q, 70000, 3);
  assert_mp(MP_ECLOSED, mp_queue_get(q, &buf, &len, MP_FOREVER));
  assert_mp(MP_ECLOSED, mp_queue_get_nowait(q, &buf, &len));
  unsigned char small[4];
  assert_mp(MP_ECLOSED, mp_queue_get_into(q, small, 4, &len, 1.0));
  assert_int_equal(0, mp_queue_qsize(q));
  free(big);
  mp_queue_free(q);
}

/* ---- Blocking between processes ------------------------------------------ */

/* A get blocked in another process wakes for a put; a put blocked on
 * maxsize wakes for a get. */
static void test_blocked_get_and_put_wake(void **state) {
  (void)state;
  struct queue_child c = queue_child_new(0);
  mp_process_t *p = start_blocking_child(get_one_child, &c);
  assert_mp_ok(mp_queue_put(c.q, "hello", 5, 0));
  assert_int_equal(0, finish_child(p));
  assert_int_equal(5, atomic_load(c.result));
  queue_child_free(&c);

  c = queue_child_new(1);
  p = start_blocking_child(put_two_child, &c);
  char buf[8];
  size_t len;
  assert_mp_ok(mp_queue_get_into(c.q, buf, sizeof buf, &len, JOIN_TIMEOUT));
  assert_memory_equal("one", buf, 3);
  assert_mp_ok(mp_queue_get_into(c.q, buf, sizeof buf, &len, JOIN_TIMEOUT));
  assert_memory_equal("two", buf, 3);
  assert_int_equal(0, finish_child(p));
  assert_mp_ok(atomic_load(c.result));
  queue_child_free(&c);
}

/* A ping-pong over two queues where every wait sleeps (no spinning): each
 * wait then races with the other side's put, and a lost wake-up would
 * stop both sides (seen once in about 20 runs of the bench's round trip
 * under load, before the waiter looked at the put side's lock before its
 * progress counter; the seam widens the window between the two looks).
 * A lost wake-up shows as MP_EEMPTY after 30 s. */
#define PING_PONGS 4000

struct ping_pong {
  mp_queue_t *there, *back;
};

static void dawdle(void) {
  usleep(20);
}

static void echo_child(void *arg) {
  const struct ping_pong *pp = arg;
  atomic_store(&mp__ring_spin_off, true);
  mp__ring_wait_hook = dawdle;
  char buf[64];
  size_t len;
  for (int i = 0; i < PING_PONGS; i++)
    if (mp_queue_get_into(pp->there, buf, sizeof buf, &len, 30.0) != 0 ||
        mp_queue_put(pp->back, buf, len, 30.0) != 0)
      _exit(1);
}

static void test_ping_pong_without_spinning(void **state) {
  (void)state;
  struct ping_pong pp = {mp_queue_new(0), mp_queue_new(0)};
  assert_non_null(pp.there);
  assert_non_null(pp.back);
  atomic_store(&mp__ring_spin_off, true);
  mp__ring_wait_hook = dawdle;
  mp_process_t *p = start_child(echo_child, &pp, sizeof pp);
  char buf[64] = {0};
  size_t len;
  int rc = 0;
  for (int i = 0; rc == 0 && i < PING_PONGS; i++) {
    memcpy(buf, &i, sizeof i);
    rc = mp_queue_put(pp.there, buf, sizeof buf, 30.0);
    if (rc == 0)
      rc = mp_queue_get_into(pp.back, buf, sizeof buf, &len, 30.0);
    if (rc == 0 && memcmp(buf, &i, sizeof i) != 0)
      rc = -1;
  }
  atomic_store(&mp__ring_spin_off, false);
  mp__ring_wait_hook = NULL;
  assert_mp_ok(rc);
  assert_int_equal(0, finish_child(p));
  mp_queue_free(pp.there);
  mp_queue_free(pp.back);
}

/* close() wakes a get blocked on an empty queue and a put blocked on a full
 * one, in other processes. */
static void test_close_wakes_blocked(void **state) {
  (void)state;
  struct queue_child g = queue_child_new(0), p = queue_child_new(1);
  mp_process_t *getter = start_blocking_child(get_one_child, &g);
  mp_process_t *putter = start_blocking_child(put_two_child, &p);
  assert_mp_ok(mp_queue_close(g.q));
  assert_mp_ok(mp_queue_close(p.q));
  assert_int_equal(0, finish_child(getter));
  assert_int_equal(0, finish_child(putter));
  assert_mp(MP_ECLOSED, atomic_load(g.result));
  /* "one" went in before close; "two" never. */
  assert_mp(MP_ECLOSED, atomic_load(p.result));
  queue_child_free(&g);
  queue_child_free(&p);
}

/* ---- Unbounded growth ---------------------------------------------------- */

/* Unbounded as in Python: one process puts far more than the ring holds
 * without anybody getting (the ring and the block budget grow), and
 * put_nowait never fails for room. Then everything comes out in order and
 * all the memory goes back. */
static void test_unbounded_single_process(void **state) {
  (void)state;
  uint64_t base = arena_baseline();
  mp_queue_t *q = mp_queue_new(0);
  enum { SMALL_N = 30000, BIG_N = 10 };
  unsigned char msg[64];
  for (uint32_t i = 0; i < SMALL_N; i++) {
    memset(msg, (int)(i & 0xff), sizeof msg);
    memcpy(msg, &i, sizeof i);
    assert_mp_ok(i % 2 ? mp_queue_put_nowait(q, msg, sizeof msg)
                       : mp_queue_put(q, msg, sizeof msg, MP_FOREVER));
  }
  unsigned char *big = pattern(1u << 20, 77);
  for (int i = 0; i < BIG_N; i++)
    assert_mp_ok(mp_queue_put(q, big, 1u << 20, i % 2 ? 0 : MP_FOREVER));
  free(big);
  assert_int_equal(SMALL_N + BIG_N, mp_queue_qsize(q));
  for (uint32_t i = 0; i < SMALL_N; i++) {
    size_t len;
    assert_mp_ok(mp_queue_get_into(q, msg, sizeof msg, &len, 0));
    uint32_t got;
    memcpy(&got, msg, sizeof got);
    assert_int_equal(i, got);
    assert_int_equal(i & 0xff, msg[63]);
  }
  for (int i = 0; i < BIG_N; i++)
    expect_message(q, 1u << 20, 77);
  assert_true(mp_queue_empty(q));
  mp_queue_free(q);
  assert_int_equal(base, mp__arena_in_use());
}

/* A message larger than the arena can hold: -ENOMEM, and the queue goes on
 * (the buffer is never read: the block cannot be had). */
static void test_too_large(void **state) {
  (void)state;
  mp_queue_t *q = mp_queue_new(0);
  static const char dummy[1];
  assert_mp(-ENOMEM, mp_queue_put(q, dummy, (size_t)1 << 46, 0));
  assert_mp_ok(mp_queue_put(q, "ok", 2, 0));
  char buf[2];
  size_t len;
  assert_mp_ok(mp_queue_get_into(q, buf, 2, &len, 0));
  mp_queue_free(q);
}

/* ---- Many producers and consumers ---------------------------------------- */
static void run_traffic(size_t maxsize, uint32_t producers, uint32_t consumers,
                        uint32_t per_run) {
  uint64_t base = arena_baseline();
  struct traffic *t = shared(sizeof *t);
  t->q = mp_queue_new(maxsize);
  t->per_run = per_run;
  t->large = true;
  mp_process_t *prod[8], *cons[8];
  for (uint32_t i = 0; i < consumers; i++) {
    struct traffic_child c = {t, 0};
    cons[i] = start_child(traffic_consumer, &c, sizeof c);
  }
  for (uint32_t i = 0; i < producers; i++) {
    struct traffic_child c = {t, i};
    prod[i] = start_child(traffic_producer, &c, sizeof c);
  }
  for (uint32_t i = 0; i < producers; i++)
    assert_int_equal(0, finish_child(prod[i]));
  for (uint32_t i = 0; i < consumers; i++)
    traffic_put_stop(t->q);
  for (uint32_t i = 0; i < consumers; i++)
    assert_int_equal(0, finish_child(cons[i]));
  struct traffic_result res = traffic_check(t, producers);
  assert_int_equal(0, atomic_load(&t->errors));
  assert_int_equal(0, atomic_load(&t->torn));
  assert_int_equal(0, atomic_load(&t->foreign));
  assert_int_equal(0, atomic_load(&t->out_of_order));
  assert_int_equal(0, res.lost);
  assert_int_equal(0, res.duplicated);
  assert_int_equal(0, res.phantom);
  assert_int_equal(producers * per_run, atomic_load(&t->taken));
  assert_true(mp_queue_empty(t->q));
  mp_queue_free(t->q);
  mp_raw_free(t);
  assert_int_equal(base, mp__arena_in_use());
}

static void test_many_producers_consumers(void **state) {
  (void)state;
  run_traffic(0, 4, 3, 1500);
}

/* maxsize 8: producers block on the count all the time. */
static void test_many_producers_consumers_bounded(void **state) {
  (void)state;
  run_traffic(8, 3, 3, 800);
}

/* Threads of one process, producers and consumers at once. */
static void *thread_producer(void *arg) {
  traffic_producer(arg);
  return NULL;
}

static void *thread_consumer(void *arg) {
  traffic_consumer(arg);
  return NULL;
}

static void test_threads(void **state) {
  (void)state;
  struct traffic *t = shared(sizeof *t);
  t->q = mp_queue_new(16);
  t->per_run = 1000;
  pthread_t prod[2], cons[2];
  struct traffic_child pc[2] = {{t, 0}, {t, 1}}, cc = {t, 0};
  for (int i = 0; i < 2; i++) {
    assert_int_equal(0, pthread_create(&cons[i], NULL, thread_consumer, &cc));
    assert_int_equal(0,
                     pthread_create(&prod[i], NULL, thread_producer, &pc[i]));
  }
  for (int i = 0; i < 2; i++)
    pthread_join(prod[i], NULL);
  traffic_put_stop(t->q);
  traffic_put_stop(t->q);
  for (int i = 0; i < 2; i++)
    pthread_join(cons[i], NULL);
  struct traffic_result res = traffic_check(t, 2);
  assert_int_equal(0, res.lost + res.duplicated + res.phantom);
  assert_int_equal(0, atomic_load(&t->torn) + atomic_load(&t->out_of_order));
  assert_int_equal(2000, atomic_load(&t->taken));
  mp_queue_free(t->q);
  mp_raw_free(t);
}

/* ---- SimpleQueue --------------------------------------------------------- */
struct simple_args {
  mp_simple_queue_t *in, *out;
};

/* Echoes messages back with their bytes reversed until an empty one. */
static void simple_echo_child(void *arg) {
  struct simple_args *a = arg;
  for (;;) {
    void *buf;
    size_t len;
    if (mp_simple_queue_get(a->in, &buf, &len) != 0)
      _exit(2);
    unsigned char *b = buf;
    for (size_t i = 0; i < len / 2; i++) {
      unsigned char c = b[i];
      b[i] = b[len - 1 - i];
      b[len - 1 - i] = c;
    }
    mp_simple_queue_put(a->out, buf, len);
    mp_free(buf);
    if (len == 0)
      return;
  }
}

static void test_simple_queue(void **state) {
  (void)state;
  struct simple_args a = {mp_simple_queue_new(), mp_simple_queue_new()};
  assert_non_null(a.in);
  assert_true(mp_simple_queue_empty(a.in));
  mp_process_t *p = start_child(simple_echo_child, &a, sizeof a);
  unsigned char *big = pattern(200000, 5);
  assert_mp_ok(mp_simple_queue_put(a.in, "abc", 3));
  assert_mp_ok(mp_simple_queue_put(a.in, big, 200000));
  assert_mp_ok(mp_simple_queue_put(a.in, "", 0));
  char small[3];
  size_t len;
  assert_mp_ok(mp_simple_queue_get_into(a.out, small, 3, &len));
  assert_memory_equal("cba", small, 3);
  void *buf;
  assert_mp(MP_EOVERFLOW, mp_simple_queue_get_into(a.out, small, 3, &len));
  assert_int_equal(200000, len);
  assert_mp_ok(mp_simple_queue_get(a.out, &buf, &len));
  assert_int_equal(200000, len);
  for (size_t i = 0; i < 200000; i++)
    if (((unsigned char *)buf)[i] != big[199999 - i])
      fail_msg("byte %zu of the echo differs", i);
  mp_free(buf);
  assert_mp_ok(mp_simple_queue_get(a.out, &buf, &len));
  assert_int_equal(0, len);
  mp_free(buf);
  assert_int_equal(0, finish_child(p));
  assert_true(mp_simple_queue_empty(a.out));
  assert_mp_ok(mp_simple_queue_close(a.out));
  assert_mp(MP_ECLOSED, mp_simple_queue_put(a.out, "z", 1));
  assert_mp(MP_ECLOSED, mp_simple_queue_get(a.out, &buf, &len));
  free(big);
  mp_simple_queue_free(a.in);
  mp_simple_queue_free(a.out);
}

/* ---- JoinableQueue ------------------------------------------------------- */
struct joinable_args {
  mp_joinable_queue_t *q;
  int n;
};

static void worker_child(void *arg) {
  struct joinable_args *a = arg;
  for (int i = 0; i < a->n; i++) {
    void *buf;
    size_t len;
    if (mp_joinable_queue_get(a->q, &buf, &len, JOIN_TIMEOUT) != 0)
      _exit(2);
    mp_free(buf);
    sleep_us(i % 16 == 0 ? 1000 : 0);
    if (mp_joinable_queue_task_done(a->q) != 0)
      _exit(3);
  }
}

static void test_joinable_queue(void **state) {
  (void)state;
  mp_joinable_queue_t *q = mp_joinable_queue_new(4);
  assert_non_null(q);
  assert_mp_ok(mp_joinable_queue_join(q, 0)); /* nothing put */
  assert_mp(MP_EOVERFLOW, mp_joinable_queue_task_done(q));
  assert_mp_ok(mp_joinable_queue_put(q, "a", 1, 0));
  assert_mp(MP_ETIMEDOUT, mp_joinable_queue_join(q, 0));
  uint64_t t0 = now_ns();
  assert_mp(MP_ETIMEDOUT, mp_joinable_queue_join(q, 0.05));
  assert_true(elapsed_since(t0) >= 0.049);
  char c;
  size_t len;
  assert_mp_ok(mp_joinable_queue_get_into(q, &c, 1, &len, 0));
  assert_mp(MP_ETIMEDOUT, mp_joinable_queue_join(q, 0)); /* got, not done */
  assert_mp_ok(mp_joinable_queue_task_done(q));
  assert_mp_ok(mp_joinable_queue_join(q, 0));
  assert_mp(MP_EOVERFLOW, mp_joinable_queue_task_done(q));

  /* A worker process marks each task done; join returns once all are. */
  struct joinable_args a = {q, 200};
  mp_process_t *p = start_child(worker_child, &a, sizeof a);
  unsigned char *big = pattern(10000, 1);
  for (int i = 0; i < a.n; i++)
    assert_mp_ok(
        mp_joinable_queue_put(q, big, i % 3 ? 8 : 10000, JOIN_TIMEOUT));
  free(big);
  assert_mp_ok(mp_joinable_queue_join(q, JOIN_TIMEOUT));
  assert_true(mp_joinable_queue_empty(q));
  assert_int_equal(0, mp_joinable_queue_qsize(q));
  assert_false(mp_joinable_queue_full(q));
  assert_int_equal(0, finish_child(p));
  assert_mp(MP_EOVERFLOW, mp_joinable_queue_task_done(q));
  assert_mp_ok(mp_joinable_queue_close(q));
  void *buf;
  assert_mp(MP_ECLOSED, mp_joinable_queue_get(q, &buf, &len, 0));
  mp_joinable_queue_free(q);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_sizes_in_order),
      mpt_test(test_get_into),
      mpt_test(test_timeouts),
      mpt_test(test_close),
      mpt_test(test_blocked_get_and_put_wake),
      mpt_test(test_ping_pong_without_spinning),
      mpt_test(test_close_wakes_blocked),
      mpt_test(test_unbounded_single_process),
      mpt_test(test_too_large),
      mpt_test(test_many_producers_consumers),
      mpt_test(test_many_producers_consumers_bounded),
      mpt_test(test_threads),
      mpt_test(test_simple_queue),
      mpt_test(test_joinable_queue),
  };
  return MPT_RUN(argc, argv, tests);
}

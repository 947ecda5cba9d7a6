/* Queues when producers and consumers die: processes are killed with
 * SIGKILL at random moments (inside put and get too) while others keep
 * going; afterwards every message is accounted for (none torn, none twice,
 * none lost except one per killed consumer at most) and no shared memory is
 * left behind. */
#include "queue_fixtures.h"

static unsigned rng_state;

static unsigned rnd(unsigned n) {
  rng_state = rng_state * 1103515245u + 12345u;
  return (rng_state >> 8) % n;
}

static void seed_rng(void) {
  rng_state = (unsigned)getpid() ^ (unsigned)time(NULL);
  print_message("random seed %u\n", rng_state);
}

/* ---- Random kills -------------------------------------------------------- */
#define PRODUCERS 3
#define CONSUMERS 2
#ifndef KILLS
#define KILLS 40
#endif

struct member {
  mp_process_t *p;
  bool producer;
};

static mp_process_t *start_member(struct traffic *t, bool producer,
                                  uint32_t run) {
  struct traffic_child c = {t, run};
  return start_child(producer ? traffic_producer : traffic_consumer, &c,
                     sizeof c);
}

static void check_accounts(struct traffic *t, uint32_t runs,
                           unsigned consumer_kills) {
  struct traffic_result res = traffic_check(t, runs);
  print_message("%u runs, %u messages taken, %u lost, %u consumers killed\n",
                runs, atomic_load(&t->taken), res.lost, consumer_kills);
  assert_int_equal(0, atomic_load(&t->errors));
  assert_int_equal(0, atomic_load(&t->torn));
  assert_int_equal(0, atomic_load(&t->foreign));
  assert_int_equal(0, atomic_load(&t->out_of_order));
  assert_int_equal(0, res.duplicated);
  assert_int_equal(0, res.phantom);
  assert_true(res.lost <= consumer_kills);
}

static void run_random_kills(size_t maxsize) {
  seed_rng();
  uint64_t base = arena_baseline();
  struct traffic *t = shared(sizeof *t);
  t->q = mp_queue_new(maxsize);
  t->per_run = 1500;
  t->large = true;
  struct member m[PRODUCERS + CONSUMERS];
  uint32_t runs = 0;
  for (int i = 0; i < PRODUCERS + CONSUMERS; i++) {
    m[i].producer = i < PRODUCERS;
    m[i].p = start_member(t, m[i].producer, m[i].producer ? runs++ : 0);
  }
  unsigned consumer_kills = 0;
  for (int k = 0; k < KILLS && runs < MAX_RUNS; k++) {
    sleep_us((long)rnd(4000));
    int i = (int)rnd(PRODUCERS + CONSUMERS);
    int code = kill_child(m[i].p);
    if (!m[i].producer)
      consumer_kills += code == -SIGKILL;
    m[i].p = start_member(t, m[i].producer, m[i].producer ? runs++ : 0);
  }
  /* The survivors finish; then every consumer gets a STOP after the last
   * message, so nothing is left in the queue. */
  for (int i = 0; i < PRODUCERS; i++)
    assert_int_equal(0, finish_child(m[i].p));
  for (int i = 0; i < CONSUMERS; i++)
    traffic_put_stop(t->q);
  for (int i = PRODUCERS; i < PRODUCERS + CONSUMERS; i++)
    assert_int_equal(0, finish_child(m[i].p));
  traffic_drain(t);
  check_accounts(t, runs, consumer_kills);
  /* Consistent and usable: empty, and messages still go through. */
  mp_queue_t *q = t->q;
  assert_int_equal(0, mp_queue_qsize(t->q));
  assert_mp_ok(mp_queue_put(t->q, "after", 5, 0));
  char buf[8];
  size_t len;
  assert_mp_ok(mp_queue_get_into(t->q, buf, sizeof buf, &len, 0));
  assert_memory_equal("after", buf, 5);
  mp_raw_free(t);
  free_and_check_leaks(q, base);
}

static void test_random_kills(void **state) {
  (void)state;
  run_random_kills(0);
}

/* maxsize 16: killed while blocked on the count, too. */
static void test_random_kills_bounded(void **state) {
  (void)state;
  run_random_kills(16);
}

/* ---- Killed in the middle of a large copy -------------------------------- */
#define HUGE (48u << 20)

struct copy_args {
  mp_queue_t *q;
  _Atomic int *started;
  unsigned char *src; /* the producer's message, in shared memory */
};

static void put_huge_child(void *arg) {
  struct copy_args *a = arg;
  atomic_store(a->started, 1);
  mp_queue_put(a->q, a->src, HUGE, MP_FOREVER);
  for (;;)
    pause();
}

static void get_huge_child(void *arg) {
  struct copy_args *a = arg;
  void *buf;
  size_t len;
  atomic_store(a->started, 1);
  mp_queue_get(a->q, &buf, &len, MP_FOREVER);
  for (;;)
    pause();
}

/* Puts a message of len bytes into q (none for 0) and gets the first one,
 * checking it. */
static void round_trip(mp_queue_t *q, size_t len) {
  if (len) {
    unsigned char *p = malloc(len);
    msg_fill(p, 1, 2, (uint32_t)len);
    assert_mp_ok(mp_queue_put(q, p, len, 0));
    free(p);
  }
  void *buf;
  size_t got;
  assert_mp_ok(mp_queue_get(q, &buf, &got, 0));
  struct msg_head h;
  assert_true(msg_valid(buf, got, &h));
  mp_free(buf);
}

static void kill_during(void (*fn)(void *), struct copy_args *a) {
  atomic_store(a->started, 0);
  mp_process_t *p = start_child(fn, a, sizeof *a);
  assert_true(poll_until(flag_set, (void *)a->started));
  sleep_us(3000); /* provoke: inside the copy (tens of milliseconds) */
  assert_int_equal(-SIGKILL, kill_child(p));
}

/* A producer killed while filling a block and a consumer killed while
 * reading one: the queue takes the blocks back at its next large put (so
 * its memory stays level), and all is returned when it is freed. */
static void test_killed_mid_copy(void **state) {
  (void)state;
  struct copy_args a = {NULL, shared(64), shared(HUGE)};
  msg_fill(a.src, 7, 7, HUGE);
  uint64_t base = arena_baseline();
  a.q = mp_queue_new(0);
  /* A spare block for the victims: they copy at once, with no arena call. */
  assert_mp_ok(mp_queue_put(a.q, a.src, HUGE, 0));
  round_trip(a.q, 0); /* takes the huge one first */
  uint64_t level = mp__arena_in_use();
  for (int i = 0; i < 4; i++) {
    bool producer = i < 2;
    if (!producer)
      assert_mp_ok(mp_queue_put(a.q, a.src, HUGE, 0));
    kill_during(producer ? put_huge_child : get_huge_child, &a);
    /* Whole or not at all (a killed consumer may take it with it). */
    void *buf;
    size_t len;
    int rc = mp_queue_get(a.q, &buf, &len, 0);
    if (rc == 0) {
      struct msg_head h;
      assert_true(msg_valid(buf, len, &h));
      mp_free(buf);
    } else {
      assert_mp(MP_EEMPTY, rc);
    }
    round_trip(a.q, 20000); /* collects the dead process's block */
    assert_int_equal(level, mp__arena_in_use());
  }
  free_and_check_leaks(a.q, base);
  mp_raw_free((void *)a.started);
  mp_raw_free(a.src);
}

/* ---- Killed while blocked ------------------------------------------------ */

/* A consumer killed asleep in get, a producer killed asleep in put: the
 * others are not disturbed. */
static void test_killed_while_blocked(void **state) {
  (void)state;
  struct queue_child c = queue_child_new(1);
  for (int i = 0; i < 3; i++)
    kill_child(start_blocking_child(get_one_child, &c));
  mp_process_t *p = start_blocking_child(get_one_child, &c);
  assert_mp_ok(mp_queue_put(c.q, "live", 4, 0));
  assert_int_equal(0, finish_child(p));
  assert_int_equal(4, atomic_load(c.result));

  assert_mp_ok(mp_queue_put(c.q, "full", 4, 0));
  for (int i = 0; i < 3; i++)
    kill_child(start_blocking_child(put_two_child, &c));
  assert_int_equal(1, mp_queue_qsize(c.q));
  char buf[8];
  size_t len;
  assert_mp_ok(mp_queue_get_into(c.q, buf, sizeof buf, &len, 0));
  assert_memory_equal("full", buf, 4);
  assert_mp(MP_EEMPTY, mp_queue_get_into(c.q, buf, sizeof buf, &len, 0));
  queue_child_free(&c);
}

/* ---- JoinableQueue ------------------------------------------------------- */
struct joinable_args {
  mp_joinable_queue_t *q;
  _Atomic uint32_t *done; /* puts that returned 0 */
};

static void joinable_producer(void *arg) {
  struct joinable_args *a = arg;
  unsigned char big[6000] = {1};
  for (int i = 0; i < 100000; i++) {
    if (mp_joinable_queue_put(a->q, big, i % 4 ? 16 : sizeof big, MP_FOREVER) !=
        0)
      return;
    atomic_fetch_add(a->done, 1);
  }
}

/* Producers killed mid-put never leave a task counted that nobody can get:
 * once everything is taken and marked done, join returns. */
static void test_joinable_producers_killed(void **state) {
  (void)state;
  seed_rng();
  struct joinable_args a = {mp_joinable_queue_new(64), shared(64)};
  for (int k = 0; k < 12; k++) {
    mp_process_t *p = start_child(joinable_producer, &a, sizeof a);
    for (int i = 0; i < 40; i++) { /* consume meanwhile */
      char buf[6000];
      size_t len;
      if (mp_joinable_queue_get_into(a.q, buf, sizeof buf, &len, 0.001) == 0)
        assert_mp_ok(mp_joinable_queue_task_done(a.q));
    }
    sleep_us((long)rnd(2000));
    kill_child(p);
  }
  char buf[6000];
  size_t len;
  while (mp_joinable_queue_get_into(a.q, buf, sizeof buf, &len, 0) == 0)
    assert_mp_ok(mp_joinable_queue_task_done(a.q));
  assert_mp_ok(mp_joinable_queue_join(a.q, JOIN_TIMEOUT));
  assert_mp(MP_EOVERFLOW, mp_joinable_queue_task_done(a.q));
  mp_joinable_queue_free(a.q);
  mp_raw_free((void *)a.done);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_random_kills),
      mpt_test(test_random_kills_bounded),
      mpt_test(test_killed_mid_copy),
      mpt_test(test_killed_while_blocked),
      mpt_test(test_joinable_producers_killed),
  };
  return MPT_RUN(argc, argv, tests);
}

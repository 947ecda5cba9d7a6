/* imap / imap_unordered over a producer: results in order or as they
 * complete, the bound on items in flight held at every step, a failing
 * producer (Python's test_imap_handle_iterable_exception), failing tasks,
 * timeouts, and freeing a stream in the middle. */
#include "pool_fixtures.h"

typedef struct counter_input {
  int64_t next, n;
  int64_t fail_at; /* -1: never */
  int fail_code;
  size_t produced;
} counter_input_t;

/* Python's exception_throwing_generator(total, when): 0, 1, ... and a
 * failure at fail_at. */
static int produce_count(void *arg, void *item) {
  counter_input_t *c = arg;
  if (c->next == c->fail_at)
    return c->fail_code;
  if (c->next == c->n)
    return 0;
  memcpy(item, &c->next, sizeof c->next);
  c->next++;
  c->produced++;
  return 1;
}

static counter_input_t counting(int64_t n) {
  return (counter_input_t){.n = n, .fail_at = -1};
}

static void test_ordered_and_bounded(void **state) {
  (void)state;
  mp_pool_t *pool = new_pool(2, NULL);
  enum { N = 2000, WINDOW = 12 };
  for (size_t chunk = 1; chunk <= 5; chunk += 4) {
    counter_input_t c = counting(N);
    mp_stream_opts_t opts = {.chunksize = chunk, .max_in_flight = WINDOW};
    mp_stream_t *s =
        mp_pool_imap_stream(pool, double_it, sizeof(int64_t), sizeof(int64_t),
                            produce_count, &c, &opts);
    assert_non_null(s);
    size_t delivered = 0;
    int64_t out;
    mp_iter_item_t item;
    int rc;
    while ((rc = mp_stream_next(s, WAIT_TIMEOUT, &out, &item)) == 1) {
      assert_int_equal(delivered, item.index);
      assert_int_equal(0, item.error);
      assert_int_equal(2 * (int64_t)delivered, out);
      delivered++;
      /* Never more than the window produced and not delivered. */
      assert_true(c.produced - delivered <= WINDOW);
    }
    assert_int_equal(0, rc);
    assert_int_equal(N, delivered);
    assert_int_equal(0, mp_stream_next(s, 0, &out, &item)); /* stays ended */
    mp_stream_free(s);
  }
  mp_pool_free(pool);
}

static void test_unordered_delivers_each_once(void **state) {
  (void)state;
  mp_pool_t *pool = new_pool(3, NULL);
  enum { N = 1500 };
  counter_input_t c = counting(N);
  mp_stream_opts_t opts = {.chunksize = 3};
  mp_stream_t *s =
      mp_pool_imap_unordered_stream(pool, double_it, sizeof(int64_t),
                                    sizeof(int64_t), produce_count, &c, &opts);
  assert_non_null(s);
  char *seen = calloc(N, 1);
  int64_t out;
  mp_iter_item_t item;
  size_t count = 0;
  while (mp_stream_next(s, WAIT_TIMEOUT, &out, &item) == 1) {
    assert_true(item.index < N);
    assert_int_equal(0, seen[item.index]);
    seen[item.index] = 1;
    assert_int_equal(2 * (int64_t)item.index, out);
    count++;
    /* The default window: 4 MiB of items, at most 16384. */
    assert_true(c.produced - count <= 16384);
  }
  assert_int_equal(N, count);
  free(seen);
  mp_stream_free(s);
  mp_pool_free(pool);
}

/* test_imap_handle_iterable_exception: the items before the failure, the
 * failure, then the end; for every chunk size and both orders. */
static void test_producer_failure(void **state) {
  (void)state;
  mp_pool_t *pool = new_pool(2, NULL);
  for (int unordered = 0; unordered < 2; unordered++) {
    for (size_t chunk = 1; chunk <= 4; chunk++) {
      counter_input_t c = counting(10);
      c.fail_at = 3;
      c.fail_code = -EIO;
      mp_stream_opts_t opts = {.chunksize = chunk};
      mp_stream_t *s =
          (unordered ? mp_pool_imap_unordered_stream : mp_pool_imap_stream)(
              pool, double_it, sizeof(int64_t), sizeof(int64_t), produce_count,
              &c, &opts);
      assert_non_null(s);
      int64_t out, sum = 0;
      mp_iter_item_t item;
      for (int i = 0; i < 3; i++) {
        assert_int_equal(1, mp_stream_next(s, WAIT_TIMEOUT, &out, &item));
        if (!unordered)
          assert_int_equal(2 * i, out);
        sum += out;
      }
      assert_int_equal(2 * (0 + 1 + 2), sum);
      assert_mp(-EIO, mp_stream_next(s, WAIT_TIMEOUT, &out, &item));
      assert_int_equal(3, item.index);
      assert_mp(-EIO, item.error);
      assert_int_equal(0, mp_stream_next(s, WAIT_TIMEOUT, &out, &item));
      mp_stream_free(s);
    }
  }
  mp_pool_free(pool);
}

/* ---- task failures and timeouts ------------------------------------------ */

typedef struct action_input {
  int64_t next, n;
  mp_event_t *event;
} action_input_t;

/* Item i: fails with code 100 + i when i % 3 == 1, else doubles; blocks on
 * the event when an event is given. */
static int produce_actions(void *arg, void *item) {
  action_input_t *a = arg;
  if (a->next == a->n)
    return 0;
  int32_t i = (int32_t)a->next++;
  task_in_t t = a->event     ? act(ACT_BLOCK, i)
                : i % 3 == 1 ? act(ACT_FAIL, 100 + i)
                             : act(ACT_DOUBLE, i);
  t.event = a->event;
  memcpy(item, &t, sizeof t);
  return 1;
}

static void test_task_failures_and_timeout(void **state) {
  (void)state;
  mp_pool_t *pool = new_pool(2, NULL);
  action_input_t in = {.n = 30};
  mp_stream_t *s =
      mp_pool_imap_stream(pool, action_map, sizeof(task_in_t), sizeof(int64_t),
                          produce_actions, &in, NULL);
  assert_non_null(s);
  int64_t out;
  mp_iter_item_t item;
  for (int i = 0; i < 30; i++) {
    assert_int_equal(1, mp_stream_next(s, WAIT_TIMEOUT, &out, &item));
    assert_int_equal(i, item.index);
    if (i % 3 == 1) {
      assert_mp(MP_ETASK, item.error);
      assert_int_equal(100 + i, item.task_code);
    } else {
      assert_int_equal(0, item.error);
      assert_int_equal(2 * i, out);
    }
  }
  assert_int_equal(0, mp_stream_next(s, WAIT_TIMEOUT, &out, &item));
  mp_stream_free(s);

  /* Blocked tasks: next times out; freed in the middle, it waits for the
   * tasks in flight, which the event lets finish. */
  action_input_t blocked = {.n = 1000000, .event = mp_event_new()};
  assert_non_null(blocked.event);
  s = mp_pool_imap_unordered_stream(pool, action_map, sizeof(task_in_t),
                                    sizeof(int64_t), produce_actions, &blocked,
                                    NULL);
  assert_non_null(s);
  assert_mp(MP_ETIMEDOUT, mp_stream_next(s, 0, &out, &item));
  assert_mp(MP_ETIMEDOUT, mp_stream_next(s, 0.01, &out, &item));
  mp_event_set(blocked.event);
  assert_int_equal(1, mp_stream_next(s, WAIT_TIMEOUT, &out, &item));
  int64_t produced = blocked.next;
  mp_stream_free(s);
  assert_int_equal(produced, blocked.next); /* not called again */
  /* The default window (16384 items of 24 + 8 bytes), refilled once. */
  assert_true(produced <= 16384 + 16384 / 4);
  mp_event_free(blocked.event);
  mp_pool_free(pool);
}

static void test_errors(void **state) {
  (void)state;
  mp_pool_t *pool = new_pool(1, NULL);
  counter_input_t c = counting(5);
  errno = 0;
  assert_null(
      mp_pool_imap_stream(NULL, double_it, 8, 8, produce_count, &c, NULL));
  assert_int_equal(EINVAL, errno);
  assert_null(mp_pool_imap_stream(pool, NULL, 8, 8, produce_count, &c, NULL));
  assert_null(mp_pool_imap_stream(pool, double_it, 8, 8, NULL, &c, NULL));
  assert_mp(MP_EINVAL, mp_stream_next(NULL, 0, NULL, NULL));
  mp_stream_free(NULL);
  /* An empty input ends at once; outputs may be ignored. */
  counter_input_t empty = counting(0);
  mp_stream_t *s =
      mp_pool_imap_stream(pool, double_it, 8, 8, produce_count, &empty, NULL);
  assert_non_null(s);
  assert_int_equal(0, mp_stream_next(s, 0, NULL, NULL));
  mp_stream_free(s);
  assert_mp_ok(mp_pool_close(pool));
  errno = 0;
  assert_null(
      mp_pool_imap_stream(pool, double_it, 8, 8, produce_count, &c, NULL));
  assert_int_equal(-MP_ESTATE, errno);
  assert_mp_ok(mp_pool_join(pool));
  mp_pool_free(pool);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_ordered_and_bounded),
      mpt_test(test_unordered_delivers_each_once),
      mpt_test(test_producer_failure),
      mpt_test(test_task_failures_and_timeout),
      mpt_test(test_errors),
  };
  return MPT_RUN(argc, argv, tests);
}

/* Fixtures shared by the queue test programs (test_queue*.c): messages
 * that verify themselves, and traffic between producer and consumer
 * processes whose every message is accounted for in shared memory. */
#ifndef MPROC_QUEUE_FIXTURES_H
#define MPROC_QUEUE_FIXTURES_H

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "sync_fixtures.h"

#include "testing.h"

/* Checks that freeing q returned every byte to the arena, unless a killed
 * process was inside the arena for it (then says so). */
static inline void free_and_check_leaks(mp_queue_t *q, uint64_t base) {
  bool interrupted = mp__ring_arena_interrupted(q);
  mp_queue_free(q);
  uint64_t now = mp__arena_in_use();
  if (interrupted)
    print_message("a process was killed inside the arena (%lld bytes "
                  "lost there): leak check skipped\n",
                  (long long)(now - base));
  else
    assert_int_equal(base, now);
}

/* In-use bytes once the family-wide objects (the owner table) exist. */
static inline uint64_t arena_baseline(void) {
  mp_lock_free(mp_lock_new());
  return mp__arena_in_use();
}

/* ---- Children blocked in a queue --------------------------------------------
 * A child reports through shared memory that it is about to block (so the
 * test can provoke: let it fall asleep first) and what its call returned. */
struct queue_child {
  mp_queue_t *q;
  _Atomic int *started;
  _Atomic int *result; /* 1 until the call returns */
};

static inline struct queue_child queue_child_new(size_t maxsize) {
  struct queue_child c = {mp_queue_new(maxsize), shared(64), shared(64)};
  atomic_store(c.result, 1);
  return c;
}

static inline void queue_child_free(struct queue_child *c) {
  mp_queue_free(c->q);
  mp_raw_free((void *)c->started);
  mp_raw_free((void *)c->result);
}

static inline bool flag_set(void *arg) {
  return atomic_load((_Atomic int *)arg) != 0;
}

/* Starts fn with c and waits until it is about to block. */
static inline mp_process_t *start_blocking_child(void (*fn)(void *),
                                                 struct queue_child *c) {
  atomic_store(c->started, 0);
  mp_process_t *p = start_child(fn, c, sizeof *c);
  assert_true(poll_until(flag_set, (void *)c->started));
  sleep_us(20000); /* provoke: let it fall asleep */
  return p;
}

/* Gets one message: result is its length, or the code. */
static void get_one_child(void *arg) {
  struct queue_child *c = arg;
  char buf[16];
  size_t len;
  atomic_store(c->started, 1);
  int rc = mp_queue_get_into(c->q, buf, sizeof buf, &len, MP_FOREVER);
  atomic_store(c->result, rc == 0 ? (int)len : rc);
}

/* Puts "one" and "two" (the second blocks in a queue of maxsize 1, both in
 * a full one): result is the code of the last put. */
static void put_two_child(void *arg) {
  struct queue_child *c = arg;
  atomic_store(c->started, 1);
  int rc = mp_queue_put(c->q, "one", 3, MP_FOREVER);
  if (rc == 0)
    rc = mp_queue_put(c->q, "two", 3, MP_FOREVER);
  atomic_store(c->result, rc);
}

/* ---- Self-verifying messages ------------------------------------------------
 * A message is a header {run, seq, len} and bytes derived from it, so a
 * consumer can tell a whole message from a torn or foreign one. */
struct msg_head {
  uint32_t run; /* which producer process put it */
  uint32_t seq; /* its number in that run */
  uint32_t len; /* total length */
  uint32_t check;
};

#define STOP_RUN 0xffffffffu /* a message telling a consumer to stop */

static inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

/* Mostly small messages, some out of line, a few large ones. */
static inline uint32_t msg_len(uint32_t run, uint32_t seq, bool large) {
  uint32_t h = mix32(run * 2654435761u ^ seq);
  uint32_t pick = h % 100;
  if (pick < 70)
    return sizeof(struct msg_head) + h % 240;
  if (pick < 95 || !large)
    return 4097 + h % 12000;
  return (100u << 10) + h % (200u << 10);
}

static inline void msg_fill(unsigned char *buf, uint32_t run, uint32_t seq,
                            uint32_t len) {
  struct msg_head h = {run, seq, len, mix32(run ^ seq ^ len)};
  memcpy(buf, &h, sizeof h);
  uint32_t x = mix32(run + seq * 7919u);
  for (uint32_t i = sizeof h; i < len; i++)
    buf[i] = (unsigned char)(x + i * 131u);
}

/* True when buf[0..len) is exactly the message its header names. */
static inline bool msg_valid(const unsigned char *buf, size_t len,
                             struct msg_head *out) {
  if (len < sizeof *out)
    return false;
  memcpy(out, buf, sizeof *out);
  if (out->len != len || out->check != mix32(out->run ^ out->seq ^ out->len))
    return false;
  uint32_t x = mix32(out->run + out->seq * 7919u);
  for (uint32_t i = sizeof *out; i < len; i++)
    if (buf[i] != (unsigned char)(x + i * 131u))
      return false;
  return true;
}

/* ---- Traffic ----------------------------------------------------------------
 * Producer runs (one process each) put per_run messages; consumers take
 * messages until a STOP message. Everything is counted in shared memory. */
#define MAX_RUNS    96
#define MAX_PER_RUN 4096

struct traffic {
  mp_queue_t *q;
  uint32_t per_run;
  bool large; /* include 100-300 KiB messages */
  /* done[r]: messages of run r whose put returned 0; a put that started
   * after that (and may have published) is seq == done[r]. */
  _Atomic uint32_t done[MAX_RUNS];
  _Atomic uint8_t received[MAX_RUNS][MAX_PER_RUN];
  _Atomic uint32_t torn, foreign, out_of_order, errors;
  _Atomic uint32_t taken; /* messages taken by consumers */
};

struct traffic_child {
  struct traffic *t;
  uint32_t run; /* producers */
};

static void traffic_producer(void *arg) {
  struct traffic_child *c = arg;
  struct traffic *t = c->t;
  unsigned char *buf = malloc(300u << 10);
  for (uint32_t seq = 0; seq < t->per_run; seq++) {
    uint32_t len = msg_len(c->run, seq, t->large);
    msg_fill(buf, c->run, seq, len);
    if (mp_queue_put(t->q, buf, len, MP_FOREVER) != 0) {
      atomic_fetch_add(&t->errors, 1);
      break;
    }
    atomic_store(&t->done[c->run], seq + 1);
  }
  free(buf);
}

/* Records one message taken; false for a STOP message. */
static inline bool traffic_record(struct traffic *t, const void *buf,
                                  size_t len, uint32_t *last_seq) {
  struct msg_head h;
  if (len == sizeof h) {
    memcpy(&h, buf, sizeof h);
    if (h.run == STOP_RUN)
      return false;
  }
  if (!msg_valid(buf, len, &h)) {
    atomic_fetch_add(&t->torn, 1);
    return true;
  }
  if (h.run >= MAX_RUNS || h.seq >= t->per_run) {
    atomic_fetch_add(&t->foreign, 1);
    return true;
  }
  /* FIFO per producer: one consumer sees a run's numbers grow. */
  if (last_seq[h.run] != UINT32_MAX && h.seq <= last_seq[h.run])
    atomic_fetch_add(&t->out_of_order, 1);
  last_seq[h.run] = h.seq;
  atomic_fetch_add(&t->received[h.run][h.seq], 1);
  atomic_fetch_add(&t->taken, 1);
  return true;
}

static void traffic_consumer(void *arg) {
  struct traffic *t = ((struct traffic_child *)arg)->t;
  uint32_t last_seq[MAX_RUNS];
  memset(last_seq, 0xff, sizeof last_seq);
  for (;;) {
    void *buf;
    size_t len;
    int rc = mp_queue_get(t->q, &buf, &len, MP_FOREVER);
    if (rc != 0) {
      atomic_fetch_add(&t->errors, 1);
      return;
    }
    bool more = traffic_record(t, buf, len, last_seq);
    mp_free(buf);
    if (!more)
      return;
  }
}

static inline void traffic_put_stop(mp_queue_t *q) {
  struct msg_head stop = {STOP_RUN, 0, 0, 0};
  assert_mp_ok(mp_queue_put(q, &stop, sizeof stop, MP_FOREVER));
}

/* Drains what is left with get_nowait (the test's own consumer). */
static inline void traffic_drain(struct traffic *t) {
  uint32_t last_seq[MAX_RUNS];
  memset(last_seq, 0xff, sizeof last_seq);
  void *buf;
  size_t len;
  while (mp_queue_get_nowait(t->q, &buf, &len) == 0) {
    traffic_record(t, buf, len, last_seq);
    mp_free(buf);
  }
}

/* Counts of the accounting: a message of run r is lost if it was fully put
 * (seq < done[r]) and never taken; one with seq == done[r] was being put
 * when its producer died and may or may not have made it. */
struct traffic_result {
  uint32_t lost, duplicated, phantom;
};

static inline struct traffic_result traffic_check(struct traffic *t,
                                                  uint32_t runs) {
  struct traffic_result res = {0, 0, 0};
  for (uint32_t r = 0; r < runs; r++) {
    uint32_t done = atomic_load(&t->done[r]);
    for (uint32_t s = 0; s < t->per_run; s++) {
      uint8_t n = atomic_load(&t->received[r][s]);
      if (n > 1)
        res.duplicated++;
      if (s < done && n == 0)
        res.lost++;
      if (s > done && n != 0)
        res.phantom++; /* never put, yet taken */
    }
  }
  return res;
}

#endif

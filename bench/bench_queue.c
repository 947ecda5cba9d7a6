/* Queue throughput and latency between two processes, against a raw
 * single-producer single-consumer ring in shared memory written here: the
 * fastest thing a C programmer would write by hand for one producer and one
 * consumer (cached indices, length-prefixed records, no locks, no malloc),
 * waiting as the queue waits (the same spin, then a futex sleep with a
 * waiter flag), so that the rows compare the queues and not two ways of
 * waiting.
 *
 * Rows:
 *   queue put+get 64 B (2 processes)    one producer process, one consumer
 *   queue put+get 1 MiB (2 processes)   same, 1 MiB messages
 *   queue round trip 64 B (2 queues)    ping-pong over a pair of queues
 * The mproc consumer uses mp_queue_get (a malloc'd buffer, freed), as
 * Python's get returns a new object; the raw ring copies into a buffer. The
 * ", get_into" rows show the same without malloc. */
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mproc.h>

#include "bench_common.h"

#define SMALL      64
#define LARGE      (1u << 20)
#define SMALL_N    400000
#define LARGE_N    1500
#define RTT_N      20000
#define REPS       5
#define SMALL_RING (64u << 10)
#define LARGE_RING (4u << 20)

/* ---- The raw ring ------------------------------------------------------- */

struct raw_side {
  _Alignas(64) _Atomic uint64_t index; /* head (consumer) or tail (producer) */
  _Atomic uint32_t sleeping;           /* this side sleeps on seq */
  _Atomic uint32_t seq;
  uint64_t cached; /* the other side's index, as last read (private) */
};

struct raw_ring {
  struct raw_side cons, prod;
  uint64_t cap;
  _Alignas(64) unsigned char data[];
};

#define WRAP UINT64_MAX

static void futex_wait_word(_Atomic uint32_t *w, uint32_t v) {
  syscall(SYS_futex, w, FUTEX_WAIT, v, NULL, NULL, 0);
}

static void futex_wake_word(_Atomic uint32_t *w) {
  syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* Waits until the other side's index leaves `stuck`: spins as the queue
 * does (8 bursts of 100 pauses with a yield between), then sleeps. */
static void raw_wait(struct raw_side *me, struct raw_side *other,
                     uint64_t stuck) {
  for (int burst = 0; burst < 8; burst++) {
    for (int i = 0; i < 100; i++) {
      if (atomic_load_explicit(&other->index, memory_order_acquire) != stuck)
        return;
      bench_cpu_relax();
    }
    sched_yield();
  }
  for (;;) {
    uint32_t seq = atomic_load(&me->seq);
    atomic_store(&me->sleeping, 1);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&other->index, memory_order_acquire) != stuck)
      break;
    futex_wait_word(&me->seq, seq);
  }
  atomic_store(&me->sleeping, 0);
}

static void raw_poke(struct raw_side *other) {
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(&other->sleeping, memory_order_relaxed)) {
    atomic_fetch_add(&other->seq, 1);
    futex_wake_word(&other->seq);
  }
}

static uint64_t rec_size(uint64_t len) {
  return 8 + ((len + 7) & ~(uint64_t)7);
}

static void raw_put(struct raw_ring *r, const void *buf, uint64_t len) {
  uint64_t need = rec_size(len);
  uint64_t tail = atomic_load_explicit(&r->prod.index, memory_order_relaxed);
  uint64_t off = tail % r->cap;
  uint64_t skip = off + need > r->cap ? r->cap - off : 0;
  while (tail + skip + need - r->prod.cached > r->cap) {
    uint64_t head = atomic_load_explicit(&r->cons.index, memory_order_acquire);
    if (head == r->prod.cached)
      raw_wait(&r->prod, &r->cons, head);
    r->prod.cached = atomic_load_explicit(&r->cons.index, memory_order_acquire);
  }
  if (skip) {
    memcpy(r->data + off, &(uint64_t){WRAP}, 8);
    off = 0;
  }
  memcpy(r->data + off, &len, 8);
  memcpy(r->data + off + 8, buf, len);
  atomic_store_explicit(&r->prod.index, tail + skip + need,
                        memory_order_release);
  raw_poke(&r->cons);
}

static uint64_t raw_get(struct raw_ring *r, void *buf) {
  uint64_t head = atomic_load_explicit(&r->cons.index, memory_order_relaxed);
  for (;;) {
    while (head == r->cons.cached) {
      uint64_t tail =
          atomic_load_explicit(&r->prod.index, memory_order_acquire);
      if (tail == r->cons.cached)
        raw_wait(&r->cons, &r->prod, tail);
      r->cons.cached =
          atomic_load_explicit(&r->prod.index, memory_order_acquire);
    }
    uint64_t off = head % r->cap, len;
    memcpy(&len, r->data + off, 8);
    if (len == WRAP) {
      head += r->cap - off;
      continue;
    }
    memcpy(buf, r->data + off + 8, len);
    atomic_store_explicit(&r->cons.index, head + rec_size(len),
                          memory_order_release);
    raw_poke(&r->prod);
    return len;
  }
}

static struct raw_ring *raw_new(uint64_t cap) {
  struct raw_ring *r = mmap(NULL, sizeof *r + cap, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (r == MAP_FAILED) {
    perror("mmap");
    exit(1);
  }
  r->cap = cap;
  return r;
}

static void raw_free(struct raw_ring *r) {
  munmap(r, sizeof *r + r->cap);
}

/* ---- Shared run state --------------------------------------------------- */

/* Each side of every measurement runs on a CPU of its own (the parent on
 * the first, the child on the second), for raw, mproc and Python alike:
 * otherwise the scheduler sometimes puts both on one CPU and a row measures
 * that instead. */
static void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu % CPU_SETSIZE, &set);
  sched_setaffinity(0, sizeof set, &set);
}

/* A go flag, so that process start-up is not timed. */
static _Atomic int *go;

static void wait_go(void) {
  while (!atomic_load(go))
    bench_cpu_relax();
}

/* ---- Throughput ---------------------------------------------------------- */

struct stream {
  mp_queue_t *q;
  struct raw_ring *raw;
  size_t size;
  int n;
  bool into; /* mproc consumer uses get_into */
};

static void mproc_producer(void *arg) {
  struct stream *s = arg;
  pin_to(1);
  char *buf = calloc(1, s->size);
  wait_go();
  for (int i = 0; i < s->n; i++)
    if (mp_queue_put(s->q, buf, s->size, MP_FOREVER) != 0)
      _exit(1);
  free(buf);
}

static double mproc_stream(void *arg, int n) {
  struct stream *s = arg;
  s->n = n;
  atomic_store(go, 0);
  mp_process_t *p = mp_process_new(mproc_producer, s, sizeof *s, NULL);
  if (!p || mp_process_start(p) != 0)
    exit(1);
  char *buf = malloc(s->size);
  uint64_t t0 = bench_now_ns();
  atomic_store(go, 1);
  for (int i = 0; i < n; i++) {
    size_t len;
    int rc;
    if (s->into) {
      rc = mp_queue_get_into(s->q, buf, s->size, &len, MP_FOREVER);
    } else {
      void *m;
      rc = mp_queue_get(s->q, &m, &len, MP_FOREVER);
      if (rc == 0)
        mp_free(m);
    }
    if (rc != 0 || len != s->size) {
      fprintf(stderr, "bench_queue: get: %s\n", mp_strerror(rc));
      exit(1);
    }
  }
  double ns = (double)(bench_now_ns() - t0) / n;
  mp_process_join(p, MP_FOREVER);
  mp_process_free(p);
  free(buf);
  return ns;
}

static double raw_stream(void *arg, int n) {
  struct stream *s = arg;
  atomic_store(go, 0);
  s->raw->prod.cached = s->raw->cons.cached = 0;
  atomic_store(&s->raw->prod.index, 0);
  atomic_store(&s->raw->cons.index, 0);
  char *buf = calloc(1, s->size);
  pid_t pid = fork();
  if (pid == 0) {
    pin_to(1);
    wait_go();
    for (int i = 0; i < n; i++)
      raw_put(s->raw, buf, s->size);
    _exit(0);
  }
  uint64_t t0 = bench_now_ns();
  atomic_store(go, 1);
  for (int i = 0; i < n; i++)
    if (raw_get(s->raw, buf) != s->size)
      exit(1);
  double ns = (double)(bench_now_ns() - t0) / n;
  waitpid(pid, NULL, 0);
  free(buf);
  return ns;
}

static void stream_rows(const char *op, size_t size, int n, uint64_t ring) {
  struct stream s = {.q = mp_queue_new(0), .raw = raw_new(ring), .size = size};
  double raw = bench_median(raw_stream, &s, n, REPS);
  char name[96];
  double mproc = bench_median(mproc_stream, &s, n, REPS);
  bench_row(op, mproc, raw, "raw SPSC shm ring");
  s.into = true;
  snprintf(name, sizeof name, "%s, get_into", op);
  bench_row(name, bench_median(mproc_stream, &s, n, REPS), raw,
            "raw SPSC shm ring");
  mp_queue_free(s.q);
  raw_free(s.raw);
}

/* ---- Round trip ---------------------------------------------------------- */

struct pingpong {
  mp_queue_t *there, *back;
  struct raw_ring *raw_there, *raw_back;
  int n;
};

static void mproc_echo(void *arg) {
  struct pingpong *pp = arg;
  pin_to(1);
  char buf[SMALL];
  size_t len;
  for (int i = 0; i < pp->n; i++) {
    if (mp_queue_get_into(pp->there, buf, sizeof buf, &len, MP_FOREVER) ||
        mp_queue_put(pp->back, buf, len, MP_FOREVER))
      _exit(1);
  }
}

static double mproc_rtt(void *arg, int n) {
  struct pingpong *pp = arg;
  pp->n = n;
  mp_process_t *p = mp_process_new(mproc_echo, pp, sizeof *pp, NULL);
  if (!p || mp_process_start(p) != 0)
    exit(1);
  char buf[SMALL] = {0};
  size_t len;
  uint64_t t0 = bench_now_ns();
  for (int i = 0; i < n; i++) {
    void *m;
    if (mp_queue_put(pp->there, buf, sizeof buf, MP_FOREVER) ||
        mp_queue_get(pp->back, &m, &len, MP_FOREVER))
      exit(1);
    mp_free(m);
  }
  double ns = (double)(bench_now_ns() - t0) / n;
  mp_process_join(p, MP_FOREVER);
  mp_process_free(p);
  return ns;
}

static double raw_rtt(void *arg, int n) {
  struct pingpong *pp = arg;
  struct raw_ring *rings[2] = {pp->raw_there, pp->raw_back};
  for (int i = 0; i < 2; i++) {
    rings[i]->prod.cached = rings[i]->cons.cached = 0;
    atomic_store(&rings[i]->prod.index, 0);
    atomic_store(&rings[i]->cons.index, 0);
  }
  char buf[SMALL] = {0};
  pid_t pid = fork();
  if (pid == 0) {
    pin_to(1);
    for (int i = 0; i < n; i++) {
      uint64_t len = raw_get(pp->raw_there, buf);
      raw_put(pp->raw_back, buf, len);
    }
    _exit(0);
  }
  uint64_t t0 = bench_now_ns();
  for (int i = 0; i < n; i++) {
    raw_put(pp->raw_there, buf, sizeof buf);
    raw_get(pp->raw_back, buf);
  }
  double ns = (double)(bench_now_ns() - t0) / n;
  waitpid(pid, NULL, 0);
  return ns;
}

static void rtt_row(void) {
  struct pingpong pp = {mp_queue_new(0), mp_queue_new(0), raw_new(SMALL_RING),
                        raw_new(SMALL_RING), 0};
  double raw = bench_median(raw_rtt, &pp, RTT_N, REPS);
  double mproc = bench_median(mproc_rtt, &pp, RTT_N, REPS);
  bench_row("queue round trip 64 B (2 queues)", mproc, raw,
            "raw SPSC shm ring pair");
  mp_queue_free(pp.there);
  mp_queue_free(pp.back);
  raw_free(pp.raw_there);
  raw_free(pp.raw_back);
}

int main(int argc, char **argv) {
  if (mp_main(argc, argv) != 0)
    return 1;
  go = mp_raw_alloc(sizeof *go);
  if (!go)
    return 1;
  pin_to(0);
  const char *only = argc > 1 ? argv[1] : NULL;
  if (!only || strcmp(only, "small") == 0)
    stream_rows("queue put+get 64 B (2 processes)", SMALL, SMALL_N, SMALL_RING);
  if (!only || strcmp(only, "large") == 0)
    stream_rows("queue put+get 1 MiB (2 processes)", LARGE, LARGE_N,
                LARGE_RING);
  if (!only || strcmp(only, "rtt") == 0)
    rtt_row();
  mp_raw_free((void *)go);
  return 0;
}

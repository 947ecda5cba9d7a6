/* The shared dict from two processes, against an unshared hash table behind
 * one lock in one process (written here: open addressing, malloc'ed
 * entries, a pthread mutex; what a C programmer writes for one process) and
 * against Python's Manager().dict() (bench_dict.py).
 *
 * Rows (16-byte keys, 64-byte values, KEYS keys set up before timing):
 *   dict get 16 B -> 64 B (2 processes)   each of two processes gets random
 *                                         keys; ns per get over both
 *   dict set 16 B -> 64 B (2 processes)   same, each sets random keys
 * The mproc get is mp_dict_get (a malloc'ed copy, freed), as Python's
 * returns a new object; the raw table copies out into a malloc'ed buffer
 * too, and its set allocates a new entry as the dict does. The raw table
 * runs both processes' operations in one process: what sharing costs.
 *
 * The same runs give a second pair of rows, "(CPU time)": the CPU time the
 * processes spent per operation (both processes' summed), which a loaded
 * machine changes little. Wall time needs two free cores for the two
 * processes against one for the raw table: on a shared machine the wall
 * rows say as much about the load as about the dict. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mproc.h>

#include "bench_common.h"

#define KEYS    10000
#define KEY_LEN 16
#define VAL_LEN 64
#define OPS     400000 /* per process */
#define REPS    5

static void make_key(unsigned i, unsigned char *key) {
  memset(key, 'k', KEY_LEN);
  memcpy(key, &i, sizeof i);
}

static unsigned next_random(unsigned *state) {
  *state = *state * 1103515245u + 12345u;
  return (*state >> 8) % KEYS;
}

/* ---- The raw table ------------------------------------------------------- */

struct raw_entry {
  size_t klen, vlen;
  unsigned char bytes[];
};

struct raw_table {
  pthread_mutex_t lock;
  size_t mask;
  struct raw_entry **slots;
};

static uint64_t raw_hash(const void *key, size_t len) {
  const unsigned char *p = key;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < len; i++)
    h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

static struct raw_entry **raw_find(struct raw_table *t, const void *key,
                                   size_t klen) {
  size_t i = raw_hash(key, klen) & t->mask;
  for (;; i = (i + 1) & t->mask) {
    struct raw_entry *e = t->slots[i];
    if (!e || (e->klen == klen && memcmp(e->bytes, key, klen) == 0))
      return &t->slots[i];
  }
}

static void raw_set(struct raw_table *t, const void *key, size_t klen,
                    const void *val, size_t vlen) {
  struct raw_entry *e = malloc(sizeof *e + klen + vlen);
  e->klen = klen;
  e->vlen = vlen;
  memcpy(e->bytes, key, klen);
  memcpy(e->bytes + klen, val, vlen);
  pthread_mutex_lock(&t->lock);
  struct raw_entry **slot = raw_find(t, key, klen), *old = *slot;
  *slot = e;
  pthread_mutex_unlock(&t->lock);
  free(old);
}

static int raw_get(struct raw_table *t, const void *key, size_t klen,
                   void **val, size_t *vlen) {
  pthread_mutex_lock(&t->lock);
  struct raw_entry *e = *raw_find(t, key, klen);
  if (e) {
    *val = malloc(e->vlen);
    memcpy(*val, e->bytes + e->klen, e->vlen);
    *vlen = e->vlen;
  }
  pthread_mutex_unlock(&t->lock);
  return e ? 0 : -1;
}

/* ---- Runs ---------------------------------------------------------------- */

static _Atomic int *go;
static _Atomic uint64_t *child_cpu_ns; /* the child's CPU time of a run */

/* The CPU time of each run of the last bench_pair, in ns per op. */
static double cpu_mine[REPS], cpu_base[REPS];
static int runs_mine, runs_base;

static uint64_t thread_cpu_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static double median_of(double *v, int n) {
  qsort(v, (size_t)n, sizeof v[0], bench_compare_double);
  return v[n / 2];
}

struct run {
  mp_dict_t *d;
  struct raw_table *raw;
  bool set;
  unsigned seed;
};

static void pin_to(int cpu) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu % CPU_SETSIZE, &s);
  sched_setaffinity(0, sizeof s, &s);
}

static void mproc_ops(struct run *r) {
  unsigned char key[KEY_LEN], val[VAL_LEN] = {1};
  unsigned state = r->seed;
  for (int i = 0; i < OPS; i++) {
    make_key(next_random(&state), key);
    int rc;
    if (r->set) {
      rc = mp_dict_set(r->d, key, KEY_LEN, val, VAL_LEN);
    } else {
      void *v;
      size_t len;
      rc = mp_dict_get(r->d, key, KEY_LEN, &v, &len);
      if (rc == 0)
        mp_free(v);
    }
    if (rc != 0) {
      fprintf(stderr, "bench_dict: %s\n", mp_strerror(rc));
      exit(1);
    }
  }
}

static void mproc_child(void *arg) {
  pin_to(1);
  while (!atomic_load(go))
    ;
  uint64_t cpu = thread_cpu_ns();
  mproc_ops(arg);
  atomic_store(child_cpu_ns, thread_cpu_ns() - cpu);
}

static double mproc_run(void *arg, int n) {
  (void)n;
  struct run r = *(struct run *)arg;
  atomic_store(go, 0);
  r.seed = 7;
  mp_process_t *p = mp_process_new(mproc_child, &r, sizeof r, NULL);
  if (!p || mp_process_start(p) != 0)
    exit(1);
  r.seed = 11;
  uint64_t t0 = bench_now_ns();
  atomic_store(go, 1);
  uint64_t cpu = thread_cpu_ns();
  mproc_ops(&r);
  cpu = thread_cpu_ns() - cpu;
  mp_process_join(p, MP_FOREVER);
  double ns = (double)(bench_now_ns() - t0) / (2.0 * OPS);
  mp_process_free(p);
  cpu_mine[runs_mine++ % REPS] =
      (double)(cpu + atomic_load(child_cpu_ns)) / (2.0 * OPS);
  return ns;
}

/* Both processes' operations, one after the other, in this process. */
static double raw_run(void *arg, int n) {
  (void)n;
  struct run *r = arg;
  unsigned char key[KEY_LEN], val[VAL_LEN] = {1};
  uint64_t t0 = bench_now_ns(), cpu = thread_cpu_ns();
  for (int side = 0; side < 2; side++) {
    unsigned state = side ? 11 : 7;
    for (int i = 0; i < OPS; i++) {
      make_key(next_random(&state), key);
      if (r->set) {
        raw_set(r->raw, key, KEY_LEN, val, VAL_LEN);
      } else {
        void *v;
        size_t len;
        if (raw_get(r->raw, key, KEY_LEN, &v, &len) != 0)
          exit(1);
        free(v);
      }
    }
  }
  cpu_base[runs_base++ % REPS] = (double)(thread_cpu_ns() - cpu) / (2.0 * OPS);
  return (double)(bench_now_ns() - t0) / (2.0 * OPS);
}

int main(int argc, char **argv) {
  if (mp_main(argc, argv) != 0)
    return 1;
  go = mp_raw_alloc(sizeof *go);
  child_cpu_ns = mp_raw_alloc(sizeof *child_cpu_ns);
  pin_to(0);
  struct raw_table raw = {PTHREAD_MUTEX_INITIALIZER, 32767, NULL};
  raw.slots = calloc(raw.mask + 1, sizeof *raw.slots);
  struct run r = {mp_dict_new(), &raw, false, 0};
  unsigned char key[KEY_LEN], val[VAL_LEN] = {1};
  for (unsigned i = 0; i < KEYS; i++) {
    make_key(i, key);
    raw_set(&raw, key, KEY_LEN, val, VAL_LEN);
    if (mp_dict_set(r.d, key, KEY_LEN, val, VAL_LEN) != 0)
      return 1;
  }
  const char *only = argc > 1 ? argv[1] : NULL;
  double cpu[2][2] = {{0}};
  for (int set = 0; set < 2; set++) {
    const char *op = set ? "dict set 16 B -> 64 B (2 processes)"
                         : "dict get 16 B -> 64 B (2 processes)";
    if (only && strcmp(only, set ? "set" : "get") != 0)
      continue;
    r.set = set;
    double mine, base;
    runs_mine = runs_base = 0;
    bench_pair(mproc_run, &r, raw_run, &r, 0, REPS, &mine, &base);
    bench_row(op, mine, base, "unshared table + 1 lock, 1 process");
    cpu[set][0] = median_of(cpu_mine, REPS);
    cpu[set][1] = median_of(cpu_base, REPS);
  }
  for (int set = 0; set < 2; set++)
    if (cpu[set][0] > 0)
      bench_row(set ? "dict set 16 B -> 64 B (2 processes, CPU time)"
                    : "dict get 16 B -> 64 B (2 processes, CPU time)",
                cpu[set][0], cpu[set][1], "the same, CPU time");
  mp_dict_free(r.d);
  for (size_t i = 0; i <= raw.mask; i++)
    free(raw.slots[i]);
  free(raw.slots);
  mp_raw_free((void *)go);
  mp_raw_free((void *)child_cpu_ns);
  return 0;
}

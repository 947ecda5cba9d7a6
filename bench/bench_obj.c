/* Values and pickle against CPython's own C pickle (bench_obj.py, the same
 * objects in the same run) and, for the large bytes, against a plain copy.
 *
 * Rows (Python's default protocol, 4, for both sides):
 *   obj dumps/loads dict 10k str->int   {"k0": 0, ..., "k9999": 9999}
 *   obj dumps/loads list 1M ints        list(range(1000000))
 *   obj dumps/loads bytes 100 MiB       bytes of 100 MiB
 * The loads rows load Python's own pickle of the object (with its memo and
 * frames), made by python3 when it is there, else mproc's. Every operation
 * includes freeing its result, as Python's does (the object or the bytes
 * die in the loop). The raw reference for the large bytes is malloc +
 * memcpy + free of the same size: the least any copy into new memory costs,
 * page faults included, as both dumps and loads make such a copy. */
#include <stdio.h>
#include <string.h>

#include <mproc.h>

#include "bench_common.h"

#define REPS    7
#define BIG_LEN ((size_t)100 << 20)

typedef struct job {
  mp_obj_t *obj; /* for dumps */
  void *pickle;  /* for loads */
  size_t len;
  void *src; /* for the raw copy */
} job_t;

static double time_dumps(void *arg, int iterations) {
  job_t *j = arg;
  uint64_t t0 = bench_now_ns();
  for (int i = 0; i < iterations; i++) {
    void *buf;
    size_t len;
    if (mp_obj_dumps(j->obj, 0, &buf, &len) != 0)
      abort();
    mp_free(buf);
  }
  return (double)(bench_now_ns() - t0) / iterations;
}

static double time_loads(void *arg, int iterations) {
  job_t *j = arg;
  uint64_t t0 = bench_now_ns();
  for (int i = 0; i < iterations; i++) {
    mp_obj_t *o;
    if (mp_obj_loads(j->pickle, j->len, &o) != 0)
      abort();
    mp_obj_free(o);
  }
  return (double)(bench_now_ns() - t0) / iterations;
}

static double time_copy(void *arg, int iterations) {
  job_t *j = arg;
  uint64_t t0 = bench_now_ns();
  for (int i = 0; i < iterations; i++) {
    void *dst = malloc(BIG_LEN);
    if (!dst)
      abort();
    memcpy(dst, j->src, BIG_LEN);
    __asm__ volatile("" : : "r"(dst) : "memory");
    free(dst);
  }
  return (double)(bench_now_ns() - t0) / iterations;
}

/* Python's pickle of the object that `expr` builds, or NULL. */
static void *python_pickle(const char *expr, size_t *len) {
  char cmd[512];
  snprintf(cmd, sizeof cmd,
           "python3 -c 'import pickle, sys; "
           "sys.stdout.buffer.write(pickle.dumps(%s))' 2>/dev/null",
           expr);
  FILE *f = popen(cmd, "r");
  if (!f)
    return NULL;
  size_t cap = 1 << 20, n = 0;
  unsigned char *buf = malloc(cap);
  size_t got;
  while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) {
      unsigned char *grown = realloc(buf, cap *= 2);
      if (!grown) {
        free(buf);
        buf = NULL;
      }
      buf = grown;
    }
  }
  if (pclose(f) != 0 || n == 0) {
    free(buf);
    return NULL;
  }
  *len = n;
  return buf;
}

static void rows(const char *name, mp_obj_t *obj, const char *py_expr,
                 int iterations, job_t *raw) {
  job_t j = {.obj = obj};
  j.pickle = python_pickle(py_expr, &j.len);
  if (!j.pickle && mp_obj_dumps(obj, 0, &j.pickle, &j.len) != 0)
    abort();
  char op[96];
  double mine, copy = 0;
  if (raw)
    bench_pair(time_dumps, &j, time_copy, raw, iterations, REPS, &mine, &copy);
  else
    mine = bench_median(time_dumps, &j, iterations, REPS);
  snprintf(op, sizeof op, "obj dumps %s", name);
  bench_row(op, mine, copy, raw ? "malloc+memcpy+free" : "-");
  if (raw)
    bench_pair(time_loads, &j, time_copy, raw, iterations, REPS, &mine, &copy);
  else
    mine = bench_median(time_loads, &j, iterations, REPS);
  snprintf(op, sizeof op, "obj loads %s", name);
  bench_row(op, mine, copy, raw ? "malloc+memcpy+free" : "-");
  free(j.pickle);
}

int main(int argc, char **argv) {
  if (mp_main(argc, argv) != 0)
    return 1;
  mp_obj_t *dict = mp_obj_dict();
  for (int i = 0; i < 10000; i++) {
    char key[16];
    int n = snprintf(key, sizeof key, "k%d", i);
    mp_obj_dict_set(dict, mp_obj_str(key, (size_t)n), mp_obj_int(i));
  }
  rows("dict 10k str->int", dict, "{\"k%d\" % i: i for i in range(10000)}", 50,
       NULL);
  mp_obj_free(dict);

  mp_obj_t *list = mp_obj_list();
  for (int i = 0; i < 1000000; i++)
    mp_obj_append(list, mp_obj_int(i));
  rows("list 1M ints", list, "list(range(1000000))", 3, NULL);
  mp_obj_free(list);

  void *src = malloc(BIG_LEN);
  memset(src, 1, BIG_LEN);
  mp_obj_t *bytes = mp_obj_bytes(src, BIG_LEN);
  job_t raw = {.src = src};
  rows("bytes 100 MiB", bytes, "bytes([1]) * (100 << 20)", 1, &raw);
  mp_obj_free(bytes);
  free(src);
  return 0;
}

/* imap over a producer (mp_pool_imap_stream): memory stays flat however
 * long the input is. The task hashes a block of 64 KiB (FNV-1a); the
 * producer makes each block when the pool asks for it.
 *
 * Row (ns per block): the stream, against mp_pool_imap over the same
 * blocks laid out in one array first (the form that needed the whole input
 * in memory). The resident memory of this process and of the workers goes
 * to stderr after 10% and after 100% of the input: flat means equal.
 * Default input: 2,048 blocks (128 MiB); `--full` hashes 10 GiB (163,840
 * blocks, the array form is then skipped: it would need 10 GiB).
 * Optional argument: the start method of the pool (default: fork). */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <mproc.h>

#include "bench_common.h"

#define BLOCK   65536u
#define WORKERS 2
#define SMALL_N 2048u
#define FULL_N  163840u /* 10 GiB */

static int hash_block(const void *in, void *out) {
  const unsigned char *p = in;
  uint64_t h = 1469598103934665603u;
  for (size_t i = 0; i < BLOCK; i++)
    h = (h ^ p[i]) * 1099511628211u;
  memcpy(out, &h, sizeof h);
  return 0;
}

static void fill_block(uint64_t index, void *block) {
  uint64_t *w = block;
  for (size_t i = 0; i < BLOCK / sizeof *w; i++)
    w[i] = index * 0x9e3779b97f4a7c15u + i;
}

typedef struct input {
  uint64_t next, n;
} input_t;

static int produce(void *arg, void *item) {
  input_t *in = arg;
  if (in->next == in->n)
    return 0;
  fill_block(in->next++, item);
  return 1;
}

/* VmRSS of a process, in MiB (0 if it cannot be read). */
static double rss_mib(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  double kib = 0;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %lf", &kib) == 1)
      break;
  if (f)
    fclose(f);
  return kib / 1024;
}

static double workers_rss_mib(mp_pool_t *pool) {
  pid_t pids[WORKERS];
  size_t n = mp_pool_workers(pool, pids, WORKERS);
  double sum = 0;
  for (size_t i = 0; i < n && i < WORKERS; i++)
    sum += rss_mib(pids[i]);
  return sum;
}

static uint64_t checksum;

/* The stream over n blocks; ns per block. Reports RSS when asked. */
static double run_stream(mp_pool_t *pool, uint64_t n, bool report) {
  input_t in = {.n = n};
  uint64_t start = bench_now_ns();
  mp_stream_t *s = mp_pool_imap_stream(pool, hash_block, BLOCK,
                                       sizeof(uint64_t), produce, &in, NULL);
  if (!s) {
    fprintf(stderr, "bench_stream: %s\n", mp_strerror(-errno));
    exit(1);
  }
  uint64_t h, done = 0;
  while (mp_stream_next(s, MP_FOREVER, &h, NULL) == 1) {
    checksum += h;
    if (report && ++done == n / 10)
      fprintf(stderr,
              "bench_stream: after 10%% (%.0f MiB hashed): RSS %.1f MiB, "
              "workers %.1f MiB\n",
              (double)done * BLOCK / (1 << 20), rss_mib(getpid()),
              workers_rss_mib(pool));
  }
  if (report)
    fprintf(stderr,
            "bench_stream: after 100%% (%.0f MiB hashed): RSS %.1f MiB, "
            "workers %.1f MiB\n",
            (double)n * BLOCK / (1 << 20), rss_mib(getpid()),
            workers_rss_mib(pool));
  mp_stream_free(s);
  return (double)(bench_now_ns() - start) / (double)n;
}

/* The same blocks in one array first, then mp_pool_imap; ns per block. */
static double run_array(mp_pool_t *pool, uint64_t n) {
  uint64_t start = bench_now_ns();
  char *all = mp_raw_alloc(n * BLOCK);
  if (!all)
    return 0;
  for (uint64_t i = 0; i < n; i++)
    fill_block(i, all + i * BLOCK);
  mp_iter_t *it =
      mp_pool_imap(pool, hash_block, all, BLOCK, sizeof(uint64_t), n, 1);
  uint64_t h;
  while (it && mp_iter_next(it, MP_FOREVER, &h, NULL) == 1)
    checksum += h;
  double rss = rss_mib(getpid());
  mp_iter_free(it);
  mp_raw_free(all);
  double ns = (double)(bench_now_ns() - start) / (double)n;
  fprintf(stderr,
          "bench_stream: imap over the array: RSS at its end %.1f MiB\n", rss);
  return ns;
}

int main(int argc, char **argv) {
  if (mp_main(argc, argv) != 0)
    return 1;
  const char *method = "fork";
  bool full = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--full") == 0)
      full = true;
    else
      method = argv[i];
  }
  mp_pool_opts_t opts = {.processes = WORKERS, .ctx = mp_get_context(method)};
  mp_pool_t *pool = opts.ctx ? mp_pool_new(&opts) : NULL;
  if (!pool) {
    fprintf(stderr, "bench_stream: no pool (%s)\n", method);
    return 1;
  }
  uint64_t n = full ? FULL_N : SMALL_N;
  run_stream(pool, n / 8, false); /* warm up */
  double mine = run_stream(pool, n, true);
  double ref = full ? 0 : run_array(pool, n);
  bench_row(full ? "pool imap over a producer, 10 GiB of 64 KiB blocks"
                 : "pool imap over a producer, 128 MiB of 64 KiB blocks",
            mine, ref, "imap over the whole input in one array");
  mp_pool_free(pool);
  fprintf(stderr, "bench_stream: checksum %llx\n",
          (unsigned long long)checksum);
  return 0;
}

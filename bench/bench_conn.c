/* Connections against raw system calls: one process sends messages, the
 * other receives them (a duplex mp_pipe against a raw socketpair with
 * write+read of the same sizes), and a 64-byte round trip.
 *
 * Each line: row <op> <mproc ns/op> <raw ns/op> <raw label>; each figure
 * is the median of REPS runs. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mproc.h"

#define REPS 5

typedef struct bench_arg {
  mp_conn_t *conn; /* mproc: the child's end */
  int fd;          /* raw: the child's end */
  size_t size;
  size_t count;
  bool round_trip; /* answer every message instead of streaming */
} bench_arg_t;

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void die(const char *what, int rc) {
  fprintf(stderr, "bench_conn: %s: %s\n", what, mp_strerror(rc));
  exit(1);
}

static void raw_write_all(int fd, const void *buf, size_t n) {
  for (size_t at = 0; at < n;) {
    ssize_t w = write(fd, (const char *)buf + at, n - at);
    if (w <= 0)
      die("write", -errno);
    at += (size_t)w;
  }
}

static void raw_read_all(int fd, void *buf, size_t n) {
  for (size_t at = 0; at < n;) {
    ssize_t r = read(fd, (char *)buf + at, n - at);
    if (r <= 0)
      die("read", r == 0 ? MP_ECLOSED : -errno);
    at += (size_t)r;
  }
}

/* ---- the child: waits for "go", then sends (or answers) count messages */

static void mproc_child(void *p) {
  bench_arg_t *a = p;
  char *msg = calloc(1, a->size);
  void *in;
  size_t len;
  if (mp_conn_recv_bytes(a->conn, &in, &len) != 0)
    exit(2);
  mp_free(in);
  for (size_t i = 0; i < a->count; i++) {
    if (a->round_trip) {
      if (mp_conn_recv_bytes(a->conn, &in, &len) != 0)
        exit(3);
      mp_free(in);
    }
    if (mp_conn_send_bytes(a->conn, msg, a->size) != 0)
      exit(4);
  }
  free(msg);
}

static void raw_child(void *p) {
  bench_arg_t *a = p;
  char *msg = calloc(1, a->size);
  char go;
  raw_read_all(a->fd, &go, 1);
  for (size_t i = 0; i < a->count; i++) {
    if (a->round_trip)
      raw_read_all(a->fd, msg, a->size);
    raw_write_all(a->fd, msg, a->size);
  }
  free(msg);
}

/* ---- the parent: times count messages ---------------------------------- */

static double run_mproc(size_t size, size_t count, bool round_trip) {
  mp_conn_t *a, *b;
  int rc = mp_pipe(&a, &b, true);
  if (rc)
    die("mp_pipe", rc);
  bench_arg_t arg = {
      .conn = b, .size = size, .count = count, .round_trip = round_trip};
  mp_process_t *p = mp_process_new(mproc_child, &arg, sizeof arg, NULL);
  if (!p || (rc = mp_process_start(p)))
    die("start", p ? rc : -errno);
  char *msg = calloc(1, size);
  void *in;
  size_t len;
  uint64_t t0 = now_ns();
  mp_conn_send_bytes(a, "g", 1);
  for (size_t i = 0; i < count; i++) {
    if (round_trip)
      mp_conn_send_bytes(a, msg, size);
    if ((rc = mp_conn_recv_bytes(a, &in, &len)) != 0)
      die("recv", rc);
    mp_free(in);
  }
  uint64_t t1 = now_ns();
  mp_process_join(p, MP_FOREVER);
  mp_process_free(p);
  mp_conn_free(a);
  mp_conn_free(b);
  free(msg);
  return (double)(t1 - t0) / (double)count;
}

static double run_raw(size_t size, size_t count, bool round_trip) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
    die("socketpair", -errno);
  bench_arg_t arg = {
      .fd = fds[1], .size = size, .count = count, .round_trip = round_trip};
  mp_process_t *p = mp_process_new(raw_child, &arg, sizeof arg, NULL);
  int rc;
  if (!p || (rc = mp_process_start(p)))
    die("start", p ? rc : -errno);
  char *msg = calloc(1, size);
  uint64_t t0 = now_ns();
  raw_write_all(fds[0], "g", 1);
  for (size_t i = 0; i < count; i++) {
    if (round_trip)
      raw_write_all(fds[0], msg, size);
    raw_read_all(fds[0], msg, size);
  }
  uint64_t t1 = now_ns();
  mp_process_join(p, MP_FOREVER);
  mp_process_free(p);
  close(fds[0]);
  close(fds[1]);
  free(msg);
  return (double)(t1 - t0) / (double)count;
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

static double median(double (*run)(size_t, size_t, bool), size_t size,
                     size_t count, bool round_trip) {
  double v[REPS];
  for (int i = 0; i < REPS; i++)
    v[i] = run(size, count, round_trip);
  qsort(v, REPS, sizeof v[0], cmp_double);
  return v[REPS / 2];
}

static void row(const char *op, size_t size, size_t count, bool round_trip) {
  double mine = median(run_mproc, size, count, round_trip);
  double raw = median(run_raw, size, count, round_trip);
  printf("row\t%s\t%.0f\t%.0f\t%s\n", op, mine, raw,
         round_trip ? "socketpair write+read, both ways"
                    : "socketpair write+read");
  fflush(stdout);
}

int main(int argc, char **argv) {
  int rc = mp_main(argc, argv);
  if (rc)
    die("mp_main", rc);
  row("pipe_64B", 64, 200000, false);
  row("pipe_1MiB", 1u << 20, 400, false);
  row("pipe_roundtrip_64B", 64, 20000, true);
  return 0;
}

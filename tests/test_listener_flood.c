/* A listener that a flood cannot stall: 1,000 silent peers, trickling and
 * garbage peers connected, and a good client is still served at once
 * (the time is printed; the test asserts only a bound that tells "served"
 * from "stalled"). The pending handshakes are bounded, and no fd is kept
 * after the peers are gone. */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "support.h"

#define KEY         "flood key"
#define SILENT      1000
#define TRICKLING   50
#define GARBAGE     50
#define PEERS       (SILENT + TRICKLING + GARBAGE)
#define MAX_PENDING 64
#define NOT_STALLED                                                            \
  10.0 /* seconds: minutes before, about a millisecond now                     \
        */

static int count_fds(void) {
  int n = 0;
  DIR *dir = opendir("/proc/self/fd");
  if (!dir)
    return -1;
  for (struct dirent *e; (e = readdir(dir));)
    n += e->d_name[0] != '.';
  closedir(dir);
  return n - 1; /* the directory's own */
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

struct server {
  mp_listener_t *l;
  _Atomic bool stop;
  _Atomic int served, dropped;
};

/* The server: accepts and echoes one message per good client. */
static void *serve(void *arg) {
  struct server *s = arg;
  while (!atomic_load(&s->stop)) {
    mp_conn_t *c;
    int rc = mp_listener_accept(s->l, 0.1, &c);
    if (rc == MP_EAUTH)
      atomic_fetch_add(&s->dropped, 1);
    if (rc != 0)
      continue;
    void *buf;
    size_t len;
    if (mp_conn_recv_bytes(c, &buf, &len) == 0) {
      mp_conn_send_bytes(c, buf, len);
      mp_free(buf);
    }
    mp_conn_free(c);
    atomic_fetch_add(&s->served, 1);
  }
  return NULL;
}

/* A raw peer, connecting (without waiting for it). */
static int connect_peer(const struct sockaddr_in *sa) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return -1;
  if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) < 0 &&
      errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  return fd;
}

static void talk_peers(const int *fds, size_t from, size_t to,
                       const char *bytes, size_t len) {
  for (size_t i = from; i < to; i++)
    if (fds[i] >= 0)
      (void)!send(fds[i], bytes, len, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void raise_fd_limit(void) {
  struct rlimit r;
  assert_int_equal(0, getrlimit(RLIMIT_NOFILE, &r));
  rlim_t want = PEERS + MAX_PENDING + 256;
  if (r.rlim_cur < want) {
    if (r.rlim_max < want)
      skip(); /* the system forbids it: nothing to measure */
    r.rlim_cur = want;
    assert_int_equal(0, setrlimit(RLIMIT_NOFILE, &r));
  }
}

static void test_flood_does_not_stall_a_good_client(void **state) {
  (void)state;
  raise_fd_limit();
  int base = count_fds();
  mp_listener_opts_t opts = {.max_pending = MAX_PENDING, .backlog = 2 * PEERS};
  struct server s = {.l = mp_listener_new_with_opts("tcp:127.0.0.1:0", KEY,
                                                    strlen(KEY), &opts)};
  assert_non_null(s.l);
  const char *address = mp_listener_address(s.l);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  sa.sin_port = htons((uint16_t)atoi(strrchr(address, ':') + 1));
  pthread_t t;
  assert_int_equal(0, pthread_create(&t, NULL, serve, &s));

  static int fds[PEERS];
  for (size_t i = 0; i < PEERS; i++)
    fds[i] = connect_peer(&sa);
  /* Trickling: half a header; garbage: not the framing at all. */
  talk_peers(fds, SILENT, SILENT + TRICKLING, "\0\0", 2);
  talk_peers(fds, SILENT + TRICKLING, PEERS, "GET / HTTP/1.0\r\n\r\n", 18);

  double start = now();
  mp_conn_t *c;
  mp_client_opts_t copts = {.timeout = 60};
  int rc = mp_client_with_opts(address, KEY, strlen(KEY), &copts, &c);
  void *buf = NULL;
  size_t len = 0;
  if (rc == 0 && (rc = mp_conn_send_bytes(c, "ping", 4)) == 0)
    rc = mp_conn_recv_bytes(c, &buf, &len);
  double took = now() - start;
  printf("good client served in %.3f s with %d silent, %d trickling and %d "
         "garbage peers connected (at most %d handshakes pending)\n",
         took, SILENT, TRICKLING, GARBAGE, MAX_PENDING);
  if (rc == 0)
    mp_conn_free(c);

  /* While they are all connected, the listener holds at most MAX_PENDING
   * of them (ours: the peers' PEERS fds, the client's, the listener's). */
  int held = count_fds() - base - PEERS;
  printf("fds held by the listener during the flood: %d\n", held);

  for (size_t i = 0; i < PEERS; i++)
    if (fds[i] >= 0)
      close(fds[i]);
  atomic_store(&s.stop, true);
  pthread_join(t, NULL);

  /* The peers are gone: their handshakes end at the next accepts, and
   * every fd with them. */
  for (int i = 0; i < 10 * MAX_PENDING; i++)
    if (mp_listener_accept(s.l, 0.2, &c) == MP_ETIMEDOUT)
      break;
  int left = count_fds() - base;
  mp_listener_free(s.l);

  assert_mp_ok(rc);
  assert_int_equal(4, len);
  assert_memory_equal("ping", buf, 4);
  mp_free(buf);
  assert_true(took < NOT_STALLED);
  assert_true(held <= MAX_PENDING + 4);
  assert_int_equal(1, left); /* the listening socket */
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_flood_does_not_stall_a_good_client),
  };
  return MPT_RUN(argc, argv, tests);
}

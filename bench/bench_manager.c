/* A manager's objects through proxies over tcp:127.0.0.1, against a raw
 * TCP round trip of the same size (written here: a blocking echo over a
 * loopback socket, one write and one read per side; every proxy call is at
 * least that) and against Python's BaseManager remote manager
 * (bench_manager.py).
 *
 * Rows:
 *   remote queue put+get 64 B (tcp)       put then get of one message
 *   remote dict get 16 B -> 64 B (tcp)    one get of a 64-byte value
 *   raw TCP round trip 64 B, both ends busy-polling: the floor of any
 *   remote call on this machine (no end waits for a wake-up) */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mproc.h>

#include "bench_common.h"

#define KEY  "bench key"
#define MSG  64
#define N    20000
#define REPS 5

/* ---- raw TCP echo ----------------------------------------------------------
 */

/* spin: reads that never sleep (MSG_DONTWAIT in a loop), so that neither
 * end waits for a wake-up: the floor of a round trip on this machine. */
static int full_io(int fd, void *buf, size_t len, bool writing, bool spin) {
  for (size_t done = 0; done < len;) {
    ssize_t n = writing ? write(fd, (char *)buf + done, len - done)
                        : recv(fd, (char *)buf + done, len - done,
                               spin ? MSG_DONTWAIT : 0);
    if (n < 0 && spin && !writing && errno == EAGAIN)
      continue;
    if (n <= 0)
      return -1;
    done += (size_t)n;
  }
  return 0;
}

struct raw {
  int fd;
  pid_t echo;
  bool spin;
};

static struct raw raw_start(bool spin) {
  int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof a;
  bind(l, (struct sockaddr *)&a, sizeof a);
  listen(l, 1);
  getsockname(l, (struct sockaddr *)&a, &alen);
  pid_t pid = fork();
  if (pid == 0) {
    int c = accept(l, NULL, NULL);
    char buf[MSG];
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    while (full_io(c, buf, MSG, false, spin) == 0 &&
           full_io(c, buf, MSG, true, spin) == 0)
      ;
    _exit(0);
  }
  close(l);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
    exit(1);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return (struct raw){fd, pid, spin};
}

static double raw_rtt(void *arg, int n) {
  struct raw *r = arg;
  char buf[MSG] = {0};
  uint64_t t0 = bench_now_ns();
  for (int i = 0; i < n; i++)
    if (full_io(r->fd, buf, MSG, true, r->spin) < 0 ||
        full_io(r->fd, buf, MSG, false, r->spin) < 0)
      exit(1);
  return (double)(bench_now_ns() - t0) / n;
}

/* ---- proxies ----------------------------------------------------------------
 */

struct proxies {
  mp_queue_t *q;
  mp_dict_t *d;
};

static double queue_put_get(void *arg, int n) {
  struct proxies *p = arg;
  char msg[MSG] = {0}, buf[MSG];
  size_t len;
  uint64_t t0 = bench_now_ns();
  for (int i = 0; i < n; i++)
    if (mp_queue_put(p->q, msg, MSG, MP_FOREVER) != 0 ||
        mp_queue_get_into(p->q, buf, sizeof buf, &len, MP_FOREVER) != 0)
      exit(1);
  return (double)(bench_now_ns() - t0) / n;
}

static double dict_get(void *arg, int n) {
  struct proxies *p = arg;
  unsigned char key[16] = "0123456789abcdef";
  uint64_t t0 = bench_now_ns();
  for (int i = 0; i < n; i++) {
    void *v;
    size_t len;
    if (mp_dict_get(p->d, key, sizeof key, &v, &len) != 0)
      exit(1);
    mp_free(v);
  }
  return (double)(bench_now_ns() - t0) / n;
}

int main(int argc, char **argv) {
  if (mp_main(argc, argv) != 0)
    return 1;
  mp_manager_t *m = mp_manager_new("tcp:127.0.0.1:0", KEY, strlen(KEY));
  mp_manager_t *c =
      m ? mp_manager_connect(mp_manager_address(m), KEY, strlen(KEY)) : NULL;
  if (!c)
    return 1;
  struct proxies p = {mp_manager_queue(c, "q", 0), mp_manager_dict(c, "d")};
  unsigned char val[MSG] = {1};
  if (mp_dict_set(p.d, "0123456789abcdef", 16, val, sizeof val) != 0)
    return 1;
  struct raw r = raw_start(false);
  const char *only = argc > 1 ? argv[1] : NULL;
  double mine, base;
  if (!only || strcmp(only, "queue") == 0) {
    bench_pair(queue_put_get, &p, raw_rtt, &r, N, REPS, &mine, &base);
    /* Two round trips per put+get. */
    bench_row("remote queue put+get 64 B (tcp)", mine, 2 * base,
              "2 raw TCP round trips of 64 B");
  }
  if (!only || strcmp(only, "dict") == 0) {
    bench_pair(dict_get, &p, raw_rtt, &r, N, REPS, &mine, &base);
    bench_row("remote dict get 16 B -> 64 B (tcp)", mine, base,
              "raw TCP round trip of 64 B");
  }
  if (!only || strcmp(only, "floor") == 0) {
    /* What no remote call can beat here: the round trip with both ends
     * busy-polling (two CPUs spinning, which a server should not do). */
    struct raw spin = raw_start(true);
    bench_pair(raw_rtt, &spin, raw_rtt, &r, N, REPS, &mine, &base);
    bench_row("raw TCP round trip 64 B, both ends busy-polling", mine, base,
              "raw TCP round trip of 64 B");
    close(spin.fd);
    waitpid(spin.echo, NULL, 0);
  }
  close(r.fd);
  waitpid(r.echo, NULL, 0);
  mp_queue_free(p.q);
  mp_dict_free(p.d);
  mp_manager_free(c);
  mp_manager_free(m);
  return 0;
}

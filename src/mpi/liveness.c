/* Liveness beside MPI. Debian's Open MPI 4.1 and MPICH 4.0 say nothing
 * when a peer dies, so each rank keeps a TCP connection to the root
 * (mproc's listener, authenticated with a key the root sends over MPI) and
 * both ends send a heartbeat every quarter of the timeout. A connection
 * that ends (the peer's kernel closes it when the process dies: noticed at
 * once) or stays silent for the timeout (a host or link gone) means the
 * peer is lost. */
#include <ifaddrs.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "mpi/mpi_internal.h"

#define KEY_LEN    32
#define ADDRS_MAX  1024
#define BEAT       "h"
#define MIN_PERIOD 10000000LL /* 10 ms */

struct mp__liveness {
  int rank, size;
  int64_t timeout_ns, period_ns;
  mp_listener_t *listener; /* root */
  mp_conn_t **conns;       /* root: one per rank; others: [0], the root */
  int64_t *last_seen;      /* per rank (others: [0]) */
  bool *lost;
  int64_t next_beat;
  pthread_t thread;          /* others: the watch */
  pthread_mutex_t send_lock; /* others: the watch's heartbeats, the pokes */
  int stop_fd;
  int wake_fd; /* others: readable when the root sent something */
  bool watching;
};

/* What the root tells every rank over MPI. */
typedef struct announce {
  int32_t ok;
  uint8_t key[KEY_LEN];
  char host[MPI_MAX_PROCESSOR_NAME];
  char addrs[ADDRS_MAX]; /* "tcp:A:P tcp:B:P ...", other hosts' first */
} announce_t;

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void append_addr(char *list, const char *ip, const char *port) {
  size_t at = strlen(list);
  snprintf(list + at, ADDRS_MAX - at, "%stcp:%s:%s", at ? " " : "", ip, port);
}

/* The root's addresses for the others: MPROC_MPI_ADDRESS if set, else its
 * IPv4 interfaces, loopback last (only ranks on the same host use it). */
static void root_addresses(const char *port, char *list) {
  list[0] = '\0';
  const char *forced = getenv("MPROC_MPI_ADDRESS");
  if (forced && *forced) {
    append_addr(list, forced, port);
    return;
  }
  struct ifaddrs *ifs = NULL;
  if (getifaddrs(&ifs) == 0) {
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
      if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET)
        continue;
      char ip[INET_ADDRSTRLEN];
      const struct sockaddr_in *sin = (const void *)i->ifa_addr;
      if (ntohl(sin->sin_addr.s_addr) >> 24 == 127)
        continue;
      inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
      append_addr(list, ip, port);
    }
    freeifaddrs(ifs);
  }
  append_addr(list, "127.0.0.1", port);
}

static int root_listen(mp__liveness_t *l, announce_t *a) {
  if (getrandom(a->key, KEY_LEN, 0) != KEY_LEN)
    return -errno;
  l->listener = mp_listener_new("tcp:0.0.0.0:0", a->key, KEY_LEN);
  if (!l->listener)
    return -errno;
  const char *bound = mp_listener_address(l->listener);
  const char *port = strrchr(bound, ':');
  root_addresses(port ? port + 1 : "0", a->addrs);
  int len = 0;
  MPI_Get_processor_name(a->host, &len);
  return 0;
}

/* Accepts the other ranks; each says its rank first. */
static int root_accept(mp__liveness_t *l) {
  int64_t deadline = now_ns() + 30 * 1000000000LL;
  for (int got = 1; got < l->size;) {
    double left = (double)(deadline - now_ns()) / 1e9;
    if (left <= 0)
      return MP_ETIMEDOUT;
    mp_conn_t *c = NULL;
    int rc = mp_listener_accept(l->listener, left, &c);
    if (rc == MP_EAUTH)
      continue; /* a stranger: not one of ours */
    if (rc < 0)
      return rc;
    int32_t rank = -1;
    size_t len = 0;
    if (mp_conn_poll(c, 5.0) != 1 ||
        mp_conn_recv_bytes_into(c, &rank, sizeof rank, &len) < 0 ||
        len != sizeof rank || rank <= 0 || rank >= l->size || l->conns[rank]) {
      mp_conn_free(c);
      continue;
    }
    l->conns[rank] = c;
    got++;
  }
  /* Every rank is in: nobody else may connect. */
  mp_listener_free(l->listener);
  l->listener = NULL;
  return 0;
}

/* Tries the root's addresses in order: loopback first on the root's host,
 * never elsewhere (it would be this host's). */
static int rank_connect(mp__liveness_t *l, const announce_t *a) {
  char host[MPI_MAX_PROCESSOR_NAME] = "";
  int len = 0;
  MPI_Get_processor_name(host, &len);
  bool same_host = strcmp(host, a->host) == 0;
  char list[ADDRS_MAX];
  snprintf(list, sizeof list, "%s", a->addrs);
  mp_client_opts_t opts = {.timeout = 5.0};
  int rc = -EHOSTUNREACH;
  for (int pass = 0; pass < 2 && !l->conns[0]; pass++) {
    char *save = NULL, copy[ADDRS_MAX];
    snprintf(copy, sizeof copy, "%s", list);
    for (char *addr = strtok_r(copy, " ", &save); addr && !l->conns[0];
         addr = strtok_r(NULL, " ", &save)) {
      bool loopback = strncmp(addr, "tcp:127.", 8) == 0;
      if (loopback != (pass == 0 && same_host))
        continue;
      rc = mp_client_with_opts(addr, a->key, KEY_LEN, &opts, &l->conns[0]);
    }
  }
  if (!l->conns[0])
    return rc;
  int32_t rank = l->rank;
  return mp_conn_send_bytes(l->conns[0], &rank, sizeof rank);
}

int mp__liveness_new(double timeout, mp__liveness_t **out) {
  mp__liveness_t *l = calloc(1, sizeof *l);
  announce_t *a = calloc(1, sizeof *a);
  int rc = l && a ? 0 : -ENOMEM;
  if (l) {
    l->rank = mp__mpi.rank;
    l->size = mp__mpi.size;
    l->stop_fd = l->wake_fd = -1;
    pthread_mutex_init(&l->send_lock, NULL);
    l->timeout_ns = (int64_t)(timeout * 1e9);
    l->period_ns =
        l->timeout_ns / 4 > MIN_PERIOD ? l->timeout_ns / 4 : MIN_PERIOD;
    l->conns = calloc((size_t)l->size, sizeof *l->conns);
    l->last_seen = calloc((size_t)l->size, sizeof *l->last_seen);
    l->lost = calloc((size_t)l->size, sizeof *l->lost);
    if (!l->conns || !l->last_seen || !l->lost)
      rc = -ENOMEM;
  }
  /* Every rank takes part in each collective step whatever its own state,
   * and the last step makes one outcome of all. */
  if (mp__mpi.rank == 0) {
    if (rc == 0)
      rc = root_listen(l, a);
    a->ok = rc == 0;
  }
  if (a)
    MPI_Bcast(a, sizeof *a, MPI_BYTE, 0, mp__mpi.comm);
  else
    MPI_Bcast(&(announce_t){0}, sizeof(announce_t), MPI_BYTE, 0, mp__mpi.comm);
  if (rc == 0 && !a->ok)
    rc = -ECONNREFUSED;
  if (rc == 0)
    rc = mp__mpi.rank == 0 ? root_accept(l) : rank_connect(l, a);
  int ok = rc == 0, all = 0;
  MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, mp__mpi.comm);
  free(a);
  if (!all) {
    mp__liveness_free(l);
    return rc < 0 ? rc : -ECONNREFUSED;
  }
  int64_t now = now_ns();
  for (int r = 0; r < l->size; r++)
    l->last_seen[r] = now;
  l->next_beat = now;
  *out = l;
  return 0;
}

/* ---- The root's side ------------------------------------------------------
 */

void mp__liveness_fds(mp__liveness_t *l, int *fds) {
  for (int r = 0; r < l->size; r++)
    fds[r] = r > 0 && l->conns[r] ? mp_conn_fileno(l->conns[r]) : -1;
}

static void mark_lost(mp__liveness_t *l, int r) {
  mp_conn_free(l->conns[r]);
  l->conns[r] = NULL;
  l->lost[r] = true;
}

/* Reads what a rank sent; false when its connection ended. */
static bool drain(mp_conn_t *c) {
  char buf[16];
  size_t len;
  while (mp_conn_poll(c, 0) == 1)
    if (mp_conn_recv_bytes_into(c, buf, sizeof buf, &len) < 0)
      return false;
  return true;
}

int mp__liveness_check(mp__liveness_t *l, const bool *readable) {
  int64_t now = now_ns();
  bool beat = now >= l->next_beat;
  if (beat)
    l->next_beat = now + l->period_ns;
  for (int r = 1; r < l->size; r++) {
    if (!l->conns[r])
      continue;
    if (readable[r]) {
      if (!drain(l->conns[r])) {
        mark_lost(l, r);
        return r;
      }
      l->last_seen[r] = now;
    }
    if (now - l->last_seen[r] > l->timeout_ns ||
        (beat && mp_conn_send_bytes(l->conns[r], BEAT, 1) < 0)) {
      mark_lost(l, r);
      return r;
    }
  }
  return -1;
}

void mp__liveness_poke_rank(mp__liveness_t *l, int rank) {
  /* A failure here is mp__liveness_check's to find. */
  if (l->conns[rank])
    mp_conn_send_bytes(l->conns[rank], BEAT, 1);
}

bool mp__liveness_lost(const mp__liveness_t *l, int rank) {
  return l->lost[rank];
}

int64_t mp__liveness_period_ns(const mp__liveness_t *l) {
  return l->period_ns;
}

/* ---- The other ranks' watch ---------------------------------------------- */

static _Noreturn void root_lost(const mp__liveness_t *l, const char *why) {
  fprintf(stderr, "mproc: rank %d: lost rank 0 (%s); exiting\n", l->rank, why);
  _exit(MP_MPI_EXIT_ROOT_LOST);
}

static void *watch(void *arg) {
  mp__liveness_t *l = arg;
  mp_conn_t *c = l->conns[0];
  for (;;) {
    struct pollfd fds[2] = {{.fd = l->stop_fd, .events = POLLIN},
                            {.fd = mp_conn_fileno(c), .events = POLLIN}};
    int64_t wait = l->next_beat - now_ns();
    if (wait < 0)
      wait = 0;
    struct timespec ts = {wait / 1000000000LL, wait % 1000000000LL};
    if (ppoll(fds, 2, &ts, NULL) < 0 && errno != EINTR)
      root_lost(l, "poll failed");
    if (fds[0].revents)
      return NULL;
    int64_t now = now_ns();
    if (fds[1].revents) {
      if (!drain(c))
        root_lost(l, "its connection ended");
      l->last_seen[0] = now;
      uint64_t one = 1;
      ssize_t n = write(l->wake_fd, &one, sizeof one);
      (void)n;
    }
    if (now - l->last_seen[0] > l->timeout_ns)
      root_lost(l, "silent for the liveness timeout");
    if (now >= l->next_beat) {
      l->next_beat = now + l->period_ns;
      pthread_mutex_lock(&l->send_lock);
      int rc = mp_conn_send_bytes(c, BEAT, 1);
      pthread_mutex_unlock(&l->send_lock);
      if (rc < 0)
        root_lost(l, "its connection failed");
    }
  }
}

int mp__liveness_watch_root(mp__liveness_t *l) {
  l->stop_fd = mp__fd_high(eventfd(0, EFD_CLOEXEC));
  if (l->stop_fd < 0)
    return -errno;
  l->wake_fd = mp__fd_high(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (l->wake_fd < 0)
    return -errno;
  int rc = pthread_create(&l->thread, NULL, watch, l);
  if (rc != 0)
    return -rc;
  l->watching = true;
  return 0;
}

void mp__liveness_stop_watch(mp__liveness_t *l) {
  if (!l->watching)
    return;
  uint64_t one = 1;
  ssize_t n = write(l->stop_fd, &one, sizeof one);
  (void)n;
  pthread_join(l->thread, NULL);
  l->watching = false;
}

bool mp__liveness_wait_root(mp__liveness_t *l, int64_t ns) {
  struct timespec ts = {ns / 1000000000LL, ns % 1000000000LL};
  if (!l->watching) {
    nanosleep(&ts, NULL);
    return false;
  }
  struct pollfd fd = {.fd = l->wake_fd, .events = POLLIN};
  if (ppoll(&fd, 1, &ts, NULL) != 1)
    return false;
  uint64_t value;
  ssize_t n = read(l->wake_fd, &value, sizeof value);
  (void)n;
  return true;
}

void mp__liveness_poke(mp__liveness_t *l) {
  /* A failure here is the watch's to find. */
  pthread_mutex_lock(&l->send_lock);
  if (l->conns[0])
    mp_conn_send_bytes(l->conns[0], BEAT, 1);
  pthread_mutex_unlock(&l->send_lock);
}

void mp__liveness_cut(mp__liveness_t *l) {
  mp__liveness_stop_watch(l);
  pthread_mutex_lock(&l->send_lock);
  mp_conn_free(l->conns[0]);
  l->conns[0] = NULL;
  pthread_mutex_unlock(&l->send_lock);
}

void mp__liveness_wait_closed(mp__liveness_t *l) {
  mp_conn_t *c = l->conns[0];
  int64_t deadline = now_ns() + l->timeout_ns;
  while (c && now_ns() < deadline) {
    int rc = mp_conn_poll(c, (double)(deadline - now_ns()) / 1e9);
    if (rc != 1 || !drain(c))
      return;
  }
}

void mp__liveness_free(mp__liveness_t *l) {
  if (!l)
    return;
  mp__liveness_stop_watch(l);
  if (l->stop_fd >= 0)
    close(l->stop_fd);
  if (l->wake_fd >= 0)
    close(l->wake_fd);
  for (int r = 0; l->conns && r < l->size; r++)
    mp_conn_free(l->conns[r]);
  mp_listener_free(l->listener);
  free(l->conns);
  free(l->last_seen);
  free(l->lost);
  pthread_mutex_destroy(&l->send_lock);
  free(l);
}

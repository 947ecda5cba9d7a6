/* Listener and Client: multiprocessing.connection's sockets between
 * unrelated processes, authenticated by auth.c. Addresses are strings
 * ("unix:/path", "unix:@abstract", "tcp:HOST:PORT"); see
 * include/mproc/listener.h. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "conn/internal.h"

#define DEFAULT_BACKLOG  128
#define DEFAULT_PENDING  128 /* handshakes under way at once */
#define ADDRESS_MAX      (sizeof(((struct sockaddr_un *)0)->sun_path) + 16)
#define CONNECT_RETRY_NS (10 * 1000 * 1000) /* a full Unix backlog */

/* A peer accepted whose handshake is under way (authenticating listeners
 * carry many at once, so that silent or slow peers cannot stall a good
 * one). */
typedef struct pending {
  int fd;                  /* non-blocking until the handshake is over */
  mp__deadline_t deadline; /* its own: the handshake timeout */
  uint64_t serial;         /* order of arrival: the oldest goes first */
  short events;            /* what its handshake waits for */
  bool done;               /* authenticated, not yet handed out */
  bool fresh;              /* accepted by the accept call under way */
  mp__handshake_t handshake;
} pending_t;

/* A Listener lives in the memory of the process that made it. */
struct mp_listener {
  int fd;            /* listening, non-blocking; -1 once closed */
  char *address;     /* the bound address, in mproc's form */
  char *unlink_path; /* the socket file to remove on close, or NULL */
  dev_t dev;         /* identity of that file: someone else's file at */
  ino_t ino;         /* the same path later is left alone */
  pid_t creator;     /* only this process removes the file */
  bool authenticate;
  unsigned char *authkey;
  size_t authkey_len;
  double handshake_timeout;
  size_t max_message;
  pthread_mutex_t lock; /* one accept at a time: guards what follows */
  pending_t *pending;   /* max_pending entries, made at the first accept */
  struct pollfd *pfds;  /* the listening fd, the pending, mp__poll's */
  size_t n_pending, max_pending;
  uint64_t serial;
  char *last_accepted; /* the peer of the last connection handed out */
};

/* ---- addresses ------------------------------------------------------------
 */

typedef struct address {
  bool unix_family;
  bool abstract;
  struct sockaddr_un un;
  socklen_t un_len;
  char host[256]; /* TCP; empty: any address */
  char port[8];
} address_t;

static int parse_unix(const char *rest, address_t *a) {
  a->unix_family = true;
  a->un.sun_family = AF_UNIX;
  a->abstract = rest[0] == '@';
  const char *name = a->abstract ? rest + 1 : rest;
  size_t len = strlen(name);
  /* A path needs its NUL; an abstract name its leading NUL instead. */
  if (len == 0 || len + 1 > sizeof a->un.sun_path)
    return MP_EINVAL;
  memcpy(a->un.sun_path + a->abstract, name, len);
  /* A path counts its NUL, an abstract name its leading NUL: len + 1. */
  a->un_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
  return 0;
}

static int parse_tcp(const char *rest, address_t *a) {
  const char *colon = strrchr(rest, ':');
  if (!colon)
    return MP_EINVAL;
  size_t host_len = (size_t)(colon - rest);
  const char *host = rest;
  if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']')
    host++, host_len -= 2; /* "[::1]" */
  const char *port = colon + 1;
  size_t port_len = strlen(port);
  if (host_len >= sizeof a->host || port_len == 0 || port_len > 5 ||
      strspn(port, "0123456789") != port_len || atoi(port) > 65535)
    return MP_EINVAL;
  memcpy(a->host, host, host_len);
  a->host[host_len] = 0;
  memcpy(a->port, port, port_len + 1);
  return 0;
}

static int parse_address(const char *text, address_t *a) {
  memset(a, 0, sizeof *a);
  if (!text)
    return MP_EINVAL;
  if (strncmp(text, "unix:", 5) == 0)
    return parse_unix(text + 5, a);
  if (strncmp(text, "tcp:", 4) == 0)
    return parse_tcp(text + 4, a);
  return MP_EINVAL;
}

static int resolve(const address_t *a, bool passive, struct addrinfo **out) {
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                           .ai_flags =
                               AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)};
  int rc = getaddrinfo(a->host[0] ? a->host : NULL, a->port, &hints, out);
  if (rc == 0)
    return 0;
  if (rc == EAI_SYSTEM)
    return -errno;
  return rc == EAI_MEMORY ? -ENOMEM : -EHOSTUNREACH;
}

/* The address a socket is bound to (or its peer's), in mproc's form. */
static char *format_address(const struct sockaddr_storage *ss, socklen_t len) {
  char text[ADDRESS_MAX + INET6_ADDRSTRLEN], ip[INET6_ADDRSTRLEN];
  if (ss->ss_family == AF_UNIX) {
    const struct sockaddr_un *un = (const struct sockaddr_un *)ss;
    size_t n = len - offsetof(struct sockaddr_un, sun_path);
    if (n > 0 && un->sun_path[0] == 0)
      snprintf(text, sizeof text, "unix:@%.*s", (int)(n - 1), un->sun_path + 1);
    else
      snprintf(text, sizeof text, "unix:%.*s", (int)strnlen(un->sun_path, n),
               un->sun_path);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
    snprintf(text, sizeof text, "tcp:[%s]:%u", ip, ntohs(in6->sin6_port));
  } else {
    const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
    snprintf(text, sizeof text, "tcp:%s:%u", ip, ntohs(in->sin_port));
  }
  return strdup(text);
}

/* Python's arbitrary_address('AF_UNIX'): a fresh name in the temp dir. */
static int default_address(char *buf, size_t cap) {
  uint32_t tag;
  int rc = mp__random(&tag, sizeof tag);
  if (rc < 0)
    return rc;
  const char *dir = getenv("TMPDIR");
  int n = snprintf(buf, cap, "unix:%s/mproc-sock-%d-%08x",
                   dir && *dir ? dir : "/tmp", (int)getpid(), tag);
  return n > 0 && (size_t)n < cap ? 0 : MP_EINVAL;
}

/* ---- the listener -----------------------------------------------------------
 */

static int bound_address(mp_listener_t *l) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(l->fd, (struct sockaddr *)&ss, &len) < 0)
    return -errno;
  l->address = format_address(&ss, len);
  return l->address ? 0 : -ENOMEM;
}

static int listen_unix(mp_listener_t *l, const address_t *a, int backlog,
                       bool untracked) {
  l->fd = mp__fd_high(
      socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (l->fd < 0)
    return -errno;
  /* Linux gives the socket file the mode of the socket's inode: set 0600
   * before bind, so that there is no moment where others could connect. */
  if (!a->abstract && fchmod(l->fd, 0600) < 0)
    return -errno;
  if (bind(l->fd, (const struct sockaddr *)&a->un, a->un_len) < 0)
    return -errno;
  if (!a->abstract) {
    struct stat st;
    l->unlink_path = strdup(a->un.sun_path);
    if (!l->unlink_path)
      return -ENOMEM;
    if (!untracked) /* removed when the family is gone, if not before */
      mp__track(MP__RESOURCE_SOCKET, l->unlink_path);
    if (stat(l->unlink_path, &st) == 0) {
      l->dev = st.st_dev;
      l->ino = st.st_ino;
    }
  }
  return listen(l->fd, backlog) < 0 ? -errno : 0;
}

static int listen_tcp(mp_listener_t *l, const address_t *a, int backlog) {
  struct addrinfo *list;
  int rc = resolve(a, true, &list);
  if (rc < 0)
    return rc;
  rc = -EADDRNOTAVAIL;
  for (struct addrinfo *ai = list; ai; ai = ai->ai_next) {
    int fd = mp__fd_high(
        socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    int one = 1;
    /* As Python on POSIX: a restarted server can bind again at once. */
    if (fd >= 0 &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
        bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
        listen(fd, backlog) == 0) {
      l->fd = fd;
      rc = 0;
      break;
    }
    rc = -errno;
    if (fd >= 0)
      close(fd);
  }
  freeaddrinfo(list);
  return rc;
}

static int set_key(mp_listener_t *l, const void *key, size_t len) {
  l->authenticate = key != NULL;
  if (!key)
    return 0;
  if (!mp__auth_available())
    return -ENOTSUP;
  if (len > INT32_MAX)
    return MP_EINVAL;
  l->authkey = malloc(len ? len : 1);
  if (!l->authkey)
    return -ENOMEM;
  memcpy(l->authkey, key, len);
  l->authkey_len = len;
  return 0;
}

mp_listener_t *mp_listener_new_with_opts(const char *address,
                                         const void *authkey,
                                         size_t authkey_len,
                                         const mp_listener_opts_t *opts) {
  mp_listener_t *l = calloc(1, sizeof *l);
  char fresh[ADDRESS_MAX];
  address_t a;
  int rc = -ENOMEM;
  if (!l)
    goto error;
  l->fd = -1;
  l->creator = getpid();
  if (opts && (rc = mp__timeout_check(opts->handshake_timeout)) < 0)
    goto error;
  pthread_mutex_init(&l->lock, NULL);
  l->max_pending =
      opts && opts->max_pending > 0 ? opts->max_pending : DEFAULT_PENDING;
  l->handshake_timeout = opts && opts->handshake_timeout != 0
                             ? opts->handshake_timeout
                             : MP_HANDSHAKE_TIMEOUT;
  l->max_message = opts ? opts->max_message : 0;
  int backlog = opts && opts->backlog > 0 ? opts->backlog : DEFAULT_BACKLOG;
  if ((rc = set_key(l, authkey, authkey_len)) < 0)
    goto error;
  if (!address && (rc = default_address(fresh, sizeof fresh)) < 0)
    goto error;
  if ((rc = parse_address(address ? address : fresh, &a)) < 0)
    goto error;
  rc = a.unix_family ? listen_unix(l, &a, backlog, opts && opts->untracked)
                     : listen_tcp(l, &a, backlog);
  if (rc == 0)
    rc = bound_address(l);
  if (rc < 0)
    goto error;
  return l;
error:
  mp_listener_free(l);
  errno = -rc;
  return NULL;
}

mp_listener_t *mp_listener_new(const char *address, const void *authkey,
                               size_t authkey_len) {
  return mp_listener_new_with_opts(address, authkey, authkey_len, NULL);
}

/* Takes the next waiting peer; MP_ETIMEDOUT when none came in time. */
static int accept_peer(mp_listener_t *l, const mp__deadline_t *d) {
  for (;;) {
    int rc = mp__wait_fd(l->fd, POLLIN, d);
    if (rc <= 0)
      return rc == 0 ? MP_ETIMEDOUT : rc;
    int fd = mp__fd_high(accept4(l->fd, NULL, NULL, SOCK_CLOEXEC));
    if (fd >= 0)
      return fd;
    /* Taken by another thread or process, or gone before we got it. */
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
        errno != ECONNABORTED && errno != EPROTO)
      return -errno;
  }
}

/* The connection of an accepted fd (blocking from now on, as Python's
 * Connection), with the listener's limits. */
static int hand_out(mp_listener_t *l, int fd, mp_conn_t **out) {
  mp_conn_t *c = NULL;
  if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) == 0)
    c = mp__conn_wrap(fd, true, true);
  if (!c) {
    int rc = -errno;
    close(fd);
    return rc;
  }
  if (l->max_message)
    mp_conn_set_max_message(c, l->max_message);
  struct sockaddr_storage peer;
  socklen_t len = sizeof peer;
  char *name = NULL;
  if (getpeername(fd, (struct sockaddr *)&peer, &len) == 0)
    name = format_address(&peer, len); /* NULL without memory: none known */
  free(l->last_accepted);
  l->last_accepted = name;
  *out = c;
  return 0;
}

/* ---- handshakes under way -------------------------------------------------
 * mp_listener_accept of an authenticating listener accepts every peer that
 * waits (non-blocking), starts its handshake, and carries all of them
 * forward in one poll, each with its own deadline. A table of max_pending
 * handshakes bounds what peers can make it hold; a peer that finds it full
 * pushes out the oldest. Pending handshakes survive from one accept call to
 * the next. */

static void drop(mp_listener_t *l, size_t i) {
  close(l->pending[i].fd);
  l->pending[i] = l->pending[--l->n_pending];
}

static void drop_all(mp_listener_t *l) {
  while (l->n_pending > 0)
    drop(l, 0);
}

static int make_table(mp_listener_t *l) {
  if (l->pending)
    return 0;
  l->pending = calloc(l->max_pending, sizeof *l->pending);
  l->pfds = calloc(l->max_pending + 2, sizeof *l->pfds);
  if (l->pending && l->pfds)
    return 0;
  free(l->pending);
  free(l->pfds);
  l->pending = NULL;
  l->pfds = NULL;
  return -ENOMEM;
}

static size_t oldest(const mp_listener_t *l) {
  size_t at = 0;
  for (size_t i = 1; i < l->n_pending; i++)
    if (l->pending[i].serial < l->pending[at].serial)
      at = i;
  return at;
}

/* Steps the handshake of entry i: 0 while it goes on or is done, MP_EAUTH
 * (dropped), or a shortage of our own. */
static int advance(mp_listener_t *l, size_t i) {
  pending_t *p = &l->pending[i];
  int rc = mp__handshake_step(&p->handshake, p->fd, l->authkey, l->authkey_len);
  if (rc == 0)
    p->done = true;
  if (rc >= 0) {
    p->events = (short)rc;
    return 0;
  }
  drop(l, i);
  /* Whatever the peer did wrong, it is one bad peer: the listener goes on.
   * Only our own shortage is reported as such (also a digest the peer wants
   * that only libcrypto has, and there is none). */
  return rc == -ENOMEM || rc == -ENOTSUP || rc == MP_ENOHMAC ? rc : MP_EAUTH;
}

/* Accepts the peers that wait, up to a table's worth. Returns MP_EAUTH when
 * one was pushed out (or failed at once), 0, or a shortage. */
static int accept_new(mp_listener_t *l) {
  int result = 0;
  for (size_t n = 0; n < l->max_pending; n++) {
    int fd =
        mp__fd_high(accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
          errno == ECONNABORTED || errno == EPROTO)
        break;
      return -errno; /* -EMFILE, -ENOMEM: ours */
    }
    if (l->n_pending == l->max_pending) {
      drop(l, oldest(l));
      result = MP_EAUTH;
    }
    pending_t *p = &l->pending[l->n_pending];
    int rc = mp__handshake_begin(&p->handshake);
    if (rc < 0) {
      close(fd);
      return rc;
    }
    p->fd = fd;
    p->deadline = mp__deadline_in(l->handshake_timeout);
    p->deadline.interruptible = true;
    p->serial = l->serial++;
    p->done = false;
    p->fresh = true;
    rc = advance(l, l->n_pending++);
    if (rc < 0)
      result = rc;
  }
  return result;
}

/* Hands out a peer whose handshake is over: 1 if there was one. */
static int take_done(mp_listener_t *l, mp_conn_t **out) {
  for (size_t i = 0; i < l->n_pending; i++) {
    if (!l->pending[i].done)
      continue;
    int fd = l->pending[i].fd;
    l->pending[i] = l->pending[--l->n_pending];
    int rc = hand_out(l, fd, out);
    return rc < 0 ? rc : 1;
  }
  return 0;
}

/* Drops the handshakes past their deadline: MP_EAUTH if one was. */
static int expire(mp_listener_t *l) {
  int rc = 0;
  for (size_t i = l->n_pending; i-- > 0;)
    if (mp__deadline_expired(&l->pending[i].deadline)) {
      drop(l, i);
      rc = MP_EAUTH;
    }
  return rc;
}

/* One poll over the listening fd (while accepting) and the handshakes,
 * until the first of their deadlines; then each ready one is stepped. */
static int poll_round(mp_listener_t *l, bool accepting,
                      const mp__deadline_t *d) {
  size_t n = 0;
  mp__deadline_t until = accepting ? *d : *MP__NO_DEADLINE;
  until.interruptible = true;
  if (accepting)
    l->pfds[n++] = (struct pollfd){.fd = l->fd, .events = POLLIN};
  for (size_t i = 0; i < l->n_pending; i++) {
    l->pfds[n++] =
        (struct pollfd){.fd = l->pending[i].fd, .events = l->pending[i].events};
    until = mp__deadline_earlier(&until, &l->pending[i].deadline);
  }
  int rc = mp__poll(l->pfds, n, &until);
  if (rc <= 0)
    return rc;
  size_t first = accepting ? 1 : 0, count = l->n_pending;
  /* Backwards: a drop moves the last entry into the slot it frees. */
  for (size_t i = count; i-- > 0;) {
    if (!l->pfds[first + i].revents)
      continue;
    int step = advance(l, i);
    if (step < 0)
      rc = step;
  }
  if (rc < 0)
    return rc;
  if (accepting && (l->pfds[0].revents & POLLIN))
    return accept_new(l);
  return 0;
}

static bool any_fresh(const mp_listener_t *l) {
  for (size_t i = 0; i < l->n_pending; i++)
    if (l->pending[i].fresh)
      return true;
  return false;
}

/* The accept of an authenticating listener: returns when a peer is
 * authenticated (0), a peer was dropped (MP_EAUTH), or the deadline
 * passed with no handshake begun in this call still under way. */
static int accept_authenticated(mp_listener_t *l, const mp__deadline_t *d,
                                mp_conn_t **out) {
  for (size_t i = 0; i < l->n_pending; i++)
    l->pending[i].fresh = false;
  int rc = accept_new(l);
  for (;;) {
    if (rc < 0)
      return rc;
    if ((rc = take_done(l, out)) != 0)
      return rc < 0 ? rc : 0;
    if ((rc = expire(l)) < 0)
      return rc;
    bool accepting = !mp__deadline_expired(d);
    if (!accepting && !any_fresh(l))
      return MP_ETIMEDOUT;
    rc = poll_round(l, accepting, d);
  }
}

int mp_listener_accept(mp_listener_t *l, double timeout, mp_conn_t **out) {
  if (!l || !out)
    return MP_EINVAL;
  int rc_timeout = mp__timeout_check(timeout);
  if (rc_timeout < 0)
    return rc_timeout;
  *out = NULL;
  if (l->fd < 0)
    return MP_ECLOSED;
  mp__deadline_t d = mp__deadline_in(timeout);
  if (!l->authenticate) {
    int fd = accept_peer(l, &d);
    return fd < 0 ? fd : hand_out(l, fd, out);
  }
  pthread_mutex_lock(&l->lock);
  int rc = make_table(l);
  if (rc == 0)
    rc = accept_authenticated(l, &d, out);
  pthread_mutex_unlock(&l->lock);
  return rc;
}

const char *mp_listener_address(const mp_listener_t *l) {
  if (!l)
    return NULL;
  return l->address;
}

int mp_listener_port(const mp_listener_t *l) {
  if (!l || strncmp(l->address, "tcp:", 4) != 0)
    return MP_EINVAL;
  const char *colon = strrchr(l->address, ':');
  return atoi(colon + 1); /* format_address wrote it: digits */
}

const char *mp_listener_path(const mp_listener_t *l) {
  if (!l || strncmp(l->address, "unix:", 5) != 0) {
    errno = EINVAL;
    return NULL;
  }
  return l->address + 5;
}

const char *mp_listener_last_accepted(const mp_listener_t *l) {
  return l ? l->last_accepted : NULL;
}

int mp_listener_fileno(const mp_listener_t *l) {
  if (!l)
    return MP_EINVAL;
  return l->fd >= 0 ? l->fd : MP_ECLOSED;
}

int mp_listener_close(mp_listener_t *l) {
  if (!l)
    return MP_EINVAL;
  drop_all(l);
  if (l->fd >= 0) {
    close(l->fd);
    l->fd = -1;
  }
  struct stat st;
  if (l->unlink_path && l->creator == getpid() &&
      stat(l->unlink_path, &st) == 0 && st.st_dev == l->dev &&
      st.st_ino == l->ino && unlink(l->unlink_path) == 0)
    mp__untrack(MP__RESOURCE_SOCKET, l->unlink_path);
  free(l->unlink_path);
  l->unlink_path = NULL;
  return 0;
}

void mp_listener_free(mp_listener_t *l) {
  if (!l)
    return;
  mp_listener_close(l);
  if (l->authkey) {
    memset(l->authkey, 0, l->authkey_len);
    free(l->authkey);
  }
  free(l->address);
  free(l->last_accepted);
  free(l->pending);
  free(l->pfds);
  pthread_mutex_destroy(&l->lock);
  free(l);
}

/* ---- the client -------------------------------------------------------------
 */

/* Waits for a non-blocking connect to finish. */
static int connect_finish(int fd, const mp__deadline_t *d) {
  int err = 0;
  socklen_t err_len = sizeof err;
  int rc = mp__wait_fd(fd, POLLOUT, d);
  if (rc == 0)
    return MP_ETIMEDOUT;
  if (rc < 0)
    return rc;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) < 0)
    return -errno;
  return -err;
}

static int connect_one(int family, const struct sockaddr *sa, socklen_t len,
                       const mp__deadline_t *d) {
  int fd = mp__fd_high(
      socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd < 0)
    return -errno;
  int rc;
  for (;;) {
    if (connect(fd, sa, len) == 0) {
      rc = 0;
    } else if (errno == EINPROGRESS || errno == EINTR) {
      rc = connect_finish(fd, d); /* it goes on in the background */
    } else if (errno == EAGAIN && family == AF_UNIX) {
      /* The listener's backlog is full: it takes us when it can. */
      struct timespec pause = {0, CONNECT_RETRY_NS};
      if (mp__deadline_expired(d)) {
        rc = MP_ETIMEDOUT;
      } else {
        nanosleep(&pause, NULL);
        continue;
      }
    } else {
      rc = -errno;
    }
    break;
  }
  /* Connected: blocking from now on, as Python's Connection. */
  if (rc == 0 && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
    rc = -errno;
  if (rc < 0) {
    close(fd);
    return rc;
  }
  return fd;
}

static int connect_address(const address_t *a, const mp__deadline_t *d) {
  if (a->unix_family)
    return connect_one(AF_UNIX, (const struct sockaddr *)&a->un, a->un_len, d);
  struct addrinfo *list;
  int rc = resolve(a, false, &list);
  if (rc < 0)
    return rc;
  rc = -EHOSTUNREACH;
  for (struct addrinfo *ai = list; ai && rc < 0 && rc != MP_ETIMEDOUT;
       ai = ai->ai_next)
    rc = connect_one(ai->ai_family, ai->ai_addr, ai->ai_addrlen, d);
  freeaddrinfo(list);
  return rc;
}

int mp_client_with_opts(const char *address, const void *authkey,
                        size_t authkey_len, const mp_client_opts_t *opts,
                        mp_conn_t **out) {
  address_t a;
  *out = NULL;
  if (authkey && !mp__auth_available())
    return -ENOTSUP;
  if (opts && mp__timeout_check(opts->timeout) < 0)
    return MP_EINVAL;
  int rc = parse_address(address, &a);
  if (rc < 0)
    return rc;
  double timeout =
      opts && opts->timeout != 0 ? opts->timeout : MP_CLIENT_TIMEOUT;
  mp__deadline_t d = mp__deadline_in(timeout);
  int fd = connect_address(&a, &d);
  if (fd < 0)
    return fd;
  mp_conn_t *c = mp__conn_wrap(fd, true, true);
  if (!c) {
    rc = -errno;
    close(fd);
    return rc;
  }
  if (authkey && (rc = mp__auth_client(c, authkey, authkey_len, &d)) < 0) {
    mp_conn_free(c);
    return rc;
  }
  if (opts && opts->max_message)
    mp_conn_set_max_message(c, opts->max_message);
  *out = c;
  return 0;
}

int mp_client(const char *address, const void *authkey, size_t authkey_len,
              mp_conn_t **out) {
  return mp_client_with_opts(address, authkey, authkey_len, NULL, out);
}

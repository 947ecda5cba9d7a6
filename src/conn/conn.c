/* Connections: multiprocessing.Pipe and Connection (send_bytes, recv_bytes,
 * poll, close), with Python's framing.
 *
 * An mp_conn_t is split in two (see include/mproc/conn.h):
 *  - the shared object, in the family's shared memory, written once before
 *    it is published and read-only afterwards (but max_message and the
 *    read-ahead buffer): the fd number, the direction, the identity of the
 *    file behind the fd, and a serial number unique in the family;
 *  - per process, a `local` record found through a process-local table
 *    keyed by the object's address and checked against its serial: whether
 *    this process still has the connection open, whether it may still read
 *    (Python drops readability after a bad message length), and the locks
 *    that serialize the threads of this process.
 *
 * Read-ahead. A receive reads as much as the fd has (up to the buffer's
 * size) and keeps what it did not need for the next receive: a stream of
 * small messages costs one read() per burst instead of two per message
 * (header, then payload). The kernel's stream position is shared by every
 * process that has the fd, so the bytes read ahead are shared too: the
 * buffer is in the shared object, and a process that receives after
 * another one first takes what the other one left there. A message's
 * header stays in the buffer until its payload is taken, so a message
 * refused with MP_EOVERFLOW (or -ENOMEM) waits there for the next receive,
 * in whichever process. A payload longer than the buffer is read straight
 * into the caller's memory after what was buffered of it.
 * A fork child inherits the table (its parent's view at the fork). A
 * process that meets a connection it has no record of (a spawned child, or
 * an object reused at the same address) makes one: the connection is open
 * here if the fd exists and is the same file (device and inode) as at
 * creation, and closed otherwise. */
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "compat.h"
#include "conn/internal.h"

#define CONN_MAGIC   0x6d70636eu /* "mpcn" */
#define FAMILY_MAGIC 0x6d706366u /* "mpcf" */

/* Python's framing: a 4-byte signed big-endian length; longer messages
 * have -1 there, then an 8-byte unsigned big-endian length. */
#define FRAME_SHORT_MAX  0x7fffffffu
#define FRAME_HEADER_MAX 12
#define NO_LIMIT         UINT64_MAX

/* The read-ahead buffer of a readable end: the object with the arena's
 * 64-byte block header fills one 4 KiB block. */
#define RBUF_OFFSET 64
#define RBUF_SIZE   (4096u - 64u - RBUF_OFFSET)

/* Flags of the shared object. */
enum {
  CONN_READS = 1u << 0,
  CONN_WRITES = 1u << 1,
  CONN_SOCKET = 1u << 2, /* written with sendmsg(MSG_NOSIGNAL) */
  CONN_UNIX = 1u << 3,   /* a Unix socket: read with recvmsg, carries fds */
};

/* The shared object. Every field but max_message and the read-ahead
 * buffer is written by the creator before the pointer is returned and
 * never changes afterwards, so no lock guards them. */
struct mp_conn {
  uint32_t magic;
  uint32_t generation;
  uint32_t flags;  /* CONN_* */
  int32_t fd;      /* the same number in every process that has it */
  int32_t creator; /* pid of the process that made it: it frees it */
  uint64_t serial; /* unique in the family, tells reused addresses apart */
  uint64_t dev;    /* identity of the file behind fd, to recognise the */
  uint64_t ino;    /* fd in a process that has no record of it */
  _Atomic uint64_t max_message; /* 0: no limit */
  /* Bytes read from the fd and not yet received: rbuf[head, tail). Only
   * the receiver changes them: one thread of one process at a time (the
   * recv_lock of its process; across processes the caller's duty, as in
   * Python). Atomic so that poll and wait may look without the lock. */
  _Atomic uint32_t head;
  _Atomic uint32_t tail;
  uint8_t rbuf[]; /* RBUF_SIZE bytes in a readable end, none otherwise */
};

_Static_assert(offsetof(struct mp_conn, rbuf) <= RBUF_OFFSET,
               "the read-ahead buffer fits its block");
MP__OBJECT_LAYOUT(mp_conn_t);

/* The family-wide block behind MP__ROOT_CONNS. */
typedef struct conn_family {
  uint32_t magic;
  _Atomic uint64_t next_serial;
} conn_family_t;

/* ---- the per-process records ------------------------------------------ */

/* Bits of local_t.state. */
enum {
  LOCAL_OPEN = 1u << 0,     /* this process has the fd */
  LOCAL_READABLE = 1u << 1, /* Python's _readable */
  LOCAL_WRITABLE = 1u << 2, /* Python's _writable */
};

typedef struct local {
  struct local *next; /* hash chain; the table lock guards it */
  const mp_conn_t *conn;
  uint64_t serial;
  _Atomic uint32_t state;    /* LOCAL_* */
  pthread_mutex_t send_lock; /* one sender at a time in this process */
  pthread_mutex_t recv_lock; /* one receiver at a time in this process */
} local_t;

#define LOCAL_BUCKETS 256

static struct {
  pthread_mutex_t lock; /* guards buckets and the chains */
  local_t *buckets[LOCAL_BUCKETS];
} locals = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void atfork_prepare(void) {
  pthread_mutex_lock(&locals.lock);
}

static void atfork_parent(void) {
  pthread_mutex_unlock(&locals.lock);
}

/* The child has one thread: locks that other threads of the parent held
 * at the fork would stay held forever, so every lock starts afresh. The
 * table's lock is the forking thread's own (atfork_prepare): it unlocks
 * it, which ThreadSanitizer understands (it reports a re-initialised
 * locked mutex as locked twice at its next use). */
static void atfork_child(void) {
  pthread_mutex_unlock(&locals.lock);
  for (int i = 0; i < LOCAL_BUCKETS; i++) {
    for (local_t *l = locals.buckets[i]; l; l = l->next) {
      pthread_mutex_init(&l->send_lock, NULL);
      pthread_mutex_init(&l->recv_lock, NULL);
    }
  }
}

static mp__atfork_t conn_atfork = {
    .prepare = atfork_prepare, .parent = atfork_parent, .child = atfork_child};

static local_t **bucket_of(const mp_conn_t *c) {
  /* Objects are 64-byte aligned: the low bits say nothing. */
  return &locals.buckets[((uintptr_t)c >> 6) % LOCAL_BUCKETS];
}

static uint32_t direction_bits(uint32_t flags) {
  return (flags & CONN_READS ? LOCAL_READABLE : 0) |
         (flags & CONN_WRITES ? LOCAL_WRITABLE : 0);
}

/* What a process without a record of c has of it. */
static uint32_t infer_state(const mp_conn_t *c) {
  struct stat st;
  if (fstat(c->fd, &st) == 0 && (uint64_t)st.st_dev == c->dev &&
      (uint64_t)st.st_ino == c->ino)
    return LOCAL_OPEN | direction_bits(c->flags);
  return direction_bits(c->flags);
}

static void local_reset(local_t *l, const mp_conn_t *c, uint32_t state) {
  l->conn = c;
  l->serial = c->serial;
  atomic_store(&l->state, state);
}

/* Finds or makes this process's record of c. fresh_state: the state of a
 * record made now (~0u: infer it). NULL only when out of memory. */
static local_t *local_find(const mp_conn_t *c, uint32_t fresh_state) {
  /* Also a process that only uses connections it inherited (a spawned
   * child) has locks here that a fork must not leave held. */
  mp__atfork_register(&conn_atfork);
  if (c->magic != CONN_MAGIC)
    abort(); /* a freed or foreign pointer: a bug of the caller */
  pthread_mutex_lock(&locals.lock);
  local_t **head = bucket_of(c), *l = *head;
  while (l && l->conn != c)
    l = l->next;
  if (!l || l->serial != c->serial) {
    if (!l) {
      l = calloc(1, sizeof *l);
      if (!l)
        goto out;
      pthread_mutex_init(&l->send_lock, NULL);
      pthread_mutex_init(&l->recv_lock, NULL);
      l->next = *head;
      *head = l;
    }
    local_reset(l, c, fresh_state != ~0u ? fresh_state : infer_state(c));
  }
out:
  pthread_mutex_unlock(&locals.lock);
  return l;
}

static void local_forget(const mp_conn_t *c) {
  pthread_mutex_lock(&locals.lock);
  local_t **link = bucket_of(c);
  while (*link && (*link)->conn != c)
    link = &(*link)->next;
  local_t *l = *link;
  if (l)
    *link = l->next;
  pthread_mutex_unlock(&locals.lock);
  if (l) {
    pthread_mutex_destroy(&l->send_lock);
    pthread_mutex_destroy(&l->recv_lock);
    free(l);
  }
}

/* This process's record of c, checked for an operation that needs the
 * given direction bit. */
static int local_check(mp_conn_t *c, uint32_t direction, local_t **out) {
  local_t *l = local_find(c, ~0u);
  if (!l)
    return -ENOMEM;
  uint32_t state = atomic_load(&l->state);
  if (!(state & LOCAL_OPEN))
    return MP_ECLOSED;
  if (!(state & direction))
    return MP_ESTATE;
  *out = l;
  return 0;
}

/* ---- creation ------------------------------------------------------------ */

static int next_serial(uint64_t *serial) {
  _Atomic(void *) *root = mp__shm_root(MP__ROOT_CONNS);
  if (!root)
    return -ENOMEM;
  conn_family_t *f = atomic_load(root);
  if (!f) {
    conn_family_t *made = mp__shm_alloc(sizeof *made);
    if (!made)
      return -errno;
    made->magic = FAMILY_MAGIC;
    atomic_store(&made->next_serial, 1);
    void *expected = NULL;
    if (atomic_compare_exchange_strong(root, &expected, made)) {
      f = made;
    } else {
      mp__shm_free(made); /* another process or thread was first */
      f = expected;
    }
  }
  *serial = atomic_fetch_add(&f->next_serial, 1);
  return 0;
}

static bool is_unix_socket(int fd) {
  int domain = 0;
  socklen_t len = sizeof domain;
  return getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 &&
         domain == AF_UNIX;
}

mp_conn_t *mp__conn_wrap(int fd, bool readable, bool writable) {
  struct stat st;
  uint64_t serial = 0;
  int rc;
  if (fd < 0 || (!readable && !writable)) {
    errno = EINVAL;
    return NULL;
  }
  if (fstat(fd, &st) < 0)
    return NULL;
  if ((rc = next_serial(&serial)) < 0) {
    errno = -rc;
    return NULL;
  }
  mp_conn_t *c = mp__shm_alloc(sizeof *c + (readable ? RBUF_SIZE : 0));
  if (!c)
    return NULL;
  atomic_store(&c->head, 0);
  atomic_store(&c->tail, 0);
  c->flags = (readable ? CONN_READS : 0) | (writable ? CONN_WRITES : 0) |
             (S_ISSOCK(st.st_mode) ? CONN_SOCKET : 0) |
             (S_ISSOCK(st.st_mode) && is_unix_socket(fd) ? CONN_UNIX : 0);
  c->fd = fd;
  c->creator = getpid();
  c->serial = serial;
  c->dev = (uint64_t)st.st_dev;
  c->ino = (uint64_t)st.st_ino;
  c->magic = CONN_MAGIC;
  if (!local_find(c, LOCAL_OPEN | direction_bits(c->flags))) {
    rc = -ENOMEM;
    goto error;
  }
  if ((rc = mp__inherit_fd_add(fd)) < 0) {
    local_forget(c);
    goto error;
  }
  return mp__object_publish(c, CONN_MAGIC);
error:
  c->magic = 0;
  mp__shm_free(c);
  errno = -rc;
  return NULL;
}

mp_conn_t *mp_conn_from_fd(int fd) {
  if (fd < 0) {
    errno = EINVAL;
    return NULL;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0)
    return NULL;
  int mode = fl & O_ACCMODE;
  return mp__conn_wrap(fd, mode != O_WRONLY, mode != O_RDONLY);
}

int mp_pipe(mp_conn_t **a, mp_conn_t **b, bool duplex) {
  int fds[2];
  if (!a || !b)
    return MP_EINVAL;
  *a = *b = NULL;
  int rc = mp__fd_pair_high(
      duplex ? socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds)
             : pipe2(fds, O_CLOEXEC),
      fds);
  if (rc < 0)
    return -errno;
  *a = mp__conn_wrap(fds[0], true, duplex);
  if (!*a)
    goto error;
  *b = mp__conn_wrap(fds[1], duplex, true);
  if (!*b)
    goto error;
  return 0;
error:
  rc = -errno;
  if (*a)
    mp_conn_free(*a); /* closes fds[0] */
  else
    close(fds[0]);
  close(fds[1]);
  *a = NULL;
  return rc;
}

/* ---- waiting for an fd ----------------------------------------------------
 */

int mp__wait_fd(int fd, short events, const mp__deadline_t *deadline) {
  struct pollfd p[2] = {{.fd = fd, .events = events}};
  int rc = mp__poll(p, 1, deadline ? deadline : MP__NO_DEADLINE);
  if (rc > 0)
    return p[0].revents & POLLNVAL ? -EBADF : 1;
  return rc;
}

static int wait_or_timeout(int fd, short events, const mp__deadline_t *d) {
  int rc = mp__wait_fd(fd, events, d);
  return rc == 0 ? MP_ETIMEDOUT : rc < 0 ? rc : 0;
}

static bool has_deadline(const mp__deadline_t *d) {
  return d && !d->forever;
}

/* The deadline of a receive of the API: forever, interruptible. */
#define RECV_DEADLINE                                                          \
  (&(const mp__deadline_t){.forever = true, .interruptible = true})

/* ---- writing without SIGPIPE --------------------------------------------
 * A library may not install signal handlers, so a write to a pipe whose
 * reader is gone runs with SIGPIPE blocked in this thread; the SIGPIPE it
 * raised is then pending on the thread and is consumed with sigtimedwait --
 * unless one was pending already before (the caller blocks SIGPIPE and has
 * one of its own waiting), which stays. */
typedef struct sigpipe_guard {
  sigset_t old_mask;
  bool restore;     /* SIGPIPE was not blocked before */
  bool was_pending; /* a SIGPIPE of the caller's was pending before */
} sigpipe_guard_t;

static void sigpipe_set(sigset_t *set) {
  sigemptyset(set);
  sigaddset(set, SIGPIPE);
}

static void sigpipe_block(sigpipe_guard_t *g) {
  sigset_t set, pending;
  sigpipe_set(&set);
  pthread_sigmask(SIG_BLOCK, &set, &g->old_mask);
  g->restore = !sigismember(&g->old_mask, SIGPIPE);
  /* While SIGPIPE was unblocked none could be pending for this thread. */
  g->was_pending = !g->restore && sigpending(&pending) == 0 &&
                   sigismember(&pending, SIGPIPE);
}

static void sigpipe_unblock(sigpipe_guard_t *g, bool raised) {
  if (raised && !g->was_pending) {
    sigset_t set;
    sigpipe_set(&set);
    struct timespec zero = {0, 0};
    while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
      ;
  }
  if (g->restore)
    pthread_sigmask(SIG_SETMASK, &g->old_mask, NULL);
}

/* ---- raw I/O ----------------------------------------------------------- */

static ssize_t write_some(const mp_conn_t *c, struct iovec *iov, int count,
                          bool dontwait) {
  if (c->flags & CONN_SOCKET) {
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)count};
    return sendmsg(c->fd, &msg, MSG_NOSIGNAL | (dontwait ? MSG_DONTWAIT : 0));
  }
  return writev(c->fd, iov, count);
}

/* Drops n written bytes from the front of the iovec array. */
static void iov_advance(struct iovec **iov, int *count, size_t n) {
  while (*count > 0 && n >= (*iov)->iov_len) {
    n -= (*iov)->iov_len;
    (*iov)++;
    (*count)--;
  }
  if (*count > 0) {
    (*iov)->iov_base = (char *)(*iov)->iov_base + n;
    (*iov)->iov_len -= n;
  }
}

/* Writes every byte of iov, restarting after signals and short writes (a
 * frame is never left half written by them). handle >= 0: an fd sent
 * along with the first bytes (SCM_RIGHTS, a Unix socket only). */
static int write_all(const mp_conn_t *c, struct iovec *iov, int count,
                     const mp__deadline_t *d, int handle) {
  sigpipe_guard_t guard;
  bool pipe_like = !(c->flags & CONN_SOCKET);
  bool epipe = false;
  int rc = 0;
  if (pipe_like)
    sigpipe_block(&guard);
  while (count > 0) {
    if (has_deadline(d) && pipe_like &&
        (rc = wait_or_timeout(c->fd, POLLOUT, d)) < 0)
      break;
    ssize_t n = handle >= 0 ? mp__handle_send(c->fd, iov[0].iov_base,
                                              iov[0].iov_len, handle)
                            : write_some(c, iov, count, has_deadline(d));
    if (n >= 0) {
      handle = -1; /* it went with those bytes */
      iov_advance(&iov, &count, (size_t)n);
      continue;
    }
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if ((rc = wait_or_timeout(c->fd, POLLOUT, d)) < 0)
        break;
      continue;
    }
    epipe = errno == EPIPE;
    rc = epipe || errno == ECONNRESET ? MP_ECLOSED : -errno;
    break;
  }
  if (pipe_like)
    sigpipe_unblock(&guard, epipe);
  return rc;
}

/* A read that never blocks: recv(MSG_DONTWAIT) on a socket,
 * preadv2(RWF_NOWAIT) on a pipe (the fd's own flags are shared with every
 * process that has it, so they stay as they are). -1 with EAGAIN when
 * nothing is there, or when the kernel cannot read a pipe that way. */
static ssize_t read_nowait(const mp_conn_t *c, void *buf, size_t n) {
  static _Atomic bool no_nowait;
  if (c->flags & CONN_SOCKET)
    return recv(c->fd, buf, n, MSG_DONTWAIT);
#ifdef RWF_NOWAIT /* glibc 2.26+; musl 1.2.3 has no preadv2 */
  if (!atomic_load_explicit(&no_nowait, memory_order_relaxed)) {
    struct iovec iov = {buf, n};
    ssize_t r = preadv2(c->fd, &iov, 1, -1, RWF_NOWAIT);
    if (r >= 0 || (errno != EOPNOTSUPP && !MP__UNSUPPORTED(errno)))
      return r;
    atomic_store(&no_nowait, true);
  }
#else
  (void)no_nowait;
#endif
  errno = EAGAIN;
  return -1;
}

/* One read of at most n bytes. A Unix socket may carry fds (send_handle):
 * they are kept for recv_handle, not lost. nowait: EAGAIN rather than
 * blocking (where the fd allows it). */
static ssize_t read_fd(const mp_conn_t *c, void *buf, size_t n, bool nowait) {
  if (c->flags & CONN_UNIX)
    return mp__handle_recv(c->fd, c->serial, buf, n, nowait ? MSG_DONTWAIT : 0);
  return nowait ? read_nowait(c, buf, n) : read(c->fd, buf, n);
}

/* One read() of at most n (> 0) bytes, waiting for the fd when it has
 * nothing yet and restarting after signals. Returns the number of bytes
 * read (> 0), MP_ECLOSED at the end of the stream, MP_ETIMEDOUT, -errno. */
static ssize_t read_some(const mp_conn_t *c, void *buf, size_t n,
                         const mp__deadline_t *d) {
  int rc;
  if (n > SSIZE_MAX)
    n = SSIZE_MAX;
  for (;;) {
    ssize_t r;
    if (d && d->forever && d->interruptible) {
      /* No deadline, but mp_interrupt() must end it, which a blocking
       * read would not: a read that finds bytes is one system call, an
       * empty fd is polled (with the interrupt) before the read. */
      r = read_fd(c, buf, n, true);
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if ((rc = wait_or_timeout(c->fd, POLLIN, d)) < 0)
          return rc;
        r = read_fd(c, buf, n, false);
      }
    } else {
      if (has_deadline(d) && (rc = wait_or_timeout(c->fd, POLLIN, d)) < 0)
        return rc;
      r = read_fd(c, buf, n, false);
    }
    if (r > 0)
      return r;
    if (r == 0)
      return MP_ECLOSED;
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if ((rc = wait_or_timeout(c->fd, POLLIN, d)) < 0)
        return rc;
      continue;
    }
    return errno == ECONNRESET ? MP_ECLOSED : -errno;
  }
}

/* Reads exactly n bytes. MP_ECLOSED at the end of the stream. */
static int read_exact(const mp_conn_t *c, void *buf, size_t n,
                      const mp__deadline_t *d) {
  for (size_t got = 0; got < n;) {
    ssize_t r = read_some(c, (char *)buf + got, n - got, d);
    if (r < 0)
      return (int)r;
    got += (size_t)r;
  }
  return 0;
}

/* ---- the read-ahead buffer ------------------------------------------------
 * Used only by the receiver (recv_lock held). */

static uint32_t buffered(const mp_conn_t *c) {
  return atomic_load_explicit(&c->tail, memory_order_relaxed) -
         atomic_load_explicit(&c->head, memory_order_relaxed);
}

static const uint8_t *buffer_at(const mp_conn_t *c, size_t skip) {
  return c->rbuf + atomic_load_explicit(&c->head, memory_order_relaxed) + skip;
}

static void buffer_consume(mp_conn_t *c, size_t n) {
  atomic_fetch_add_explicit(&c->head, (uint32_t)n, memory_order_relaxed);
}

/* Reads from the fd until the buffer holds at least n (<= RBUF_SIZE)
 * bytes, taking whatever more the fd has room for: the read-ahead. What
 * was read stays buffered also when this fails (the stream stays in step:
 * a later receive goes on from there). */
static int buffer_fill(mp_conn_t *c, size_t n, const mp__deadline_t *d) {
  uint32_t have = buffered(c);
  if (have >= n)
    return 0;
  /* Less than n bytes (part of one message) are buffered: move them to the
   * front so the read gets all the room. */
  uint32_t head = atomic_load_explicit(&c->head, memory_order_relaxed);
  if (head > 0)
    memmove(c->rbuf, c->rbuf + head, have);
  atomic_store_explicit(&c->head, 0, memory_order_relaxed);
  atomic_store_explicit(&c->tail, have, memory_order_relaxed);
  while (have < n) {
    ssize_t r = read_some(c, c->rbuf + have, RBUF_SIZE - have, d);
    if (r < 0)
      return (int)r;
    have += (uint32_t)r;
    atomic_store_explicit(&c->tail, have, memory_order_relaxed);
  }
  return 0;
}

/* ---- framing ----------------------------------------------------------------
 */

static size_t frame_header(uint8_t *h, size_t len) {
  size_t at = 0;
  uint64_t n = len;
  if (len > FRAME_SHORT_MAX) {
    memset(h, 0xff, 4); /* -1: the 8-byte length follows */
    at = 4;
    for (int i = 0; i < 8; i++)
      h[at + (size_t)i] = (uint8_t)(n >> (56 - 8 * i));
    return at + 8;
  }
  for (int i = 0; i < 4; i++)
    h[i] = (uint8_t)(n >> (24 - 8 * i));
  return 4;
}

static uint64_t be_load(const uint8_t *p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++)
    v = v << 8 | p[i];
  return v;
}

int mp__conn_send(mp_conn_t *c, const void *buf, size_t len,
                  const mp__deadline_t *deadline) {
  if (!(c = mp__object_open(c, CONN_MAGIC)))
    return MP_EINVAL;
  local_t *l;
  if (!buf && len > 0)
    return MP_EINVAL;
  int rc = local_check(c, LOCAL_WRITABLE, &l);
  if (rc < 0)
    return rc;
  uint8_t header[FRAME_HEADER_MAX];
  /* One writev for header and payload: one system call for a message the
   * kernel takes whole, never a separate tiny write (Python joins them for
   * the same reason: Nagle). The bytes on the wire are Python's. */
  struct iovec iov[2] = {
      {.iov_base = header, .iov_len = frame_header(header, len)},
      {.iov_base = (void *)buf, .iov_len = len},
  };
  pthread_mutex_lock(&l->send_lock);
  rc = write_all(c, iov, len > 0 ? 2 : 1, deadline, -1);
  pthread_mutex_unlock(&l->send_lock);
  return rc;
}

int mp_conn_send_bytes(mp_conn_t *c, const void *buf, size_t len) {
  return mp__conn_send(c, buf, len, NULL);
}

static int conn_close(mp_conn_t *c);

/* Python's _bad_message_length: a duplex end stops reading, a read-only end
 * is closed. */
static void lose_readability(mp_conn_t *c, local_t *l) {
  if (atomic_load(&l->state) & LOCAL_WRITABLE)
    atomic_fetch_and(&l->state, ~(uint32_t)LOCAL_READABLE);
  else
    conn_close(c);
}

/* The next message's header, read into the buffer if it is not there
 * yet; it stays there (a message refused for its size waits for the next
 * receive). *hlen: the header's size, *len: the payload's. Called with
 * recv_lock held. */
static int frame_begin(mp_conn_t *c, local_t *l, const mp__deadline_t *d,
                       size_t *hlen, uint64_t *len) {
  assert(mp__pthread_mutex_busy(&l->recv_lock));
  int rc = buffer_fill(c, 4, d);
  if (rc == 0 && be_load(buffer_at(c, 0), 4) == 0xffffffffu)
    rc = buffer_fill(c, FRAME_HEADER_MAX, d);
  if (rc < 0)
    return rc; /* a partial header stays buffered */
  int32_t short_len = (int32_t)be_load(buffer_at(c, 0), 4);
  if (short_len < -1) {
    lose_readability(c, l);
    return -EPROTO;
  }
  *hlen = short_len == -1 ? FRAME_HEADER_MAX : 4;
  *len = short_len == -1 ? be_load(buffer_at(c, 4), 8) : (uint64_t)short_len;
  return 0;
}

/* Checks a length against the caller's limit (NO_LIMIT: none) and the
 * shared max_message. */
static int frame_check_length(mp_conn_t *c, local_t *l, uint64_t len,
                              uint64_t limit) {
  uint64_t shared = atomic_load(&c->max_message);
  if (len > limit || (shared && len > shared)) {
    lose_readability(c, l);
    return -EMSGSIZE;
  }
  return 0;
}

/* Moves the message whose header frame_begin found into buf (len bytes):
 * a message that fits the buffer from there, a longer one from the buffer
 * and then straight from the fd. */
static int frame_finish(mp_conn_t *c, local_t *l, void *buf, size_t hlen,
                        size_t len, const mp__deadline_t *d) {
  if (len <= RBUF_SIZE - hlen) {
    int rc = buffer_fill(c, hlen + len, d);
    if (rc < 0)
      return rc; /* what came of the message stays buffered */
    if (len > 0)
      memcpy(buf, buffer_at(c, hlen), len);
    buffer_consume(c, hlen + len);
    return 0;
  }
  /* Less than the whole message is buffered: take it, read the rest. From
   * here an interrupt would tear the message: the rest is read whole (the
   * peer is sending it), only a deadline ends the read. */
  size_t have = buffered(c) - hlen;
  memcpy(buf, buffer_at(c, hlen), have);
  buffer_consume(c, hlen + have);
  mp__deadline_t rest = d ? *d : *MP__NO_DEADLINE;
  rest.interruptible = false;
  int rc = read_exact(c, (char *)buf + have, len - have, &rest);
  if (rc < 0 && rc != MP_ECLOSED)
    lose_readability(c, l); /* the stream is in the middle of a payload */
  return rc;
}

/* The start of every receive: the record, the lock, the header, the limit.
 * On success recv_lock is held and the header is in the buffer. */
static int recv_begin(mp_conn_t *c, uint64_t limit, const mp__deadline_t *d,
                      local_t **out, size_t *hlen, uint64_t *len) {
  local_t *l;
  int rc = local_check(c, LOCAL_READABLE, &l);
  if (rc < 0)
    return rc;
  pthread_mutex_lock(&l->recv_lock);
  /* Another thread may have made the end unreadable meanwhile. */
  if (!(atomic_load(&l->state) & LOCAL_OPEN))
    rc = MP_ECLOSED;
  else if (!(atomic_load(&l->state) & LOCAL_READABLE))
    rc = MP_ESTATE;
  if (rc == 0)
    rc = frame_begin(c, l, d, hlen, len);
  if (rc == 0)
    rc = frame_check_length(c, l, *len, limit);
  if (rc < 0) {
    pthread_mutex_unlock(&l->recv_lock);
    return rc;
  }
  *out = l;
  return 0;
}

int mp_conn_recv_bytes_max(mp_conn_t *c, size_t maxlength, void **buf,
                           size_t *len) {
  if (!(c = mp__object_open(c, CONN_MAGIC)))
    return MP_EINVAL;
  local_t *l;
  size_t hlen;
  uint64_t n;
  int rc = recv_begin(c, maxlength, RECV_DEADLINE, &l, &hlen, &n);
  if (rc < 0)
    return rc;
  size_t checked;
  if (n > SIZE_MAX || !mp__size((size_t)n, 1, 0, &checked)) {
    rc = -ENOMEM; /* a peer's length no memory could hold */
    goto out;
  }
  void *data = malloc(n ? (size_t)n : 1);
  if (!data) {
    rc = -ENOMEM; /* the message stays buffered for a later call */
    goto out;
  }
  rc = frame_finish(c, l, data, hlen, (size_t)n, RECV_DEADLINE);
  if (rc < 0) {
    free(data);
    goto out;
  }
  *buf = data;
  *len = (size_t)n;
out:
  pthread_mutex_unlock(&l->recv_lock);
  return rc;
}

int mp_conn_recv_bytes(mp_conn_t *c, void **buf, size_t *len) {
  return mp_conn_recv_bytes_max(c, SIZE_MAX, buf, len);
}

int mp_conn_recv_bytes_into(mp_conn_t *c, void *buf, size_t cap, size_t *len) {
  if (!(c = mp__object_open(c, CONN_MAGIC)))
    return MP_EINVAL;
  local_t *l;
  size_t hlen;
  uint64_t n;
  int rc = recv_begin(c, NO_LIMIT, RECV_DEADLINE, &l, &hlen, &n);
  if (rc < 0)
    return rc;
  *len = (size_t)n;
  if (n > cap)
    rc = MP_EOVERFLOW; /* stays buffered: the next receive gets it */
  else
    rc = frame_finish(c, l, buf, hlen, (size_t)n, RECV_DEADLINE);
  pthread_mutex_unlock(&l->recv_lock);
  return rc;
}

int mp__conn_recv(mp_conn_t *c, void *buf, size_t cap, size_t *len,
                  const mp__deadline_t *deadline) {
  if (!(c = mp__object_open(c, CONN_MAGIC)))
    return MP_EINVAL;
  local_t *l;
  size_t hlen;
  uint64_t n;
  int rc = recv_begin(c, cap, deadline, &l, &hlen, &n);
  if (rc < 0)
    return rc;
  *len = (size_t)n;
  rc = frame_finish(c, l, buf, hlen, (size_t)n, deadline);
  pthread_mutex_unlock(&l->recv_lock);
  return rc;
}

/* ---- fds: reduction.send_handle / recv_handle ------------------------------
 * The machinery (and why every read of a Unix socket keeps the fds that
 * come with it) is in handle.c. */

int mp_conn_send_handle(mp_conn_t *c, int fd) {
  local_t *l;
  if (fd < 0 || !(c = mp__object_open(c, CONN_MAGIC)))
    return MP_EINVAL;
  int rc = local_check(c, LOCAL_WRITABLE, &l);
  if (rc < 0)
    return rc;
  if (!(c->flags & CONN_UNIX))
    return -EOPNOTSUPP;
  uint8_t count = 1; /* Python's bytes([len(fds) % 256]) */
  struct iovec iov = {&count, 1};
  pthread_mutex_lock(&l->send_lock);
  rc = write_all(c, &iov, 1, NULL, fd);
  pthread_mutex_unlock(&l->send_lock);
  return rc;
}

/* Takes the byte send_handle sent (from the read-ahead buffer, where an
 * earlier receive may have put it, or from the fd) and the fd that came
 * with it. Called with recv_lock held. */
static int take_handle(mp_conn_t *c, int *fd) {
  assert(c->flags & CONN_UNIX);
  int rc = buffer_fill(c, 1, NULL);
  if (rc < 0)
    return rc;
  uint8_t count = *buffer_at(c, 0);
  buffer_consume(c, 1);
  int handle = mp__handle_take(c->serial);
  if (handle < 0)
    return -EPROTO; /* a byte that carried no fd: not send_handle's */
  if (count != 1) {
    close(handle);
    return -EPROTO; /* Python's "Len is ... but msg[0] is ..." */
  }
  *fd = handle;
  return 0;
}

int mp_conn_recv_handle(mp_conn_t *c, int *fd) {
  local_t *l;
  if (!fd || !(c = mp__object_open(c, CONN_MAGIC)))
    return MP_EINVAL;
  int rc = local_check(c, LOCAL_READABLE, &l);
  if (rc < 0)
    return rc;
  if (!(c->flags & CONN_UNIX))
    return -EOPNOTSUPP;
  pthread_mutex_lock(&l->recv_lock);
  if (!(atomic_load(&l->state) & LOCAL_OPEN))
    rc = MP_ECLOSED;
  else if (!(atomic_load(&l->state) & LOCAL_READABLE))
    rc = MP_ESTATE;
  else
    rc = take_handle(c, fd);
  pthread_mutex_unlock(&l->recv_lock);
  return rc;
}

/* ---- poll, fileno, state ------------------------------------------------- */

/* Whether a receive has bytes to start from without reading the fd: the
 * peer may have sent nothing more, so the fd alone would not tell. As for
 * the fd (and in Python), any bytes count, also part of a message. */
static bool has_buffered(const mp_conn_t *c) {
  return (c->flags & CONN_READS) && buffered(c) > 0;
}

int mp_conn_poll(mp_conn_t *c, double timeout) {
  if (!(c = mp__object_open(c, CONN_MAGIC)))
    return MP_EINVAL;
  local_t *l;
  int rc = mp__timeout_check(timeout);
  if (rc == 0)
    rc = local_check(c, LOCAL_READABLE, &l);
  if (rc < 0)
    return rc;
  if (has_buffered(c))
    return 1;
  mp__deadline_t d = mp__deadline_in(timeout);
  return mp__wait_fd(c->fd, POLLIN, &d);
}

int mp__conn_wait_fd(mp_conn_t *c, bool *ready_now) {
  if (!(c = mp__object_open(c, CONN_MAGIC)))
    return MP_EINVAL;
  local_t *l = local_find(c, ~0u);
  if (!l)
    return -ENOMEM;
  if (!(atomic_load(&l->state) & LOCAL_OPEN))
    return MP_ECLOSED;
  *ready_now = has_buffered(c);
  return c->fd;
}

int mp_conn_fileno(mp_conn_t *c) {
  bool ignored;
  return mp__conn_wait_fd(c, &ignored);
}

static uint32_t local_state(mp_conn_t *c) {
  local_t *l = local_find(c, ~0u);
  return l ? atomic_load(&l->state) : 0;
}

bool mp_conn_closed(mp_conn_t *c) {
  if (!(c = mp__object_open(c, CONN_MAGIC)))
    return true; /* nothing can be done with it */
  return !(local_state(c) & LOCAL_OPEN);
}

bool mp_conn_readable(mp_conn_t *c) {
  if (!(c = mp__object_open(c, CONN_MAGIC)))
    return false;
  return local_state(c) & LOCAL_READABLE;
}

bool mp_conn_writable(mp_conn_t *c) {
  if (!(c = mp__object_open(c, CONN_MAGIC)))
    return false;
  return local_state(c) & LOCAL_WRITABLE;
}

void mp_conn_set_max_message(mp_conn_t *c, size_t max_len) {
  if (!(c = mp__object_open(c, CONN_MAGIC)))
    return;
  atomic_store(&c->max_message, (uint64_t)max_len);
}

/* ---- close, free ------------------------------------------------------------
 */

/* close of an opened c. */
static int conn_close(mp_conn_t *c) {
  local_t *l = local_find(c, ~0u);
  if (!l)
    return -ENOMEM;
  /* Only the thread that clears LOCAL_OPEN closes the fd. */
  if (atomic_fetch_and(&l->state, ~(uint32_t)LOCAL_OPEN) & LOCAL_OPEN) {
    mp__inherit_fd_remove(c->fd);
    close(c->fd); /* on Linux the fd is gone even if this fails */
    if (c->flags & CONN_UNIX)
      mp__handle_drop(c->serial); /* fds received and never taken */
  }
  return 0;
}

int mp_conn_close(mp_conn_t *c) {
  if (!(c = mp__object_open(c, CONN_MAGIC)))
    return MP_EINVAL;
  return conn_close(c);
}

void mp_conn_free(mp_conn_t *handle) {
  if (!handle)
    return;
  mp_conn_t *c = mp__object_open(handle, CONN_MAGIC);
  if (!c)
    mp__object_retire(handle, CONN_MAGIC, "conn"); /* aborts with a message */
  conn_close(c);
  local_forget(c);
  if (c->creator == (int32_t)getpid())
    mp__shm_free(mp__object_retire(handle, CONN_MAGIC, "conn"));
}

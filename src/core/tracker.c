/* The resource tracker: named resources (shm segments, Unix socket files)
 * that processes of the family created are unlinked once every process
 * that could still use them is gone, however they ended (SIGKILL too), as
 * Python's resource_tracker does.
 *
 * The tracker is a helper process started at the first registration (no
 * named resource, no helper). It holds one end of a SOCK_SEQPACKET
 * socketpair; the other end is in every process of the family from then
 * on: fork children inherit it, spawned and forkserver children get it at
 * the same number (mp__inherit_fd_add) and find it through the arena
 * (MP__ROOT_TRACKER: its number and identity). Processes send it one
 * message per registration ("R" or "U", the kind, the name). When the last
 * process holding the other end is gone the tracker reads the end of the
 * stream, unlinks what is still registered, and exits.
 *
 * The tracker is forked twice (it is no child of anybody in the family,
 * nothing waits for it), sits in a session of its own (a terminal's Ctrl-C
 * or a kill of the family's process group does not reach it), ignores
 * SIGINT, SIGTERM and SIGHUP, and closes every other fd. Forked from a
 * process that may have threads, it does only async-signal-safe work:
 * system calls on memory it maps itself.
 *
 * A process started before the first registration (a spawned child, the
 * forkserver) does not hold the tracker open; when such a process
 * registers a resource itself it gets a tracker of its own. */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compat.h"
#include "core/internal.h"

#define TRACKER_MAGIC 0x6d707472u /* "mptr" */
#define MESSAGE_MAX   (2 + PATH_MAX)
#define ENTRIES_MAX   4096

/* The family's tracker, behind MP__ROOT_TRACKER. */
typedef struct tracker_root {
  uint32_t magic;
  int32_t fd; /* the family's end, the same number in every holder */
  uint64_t dev, ino;
} tracker_root_t;

static struct {
  pthread_mutex_t lock; /* guards fd while it is being set up */
  _Atomic int fd;       /* this process's end, -1 until known */
} self = {PTHREAD_MUTEX_INITIALIZER, -1};

/* ---- the tracker process ---------------------------------------------------
 */

typedef struct entry {
  char kind;
  char name[MESSAGE_MAX];
} entry_t;

static void close_all_but(int keep) {
  if (syscall(SYS_close_range, 0, keep - 1, 0) == 0 &&
      syscall(SYS_close_range, keep + 1, ~0u, 0) == 0)
    return;
  long max = sysconf(_SC_OPEN_MAX);
  for (long fd = 0; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
    if (fd != keep)
      close((int)fd);
}

static void unlink_entry(const entry_t *e) {
  if (e->kind == MP__RESOURCE_SOCKET) {
    unlink(e->name);
    return;
  }
  char path[sizeof "/dev/shm" + MESSAGE_MAX];
  size_t len = strlen(e->name);
  memcpy(path, "/dev/shm", 8);
  memcpy(path + 8, e->name, len + 1); /* the name starts with '/' */
  unlink(path);
}

/* Adds or removes one registration. */
static void apply(entry_t *table, size_t *count, const char *msg, size_t n) {
  if (n < 3 || n >= MESSAGE_MAX)
    return;
  char kind = msg[1];
  for (size_t i = 0; i < *count; i++) {
    if (table[i].kind == kind && strlen(table[i].name) == n - 2 &&
        memcmp(table[i].name, msg + 2, n - 2) == 0) {
      if (msg[0] == 'U')
        table[i] = table[--*count];
      return;
    }
  }
  if (msg[0] != 'R' || *count == ENTRIES_MAX)
    return;
  table[*count].kind = kind;
  memcpy(table[*count].name, msg + 2, n - 2);
  table[*count].name[n - 2] = '\0';
  ++*count;
}

_Noreturn static void tracker_main(int fd) {
  setsid();
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  close_all_but(fd);
  entry_t *table =
      mmap(NULL, ENTRIES_MAX * sizeof(entry_t), PROT_READ | PROT_WRITE,
           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  size_t count = 0;
  char msg[MESSAGE_MAX];
  for (;;) {
    ssize_t n = recv(fd, msg, sizeof msg, 0);
    if (n == 0 || (n < 0 && errno != EINTR))
      break; /* every holder is gone */
    if (n > 0 && table != MAP_FAILED)
      apply(table, &count, msg, (size_t)n);
  }
  for (size_t i = 0; i < count; i++)
    unlink_entry(&table[i]);
  _exit(0);
}

/* Starts a tracker on a new socketpair: our end, or -errno. */
static int start_tracker(void) {
  int sv[2];
  if (mp__fd_pair_high(
          socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), sv) < 0)
    return -errno;
  pid_t pid = fork();
  if (pid == 0) {
    if (fork() == 0)
      tracker_main(sv[1]);
    _exit(0);
  }
  int err = pid < 0 ? errno : 0;
  close(sv[1]);
  if (pid > 0)
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
      ;
  if (err) {
    close(sv[0]);
    return -err;
  }
  return sv[0];
}

/* ---- the family's side -----------------------------------------------------
 */

static bool same_file(int fd, const tracker_root_t *r) {
  struct stat st;
  return fstat(fd, &st) == 0 && (uint64_t)st.st_dev == r->dev &&
         (uint64_t)st.st_ino == r->ino;
}

/* Publishes fd as the family's tracker if there is none yet. */
static void publish(int fd) {
  _Atomic(void *) *root = mp__shm_root(MP__ROOT_TRACKER);
  struct stat st;
  if (!root || atomic_load(root) || fstat(fd, &st) < 0)
    return;
  tracker_root_t *r = mp__shm_alloc(sizeof *r);
  if (!r)
    return;
  *r = (tracker_root_t){TRACKER_MAGIC, fd, (uint64_t)st.st_dev,
                        (uint64_t)st.st_ino};
  void *expected = NULL;
  if (!atomic_compare_exchange_strong(root, &expected, r))
    mp__shm_free(r);
}

/* This process's end: the one it holds of the family's tracker, else
 * (when start is set) a new one. -errno when there is none. */
static int tracker_fd(bool start) {
  int fd = atomic_load(&self.fd);
  if (fd >= 0)
    return fd;
  pthread_mutex_lock(&self.lock);
  fd = atomic_load(&self.fd);
  _Atomic(void *) *root = fd < 0 ? mp__shm_root(MP__ROOT_TRACKER) : NULL;
  tracker_root_t *r = root ? atomic_load(root) : NULL;
  if (fd < 0 && r && r->magic == TRACKER_MAGIC && same_file(r->fd, r) &&
      mp__inherit_fd_add(r->fd) == 0)
    fd = r->fd; /* inherited from the process that started it */
  if (fd < 0 && start && (fd = start_tracker()) >= 0) {
    if (mp__inherit_fd_add(fd) < 0) {
      close(fd);
      fd = -ENOMEM;
    } else {
      publish(fd);
    }
  }
  if (fd >= 0)
    atomic_store(&self.fd, fd);
  pthread_mutex_unlock(&self.lock);
  return fd < 0 && !start ? -ENOENT : fd;
}

static int send_message(char op, enum mp__resource kind, const char *name) {
  char msg[MESSAGE_MAX];
  size_t len = strlen(name);
  if (len + 2 > sizeof msg)
    return -ENAMETOOLONG;
  msg[0] = op;
  msg[1] = (char)kind;
  memcpy(msg + 2, name, len);
  int fd = tracker_fd(op == 'R');
  if (fd < 0)
    return op == 'R' ? fd : 0;
  ssize_t n;
  do
    n = send(fd, msg, len + 2, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : 0;
}

int mp__track(enum mp__resource kind, const char *name) {
  return send_message('R', kind, name);
}

void mp__untrack(enum mp__resource kind, const char *name) {
  send_message('U', kind, name);
}

/* File descriptors carried by a Unix-domain connection (SCM_RIGHTS), the
 * machinery under mp_conn_send_handle / mp_conn_recv_handle (conn.c).
 *
 * Python's multiprocessing.reduction.send_handle sends one data byte, the
 * number of fds modulo 256, with the fds as SCM_RIGHTS ancillary data,
 * outside the message framing; on Linux nobody acknowledges it (only macOS
 * does). recv_handle reads that one byte with recvmsg.
 *
 * A connection reads ahead (conn.c), so the byte that carries an fd may
 * arrive in the middle of a read meant for messages. A plain read() would
 * make the kernel close the fds that came with it, so every read of a Unix
 * socket connection goes through mp__handle_recv, which keeps what came
 * in a per-process stash under the connection's key until recv_handle
 * takes it (or the connection is closed here: then they are closed). The
 * kernel ends a read right after the bytes that carried fds, so the fds
 * are stashed in the order of their bytes. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn/internal.h"

/* Room for the fds of one read: Python sends one per byte; more than this
 * many in one read are closed by the kernel (MSG_CTRUNC). */
#define HANDLES_PER_READ 16

typedef struct stashed {
  uint64_t key;
  int fd;
} stashed_t;

static struct {
  pthread_mutex_t lock; /* guards the array */
  stashed_t *items;
  size_t n, cap;
} stash = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void atfork_prepare(void) {
  pthread_mutex_lock(&stash.lock);
}

static void atfork_parent(void) {
  pthread_mutex_unlock(&stash.lock);
}

/* The child has the same fds (fork copies them) and one thread. */
static void atfork_child(void) {
  pthread_mutex_init(&stash.lock, NULL);
}

static mp__atfork_t handle_atfork = {
    .prepare = atfork_prepare, .parent = atfork_parent, .child = atfork_child};

/* Keeps fd under key; closes it when there is no memory for it. */
static void stash_put(uint64_t key, int fd) {
  mp__atfork_register(&handle_atfork);
  pthread_mutex_lock(&stash.lock);
  if (stash.n == stash.cap) {
    size_t cap = stash.cap ? 2 * stash.cap : 8;
    stashed_t *items = realloc(stash.items, cap * sizeof *items);
    if (!items) {
      pthread_mutex_unlock(&stash.lock);
      close(fd);
      return;
    }
    stash.items = items;
    stash.cap = cap;
  }
  stash.items[stash.n++] = (stashed_t){.key = key, .fd = fd};
  pthread_mutex_unlock(&stash.lock);
}

int mp__handle_take(uint64_t key) {
  int fd = -1;
  pthread_mutex_lock(&stash.lock);
  for (size_t i = 0; i < stash.n; i++) {
    if (stash.items[i].key == key) {
      fd = stash.items[i].fd;
      memmove(&stash.items[i], &stash.items[i + 1],
              (stash.n - i - 1) * sizeof stash.items[0]);
      stash.n--;
      break;
    }
  }
  pthread_mutex_unlock(&stash.lock);
  return fd;
}

void mp__handle_drop(uint64_t key) {
  int fd;
  while ((fd = mp__handle_take(key)) >= 0)
    close(fd);
}

/* Stashes the fds of every SCM_RIGHTS header of msg. */
static void stash_control(uint64_t key, struct msghdr *msg) {
  for (struct cmsghdr *h = CMSG_FIRSTHDR(msg); h; h = CMSG_NXTHDR(msg, h)) {
    if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
      continue;
    size_t count = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof fd);
      stash_put(key, fd);
    }
  }
}

ssize_t mp__handle_recv(int fd, uint64_t key, void *buf, size_t n, int flags) {
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(HANDLES_PER_READ * sizeof(int))];
  } control;
  struct iovec iov = {.iov_base = buf, .iov_len = n};
  struct msghdr msg = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = control.buf,
                       .msg_controllen = sizeof control.buf};
  ssize_t r = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | flags);
  if (r >= 0 && msg.msg_controllen > 0)
    stash_control(key, &msg);
  return r;
}

ssize_t mp__handle_send(int fd, const void *buf, size_t n, int handle) {
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } control;
  memset(&control, 0, sizeof control);
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = n};
  struct msghdr msg = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = control.buf,
                       .msg_controllen = sizeof control.buf};
  struct cmsghdr *h = CMSG_FIRSTHDR(&msg);
  h->cmsg_level = SOL_SOCKET;
  h->cmsg_type = SCM_RIGHTS;
  h->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(h), &handle, sizeof handle);
  return sendmsg(fd, &msg, MSG_NOSIGNAL);
}

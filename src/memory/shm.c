/* Named shared memory (Python's multiprocessing.shared_memory.SharedMemory):
 * POSIX shm segments in /dev/shm, named as Python names them so that either
 * language attaches to the other's segments. A handle is process-local
 * memory; the file descriptor is closed once the segment is mapped (the
 * mapping keeps it alive), so attaching costs no descriptor. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/internal.h"

#define RANDOM_PREFIX "mproc_"

struct mp_shm {
  void *buf;
  size_t size;
  char path[NAME_MAX + 2]; /* "/" + name, as shm_open wants it */
};

/* "/name" from name or "/name": 0, or -EINVAL / -ENAMETOOLONG. */
static int shm_path(const char *name, char *path, size_t cap) {
  if (!name)
    return -EINVAL;
  if (name[0] == '/')
    name++;
  size_t len = strlen(name);
  if (len == 0 || strchr(name, '/'))
    return -EINVAL;
  if (len > NAME_MAX || len + 2 > cap)
    return -ENAMETOOLONG;
  path[0] = '/';
  memcpy(path + 1, name, len + 1);
  return 0;
}

/* A random name nobody uses (retried on EEXIST by the caller). */
static void random_path(char *path, size_t cap) {
  unsigned char bytes[8] = {0};
  if (mp__random(bytes, sizeof bytes) < 0) {
    uint64_t t = mp__now_ns() ^ ((uint64_t)getpid() << 32);
    memcpy(bytes, &t, sizeof bytes);
  }
  int n = snprintf(path, cap, "/" RANDOM_PREFIX);
  for (size_t i = 0; i < sizeof bytes; i++)
    n += snprintf(path + n, cap - (size_t)n, "%02x", bytes[i]);
}

/* Creates the segment and reserves its memory. The fd, or -errno. */
static int create_segment(const char *path, size_t size) {
  int fd =
      mp__fd_high(shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (fd < 0)
    return -errno;
  /* Reserving the pages makes a full /dev/shm an error now instead of a
   * SIGBUS at the first touch of a page that cannot be had. */
  int err =
      size > (size_t)INT64_MAX ? EFBIG : posix_fallocate(fd, 0, (off_t)size);
  if (err) {
    close(fd);
    shm_unlink(path);
    return -err;
  }
  return fd;
}

/* Opens (or creates) the segment, filling s->path. The fd, or -errno. */
static int open_fd(mp_shm_t *s, const char *name, bool create, size_t size) {
  if (create && size == 0)
    return -EINVAL;
  if (create && !name) {
    for (;;) {
      random_path(s->path, sizeof s->path);
      int fd = create_segment(s->path, size);
      if (fd != -EEXIST)
        return fd;
    }
  }
  int rc = shm_path(name, s->path, sizeof s->path);
  if (rc < 0)
    return rc;
  if (create)
    return create_segment(s->path, size);
  int fd = mp__fd_high(shm_open(s->path, O_RDWR | O_CLOEXEC, 0));
  return fd < 0 ? -errno : fd;
}

mp_shm_t *mp_shm_open(const char *name, bool create, size_t size) {
  mp_shm_t *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  int fd = open_fd(s, name, create, size);
  int err = fd < 0 ? -fd : 0;
  struct stat st;
  if (!err && fstat(fd, &st) < 0)
    err = errno;
  if (!err && st.st_size == 0)
    err = EINVAL; /* Python: cannot mmap an empty file */
  if (!err) {
    s->size = (size_t)st.st_size;
    s->buf = mmap(NULL, s->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (s->buf == MAP_FAILED)
      err = errno;
  }
  if (fd >= 0)
    close(fd);
  if (err) {
    if (create && fd >= 0)
      shm_unlink(s->path); /* made here: leave nothing behind */
    free(s);
    errno = err;
    return NULL;
  }
  /* Made here: unlinked when the family is gone, unless the segment is
   * unlinked or untracked before (best effort: without a tracker it stays,
   * as before). */
  if (create)
    mp__track(MP__RESOURCE_SHM, s->path);
  return s;
}

void *mp_shm_buf(const mp_shm_t *s) {
  if (!s)
    return NULL;
  return s->buf;
}

size_t mp_shm_size(const mp_shm_t *s) {
  if (!s)
    return 0;
  return s->size;
}

const char *mp_shm_name(const mp_shm_t *s) {
  if (!s)
    return NULL;
  return s->path + 1;
}

static int unlink_path(const char *path) {
  if (shm_unlink(path) < 0)
    return -errno;
  mp__untrack(MP__RESOURCE_SHM, path);
  return 0;
}

int mp_shm_unlink(const mp_shm_t *s) {
  if (!s)
    return MP_EINVAL;
  return unlink_path(s->path);
}

int mp_shm_untrack(const mp_shm_t *s) {
  if (!s)
    return MP_EINVAL;
  mp__untrack(MP__RESOURCE_SHM, s->path);
  return 0;
}

int mp_shm_unlink_name(const char *name) {
  char path[NAME_MAX + 2];
  int rc = shm_path(name, path, sizeof path);
  if (rc < 0)
    return rc;
  return unlink_path(path);
}

int mp_shm_close(mp_shm_t *s) {
  if (!s)
    return 0;
  int rc = munmap(s->buf, s->size) < 0 ? -errno : 0;
  free(s);
  return rc;
}

/* The start data of a spawned child or a forkserver (see start.h).
 *
 * The parent writes everything the child needs (name, identity, authkey,
 * the arena, the target and its arg bytes) into a block of the arena (a
 * spawned child, up to MP__START_BLOCK_MAX) or a memfd (a forkserver, its
 * children, and bigger start data), and passes it, with the arena and the
 * other fds the child needs, at fixed fd numbers; the environment variable
 * MPROC_SPAWN names the block or the memfd. In the child, a constructor
 * reads the start data before main() runs and maps the arena at the
 * parent's address before anything else can take that range; mp_main(),
 * first thing in main(), then runs the child (main.c).
 *
 * What a spawned child costs beyond loading the program is what this file,
 * spawn.c and main.c make it do: measured against the program's own exec
 * (bench_process's floor rows), every system call, lazy binding and page it
 * touches shows. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "compat.h"
#include "process/start.h"

#define START_MAGIC   0x6d707374u /* "mpst" */
#define START_VERSION 2u

static int write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Reads len bytes at offset (or, offset -1, where the fd is). */
static int pread_all(int fd, void *buf, size_t len, uint64_t offset) {
  char *p = buf;
  while (len > 0) {
    ssize_t n = offset == UINT64_MAX ? read(fd, p, len)
                                     : pread(fd, p, len, (off_t)offset);
    if (n > 0 && offset != UINT64_MAX)
      offset += (uint64_t)n;
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return n == 0 ? MP_EINVAL : -errno;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int read_all(int fd, void *buf, size_t len) {
  return pread_all(fd, buf, len, UINT64_MAX);
}

/* The fds a child needs besides 0-2: the arena, the parent's pidfd, the
 * channel, and the registered ones (from index *user_first on). Returns
 * the count; the list is malloc'd. */
static int collect_fds(int arena_fd, int parent_pidfd, int channel_fd,
                       int **out, uint32_t *user_first) {
  int user = mp__inherit_fd_copy(out, 3);
  if (user < 0)
    return user;
  /* The forkserver (the one with a channel) holds none of the user's fds:
   * a pipe end kept open there would hide the peer's EOF forever. */
  if (channel_fd >= 0)
    user = 0;
  int *fds = *out, n = 0;
  fds[n++] = arena_fd;
  if (parent_pidfd >= 0) /* none without pidfds */
    fds[n++] = parent_pidfd;
  if (channel_fd >= 0)
    fds[n++] = channel_fd;
  memmove(fds + n, fds + 3, (size_t)user * sizeof *fds);
  *user_first = (uint32_t)n;
  return n + user;
}

/* A child's start data in parts: the header, the fd numbers (malloc'd) and
 * the payload (the caller's bytes, or the malloc'd preload list). */
typedef struct start_parts {
  mp__start_header_t h;
  int *fds;
  const void *payload;
  char *preload; /* freed with the parts */
} start_parts_t;

static void parts_free(start_parts_t *parts) {
  free(parts->preload);
  free(parts->fds);
}

static int describe(const mp_process_t *p, const mp_process_t *self,
                    int channel_fd, start_parts_t *out) {
  mp__start_header_t h = {.magic = START_MAGIC, .version = START_VERSION};
  h.channel_fd = channel_fd;
  uintptr_t address;
  int rc = mp__arena_info(&h.arena_fd, &address, &h.arena_size);
  if (rc < 0)
    return rc;
  h.arena_address = address;
  h.parent_pid = getpid();
  h.debug_level = atomic_load(&mp__debug_level);
  h.parent_pidfd = mp__self_pidfd(); /* -ENOSYS without pidfds */
  if (h.parent_pidfd < 0)
    h.parent_pidfd = -1;
  /* As Python's _bootstrap: a child started through a context has that
   * context's method as its default, others their parent's (the fork
   * method when the default is unusable: the start refuses then). */
  const mp_context_t *method = p && p->ctx ? p->ctx : mp__default_context();
  h.default_method = (int32_t)(method ? method->method : MP__METHOD_FORK);
  const mp_process_t *described = p ? p : self;
  h.daemon = p && p->daemon;
  h.end_with_parent = p && p->end_with_parent;
  h.depth = described->depth;
  memcpy(h.identity, described->identity, sizeof h.identity);
  memcpy(h.authkey, described->authkey, sizeof h.authkey);
  snprintf(h.name, sizeof h.name, "%s", p ? p->name : "ForkServer");
  snprintf(h.parent_name, sizeof h.parent_name, "%s", self->name);
  char *preload = NULL; /* the forkserver's payload: the libraries to load */
  if (!p) {
    size_t size;
    rc = mp__forkserver_preload(&preload, &size);
    h.payload_size = size;
  } else if (p->type) {
    rc = mp__fn_encode(p->type, &h.type);
    h.payload_size = p->type->data_size;
  } else {
    rc = mp__fn_encode((const void *)p->target, &h.target);
    h.payload_size = p->arg_size;
  }
  int *fds = NULL;
  int n = rc < 0 ? rc
                 : collect_fds(h.arena_fd, h.parent_pidfd, channel_fd, &fds,
                               &h.user_fds);
  if (n < 0) {
    free(preload);
    return n;
  }
  h.fd_count = (uint32_t)n;
  *out = (start_parts_t){h, fds,
                         !p        ? preload
                         : p->type ? p->data
                                   : p->arg,
                         preload};
  return 0;
}

int mp__start_data_write(const mp_process_t *p, const mp_process_t *self,
                         int channel_fd, int **fds_out, int *fd_count) {
  start_parts_t parts;
  int rc = describe(p, self, channel_fd, &parts);
  if (rc < 0)
    return rc;
  int fd = mp__fd_high(memfd_create("mproc-start", MFD_CLOEXEC));
  rc = fd < 0 ? -errno : 0;
  if (rc < 0 || (rc = write_all(fd, &parts.h, sizeof parts.h)) < 0 ||
      (rc = write_all(fd, parts.fds, parts.h.fd_count * sizeof(int))) < 0 ||
      (rc = write_all(fd, parts.payload, (size_t)parts.h.payload_size)) < 0) {
    parts_free(&parts);
    if (fd >= 0)
      close(fd);
    return rc;
  }
  free(parts.preload);
  lseek(fd, 0, SEEK_SET);
  *fds_out = parts.fds;
  *fd_count = (int)parts.h.fd_count;
  return fd;
}

int mp__start_data_put(const mp_process_t *p, const mp_process_t *self,
                       void **block_out, char *marker, size_t marker_size,
                       int **fds_out, int *fd_count) {
  start_parts_t parts;
  int rc = describe(p, self, -1, &parts);
  if (rc < 0)
    return rc;
  size_t fds_size = parts.h.fd_count * sizeof(int), size;
  if (!mp__size(1, sizeof parts.h + fds_size, (size_t)parts.h.payload_size,
                &size))
    size = SIZE_MAX; /* far too big: for the memfd to refuse */
  char *block = size <= MP__START_BLOCK_MAX ? mp__shm_alloc(size) : NULL;
  if (!block) {
    parts_free(&parts);
    return size > MP__START_BLOCK_MAX ? -E2BIG : -ENOMEM;
  }
  memcpy(block, &parts.h, sizeof parts.h);
  memcpy(block + sizeof parts.h, parts.fds, fds_size);
  if (parts.h.payload_size > 0) /* no arg: payload may be NULL */
    memcpy(block + sizeof parts.h + fds_size, parts.payload,
           (size_t)parts.h.payload_size);
  free(parts.preload);
  snprintf(marker, marker_size, "c:%d:%llu:%llu:%llu", (int)parts.h.arena_fd,
           (unsigned long long)parts.h.arena_address,
           (unsigned long long)parts.h.arena_size,
           (unsigned long long)((uintptr_t)block - parts.h.arena_address));
  *block_out = block;
  *fds_out = parts.fds;
  *fd_count = (int)parts.h.fd_count;
  return 0;
}

/* What a child learned from its start data, until mp_main runs it. */
static struct {
  int error; /* reading the start data failed */
  mp__start_header_t header;
  void *payload;
  int *fds;
} child;

/* Closes the fds from `first` to `last`: one close_range, or, where the
 * kernel lacks it (before 5.9) or a sandbox refuses it, a close of each
 * open one found in /proc/self/fd (or of every number up to the fd limit
 * without /proc). Never leaves one open silently. */
static void close_fds(unsigned first, unsigned last) {
  static bool no_close_range;
  if (!no_close_range) {
    if (syscall(SYS_close_range, first, last, 0) == 0 ||
        !MP__UNSUPPORTED(errno))
      return;
    no_close_range = true;
  }
  DIR *dir = opendir("/proc/self/fd");
  if (!dir) {
    struct rlimit lim;
    unsigned max =
        getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < (rlim_t)1 << 20
            ? (unsigned)lim.rlim_cur
            : 1u << 20;
    for (unsigned fd = first; fd <= last && fd < max; fd++)
      close((int)fd);
    return;
  }
  int own = dirfd(dir);
  for (struct dirent *e; (e = readdir(dir));) {
    char *end;
    unsigned long fd = strtoul(e->d_name, &end, 10);
    if (*end == '\0' && end != e->d_name && (int)fd != own && fd >= first &&
        fd <= last)
      close((int)fd);
  }
  closedir(dir);
}

/* Closes every fd above 2 that is not in keep[] (sorted ascending), with
 * one close_range per gap: the cost does not grow with the number of fds
 * the parent had open. */
static void close_all_but(int *keep, int n) {
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++)
      if (keep[j] < keep[i]) {
        int t = keep[i];
        keep[i] = keep[j];
        keep[j] = t;
      }
  unsigned first = 3;
  for (int i = 0; i < n; i++) {
    if (keep[i] < 3)
      continue;
    if ((unsigned)keep[i] > first)
      close_fds(first, (unsigned)keep[i] - 1);
    first = (unsigned)keep[i] + 1;
  }
  close_fds(first, ~0u);
}

int mp__start_data_fd(int index) {
  return index >= 0 && (uint32_t)index < child.header.fd_count
             ? child.fds[index]
             : -1;
}

void mp__start_data_close_others(void) {
  int n = (int)child.header.fd_count;
  int *keep = malloc(((size_t)n + 1) * sizeof *keep);
  if (!keep)
    return;
  memcpy(keep, child.fds, (size_t)n * sizeof *keep);
  close_all_but(keep, n);
  free(keep);
}

/* Takes a header read from a parent: checked, and room made for the fd
 * numbers and payload that follow it. In a child of the forkserver, the
 * server's own start data is here: it is replaced. */
static int take_header(const mp__start_header_t *from) {
  if (from->magic != START_MAGIC || from->version != START_VERSION ||
      from->fd_count > 4096 || from->user_fds > from->fd_count)
    return MP_EINVAL;
  mp__start_header_t *h = &child.header;
  *h = *from;
  free(child.fds);
  free(child.payload);
  child.fds = malloc((h->fd_count + 1) * sizeof(int));
  child.payload = h->payload_size < MP__SIZE_MAX
                      ? malloc(h->payload_size ? (size_t)h->payload_size : 1)
                      : NULL;
  return child.fds && child.payload ? 0 : -ENOMEM;
}

/* The steps once the start data is in (rc 0) or not (rc < 0): what the
 * child does not need is closed, its checking mode set, and the user's fds
 * registered again, so that they reach its own children too (a connection
 * passed on to a grandchild). The result is kept for mp_main. */
static int take_rest(int rc, bool close_others) {
  const mp__start_header_t *h = &child.header;
  if (rc == 0 && close_others)
    mp__start_data_close_others();
  if (rc == 0)
    rc = mp__arena_attach(h->arena_fd, h->arena_address, h->arena_size);
  if (rc == 0 && h->debug_level > 0)
    mp_set_debug(h->debug_level);
  for (uint32_t i = h->user_fds; rc == 0 && i < h->fd_count; i++)
    rc = mp__inherit_fd_add(child.fds[i]);
  child.error = rc;
  return rc;
}

int mp__start_data_read(int fd, bool close_others) {
  mp__start_header_t h;
  int rc = read_all(fd, &h, sizeof h);
  if (rc == 0)
    rc = take_header(&h);
  if (rc == 0)
    rc = read_all(fd, child.fds, child.header.fd_count * sizeof(int));
  if (rc == 0)
    rc = read_all(fd, child.payload, child.header.payload_size);
  close(fd);
  return take_rest(rc, close_others);
}

/* A spawned child's start data in the arena (see mp__start_data_put): the
 * arena is mapped, and the block, checked to lie inside it, is read with
 * pread from the arena's file. Not through the mapping: the first touch of
 * a page of it costs a fault, page tables and their freeing at exit, more
 * than all the rest the child does for a trivial target. The parent frees
 * the block once it has reaped this child. */
static int read_from_arena(int fd, uint64_t address, uint64_t size,
                           uint64_t offset) {
  /* No fstat: what is not an arena fails the mapping, or the magic's
   * pread (ESPIPE on a pipe or tty: it never blocks), or its value. */
  if (fd <= STDERR_FILENO || offset > size ||
      size - offset < sizeof(mp__start_header_t))
    return MP_EINVAL;
  int rc = mp__arena_attach(fd, (uintptr_t)address, size);
  mp__start_header_t h;
  if (rc == 0)
    rc = pread_all(fd, &h, sizeof h, offset);
  if (rc == 0)
    rc = take_header(&h);
  uint64_t room = size - offset - sizeof h;
  uint64_t fds_size = child.header.fd_count * sizeof(int);
  if (rc == 0 && (room < fds_size || room - fds_size < h.payload_size))
    rc = MP_EINVAL;
  if (rc == 0)
    rc = pread_all(fd, child.fds, (size_t)fds_size, offset + sizeof h);
  if (rc == 0)
    rc = pread_all(fd, child.payload, (size_t)h.payload_size,
                   offset + sizeof h + fds_size);
  return take_rest(rc, true);
}

const mp__start_header_t *mp__start_data(void **payload, int *error) {
  *payload = child.payload;
  *error = child.error;
  return &child.header;
}

/* The last line of defence against a fork bomb: a program started as a
 * child (it has the marker) whose start data cannot be read must not go on
 * into main(), which would start children again. */
static _Noreturn void start_data_missing(const char *marker, int rc) {
  fprintf(stderr,
          "mproc: this process was started as a child (" MP__START_ENV
          "=%s) but its start data cannot be read (%s): it exits with status "
          "%d without running main()\n",
          marker, mp_strerror(rc), MP__EXIT_START_FAILED);
  _exit(MP__EXIT_START_FAILED);
}

/* The numbers of the marker after its mode: "<mode>:<n>[:<n>...]", each
 * unsigned decimal. Returns how many were read (at most max), or -1 when
 * the marker has another form. Without stdio: its code would be faulted in
 * by every child. */
static int marker_numbers(const char *marker, uint64_t *out, int max) {
  int count = 0;
  for (const char *c = marker + 1; *c; count++) {
    if (*c++ != ':' || count == max || *c < '0' || *c > '9')
      return -1;
    uint64_t n = 0;
    for (; *c >= '0' && *c <= '9'; c++) {
      if (n > (UINT64_MAX - 9) / 10)
        return -1;
      n = n * 10 + (uint64_t)(*c - '0');
    }
    out[count] = n;
  }
  return count;
}

/* Runs before main() in every program linked with mproc. Outside a spawned
 * child it only looks at the environment. */
__attribute__((constructor)) static void start_data_constructor(void) {
  const char *marker = getenv(MP__START_ENV);
  if (!marker)
    return;
  char copy[96]; /* for the message: the environment is changed below */
  size_t len = 0;
  for (; marker[len] && len < sizeof copy - 1; len++)
    copy[len] = marker[len];
  copy[len] = 0;
  char mode = copy[0];
  uint64_t n[4];
  int count = marker_numbers(copy, n, 4);
  /* The marker is for this program only: not for programs it runs. */
  unsetenv(MP__START_ENV);
  int rc = MP_EINVAL;
  struct stat st;
  if (count == 4 && mode == 'c' && n[0] <= INT32_MAX) {
    mp__boot_set_role(MP__BOOT_CHILD);
    rc = read_from_arena((int)n[0], n[1], n[2], n[3]);
  } else if (count == 1 && (mode == 'c' || mode == 's') && n[0] <= INT32_MAX &&
             n[0] > STDERR_FILENO && fstat((int)n[0], &st) == 0 &&
             S_ISREG(st.st_mode)) {
    /* The start data is a memfd (a regular file) above fd 2: anything
     * else (a tty, a pipe, nothing) is not ours, and reading it could
     * block. */
    mp__boot_set_role(mode == 's' ? MP__BOOT_SERVER : MP__BOOT_CHILD);
    rc = mp__start_data_read((int)n[0], true);
  }
  if (rc < 0)
    start_data_missing(copy, rc);
}

/* The start data of a spawned child or a forkserver (see start.h).
 *
 * The parent writes everything the child needs (name, identity, authkey,
 * the arena, the target and its arg bytes) into a memfd and passes it, with
 * the arena and the other fds the child needs, at fixed fd numbers; the
 * environment variable MPROC_SPAWN names the memfd. In the child, a
 * constructor reads the start data before main() runs and maps the arena at
 * the parent's address before anything else can take that range; mp_main(),
 * first thing in main(), then runs the child (main.c). */
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

static int read_all(int fd, void *buf, size_t len) {
  char *p = buf;
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return n == 0 ? MP_EINVAL : -errno;
    p += n;
    len -= (size_t)n;
  }
  return 0;
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

int mp__start_data_write(const mp_process_t *p, const mp_process_t *self,
                         int channel_fd, int **fds_out, int *fd_count) {
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

  int fd = mp__fd_high(memfd_create("mproc-start", MFD_CLOEXEC));
  rc = fd < 0 ? -errno : 0;
  const void *payload = !p ? preload : p->type ? p->data : p->arg;
  if (rc < 0 || (rc = write_all(fd, &h, sizeof h)) < 0 ||
      (rc = write_all(fd, fds, (size_t)n * sizeof *fds)) < 0 ||
      (rc = write_all(fd, payload, (size_t)h.payload_size)) < 0) {
    free(preload);
    free(fds);
    if (fd >= 0)
      close(fd);
    return rc;
  }
  free(preload);
  lseek(fd, 0, SEEK_SET);
  *fds_out = fds;
  *fd_count = n;
  return fd;
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

int mp__start_data_read(int fd, bool close_others) {
  mp__start_header_t *h = &child.header;
  int rc = read_all(fd, h, sizeof *h);
  if (rc == 0 && (h->magic != START_MAGIC || h->version != START_VERSION))
    rc = MP_EINVAL;
  if (rc == 0 && (h->fd_count > 4096 || h->user_fds > h->fd_count))
    rc = MP_EINVAL;
  if (rc == 0) {
    /* In a child of the forkserver, the server's own start data is here:
     * it is replaced. */
    free(child.fds);
    free(child.payload);
    child.fds = malloc((h->fd_count + 1) * sizeof(int));
    child.payload = malloc(h->payload_size ? h->payload_size : 1);
    if (!child.fds || !child.payload)
      rc = -ENOMEM;
  }
  if (rc == 0)
    rc = read_all(fd, child.fds, h->fd_count * sizeof(int));
  if (rc == 0)
    rc = read_all(fd, child.payload, h->payload_size);
  close(fd);
  if (rc == 0 && close_others)
    mp__start_data_close_others();
  if (rc == 0)
    rc = mp__arena_attach(h->arena_fd, h->arena_address, h->arena_size);
  if (rc == 0 && h->debug_level > 0)
    mp_set_debug(h->debug_level);
  /* The user's fds are open here as they were in the parent: registered
   * again, they reach this child's own children too (a connection passed
   * on to a grandchild). */
  for (uint32_t i = h->user_fds; rc == 0 && i < h->fd_count; i++)
    rc = mp__inherit_fd_add(child.fds[i]);
  child.error = rc;
  return rc;
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

/* Runs before main() in every program linked with mproc. Outside a spawned
 * child it only looks at the environment. */
__attribute__((constructor)) static void start_data_constructor(void) {
  const char *marker = getenv(MP__START_ENV);
  if (!marker)
    return;
  char copy[32];
  snprintf(copy, sizeof copy, "%s", marker);
  char mode = copy[0];
  int fd = copy[1] == ':' ? atoi(copy + 2) : -1;
  /* The marker is for this program only: not for programs it runs. */
  unsetenv(MP__START_ENV);
  /* The start data is a memfd (a regular file) above fd 2: anything else
   * (a tty, a pipe, nothing) is not ours, and reading it could block. */
  struct stat st;
  int rc = MP_EINVAL;
  if ((mode == 'c' || mode == 's') && fd > STDERR_FILENO &&
      fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    mp__boot_set_role(mode == 's' ? MP__BOOT_SERVER : MP__BOOT_CHILD);
    rc = mp__start_data_read(fd, true);
  }
  if (rc < 0)
    start_data_missing(copy, rc);
}

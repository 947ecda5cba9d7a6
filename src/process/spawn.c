/* The spawn start method, and what it shares with the forkserver: the start
 * data of a child, functions named across processes, and the bootstrap of a
 * freshly exec'd program.
 *
 * A spawned child is a fresh exec of the running program (/proc/self/exe),
 * the C counterpart of Python's spawn_main. The parent writes everything the
 * child needs (the start data: name, identity, authkey, the arena, the
 * target and its arg bytes) into a memfd and passes it, with the arena and
 * the other fds the child needs, at fixed fd numbers; the environment
 * variable MPROC_SPAWN names the memfd. In the child, a constructor reads the
 * start data before main() runs and maps the arena at the parent's address
 * before anything else can take that range; mp_main(), first thing in
 * main(), then runs the child and never returns. */
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/internal.h"
#include "process/start.h"

extern char **environ;

/* The program a spawned child runs: always this one; tests replace it to
 * check that an exec failure comes back as an error code. */
const char *mp__spawn_path = "/proc/self/exe";

#define START_MAGIC   0x6d707374u /* "mpst" */
#define START_VERSION 1u
#define ENV_MARKER    "MPROC_SPAWN"

/* ---- functions named across processes ------------------------------------
 * Under spawn the child's libraries are at other addresses (ASLR), so a
 * function pointer travels as (module path, offset from its load base). */

static bool module_base_of(const void *address, char *path, size_t cap,
                           uintptr_t *base) {
  Dl_info info;
  struct link_map *map = NULL;
  if (!dladdr1(address, &info, (void **)&map, RTLD_DL_LINKMAP) || !map)
    return false;
  /* The main program's link map has an empty name. */
  snprintf(path, cap, "%s", map->l_name ? map->l_name : "");
  *base = (uintptr_t)map->l_addr;
  return true;
}

int mp__fn_encode(const void *fn, mp__fnref_t *ref) {
  memset(ref, 0, sizeof *ref);
  if (!fn)
    return 0;
  uintptr_t base;
  if (!module_base_of(fn, ref->module, sizeof ref->module, &base))
    return MP_EINVAL;
  ref->offset = (uint64_t)((uintptr_t)fn - base);
  ref->valid = 1;
  return 0;
}

typedef struct module_search {
  const char *path;
  uintptr_t base;
  bool found;
} module_search_t;

static int find_module(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  module_search_t *s = arg;
  const char *name = info->dlpi_name ? info->dlpi_name : "";
  if (strcmp(name, s->path) != 0)
    return 0;
  s->base = (uintptr_t)info->dlpi_addr;
  s->found = true;
  return 1;
}

void *mp__fn_decode(const mp__fnref_t *ref) {
  if (!ref->valid)
    return NULL;
  module_search_t s = {.path = ref->module};
  dl_iterate_phdr(find_module, &s);
  if (!s.found && ref->module[0]) {
    /* A library the parent loaded with dlopen: load it here too. It stays
     * loaded for the life of the process. */
    if (dlopen(ref->module, RTLD_NOW | RTLD_GLOBAL))
      dl_iterate_phdr(find_module, &s);
  }
  return s.found ? (void *)(s.base + ref->offset) : NULL;
}

/* ---- fds the children inherit ---------------------------------------------
 */

static struct {
  pthread_mutex_t lock;
  int *fds;
  size_t count, cap;
} inherited = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0};

int mp__inherit_fd_add(int fd) {
  pthread_mutex_lock(&inherited.lock);
  int rc = 0;
  if (inherited.count == inherited.cap) {
    size_t cap = inherited.cap ? inherited.cap * 2 : 16;
    int *fds = realloc(inherited.fds, cap * sizeof *fds);
    if (!fds)
      rc = -ENOMEM;
    else
      inherited.fds = fds, inherited.cap = cap;
  }
  if (rc == 0)
    inherited.fds[inherited.count++] = fd;
  pthread_mutex_unlock(&inherited.lock);
  return rc;
}

void mp__inherit_fd_remove(int fd) {
  pthread_mutex_lock(&inherited.lock);
  for (size_t i = 0; i < inherited.count; i++) {
    if (inherited.fds[i] == fd) {
      inherited.fds[i] = inherited.fds[--inherited.count];
      break;
    }
  }
  pthread_mutex_unlock(&inherited.lock);
}

/* ---- the start data --------------------------------------------------------
 */

typedef struct start_header {
  uint32_t magic, version;
  int32_t parent_pid;
  int32_t parent_pidfd;
  int32_t arena_fd;
  int32_t default_method;
  int32_t channel_fd; /* the forkserver's socket, -1 for a child */
  uint64_t arena_address, arena_size;
  uint32_t daemon;
  uint32_t depth;
  uint32_t identity[MP__MAX_DEPTH];
  unsigned char authkey[MP__AUTHKEY_LEN];
  mp__fnref_t target;    /* the plain form's target, or */
  mp__fnref_t type;      /* the type of the run() form */
  uint64_t payload_size; /* the arg bytes or the type's data block */
  uint32_t fd_count;     /* inherited fd numbers that follow the header */
  char name[256];
  char parent_name[256];
} start_header_t;

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

/* The fds a child needs besides 0-2: the arena, the parent's pidfd, and
 * the registered ones. Returns the count; the list is malloc'd. */
static int collect_fds(int arena_fd, int parent_pidfd, int channel_fd,
                       int **out) {
  pthread_mutex_lock(&inherited.lock);
  /* The forkserver (the one with a channel) holds none of the user's fds:
   * a pipe end kept open there would hide the peer's EOF forever. */
  size_t user = channel_fd >= 0 ? 0 : inherited.count;
  size_t n = 0;
  int *fds = malloc((user + 3) * sizeof *fds);
  if (fds) {
    fds[n++] = arena_fd;
    if (parent_pidfd >= 0) /* none without pidfds */
      fds[n++] = parent_pidfd;
    if (channel_fd >= 0)
      fds[n++] = channel_fd;
    for (size_t i = 0; i < user; i++)
      fds[n++] = inherited.fds[i];
  }
  pthread_mutex_unlock(&inherited.lock);
  *out = fds;
  return fds ? (int)n : -ENOMEM;
}

int mp__start_data_write(mp_process_t *p, int channel_fd, int **fds_out,
                         int *fd_count) {
  start_header_t h = {.magic = START_MAGIC, .version = START_VERSION};
  h.channel_fd = channel_fd;
  uintptr_t address;
  int rc = mp__arena_info(&h.arena_fd, &address, &h.arena_size);
  if (rc < 0)
    return rc;
  h.arena_address = address;
  h.parent_pid = getpid();
  h.parent_pidfd = mp__self_pidfd(); /* -ENOSYS without pidfds */
  if (h.parent_pidfd < 0)
    h.parent_pidfd = -1;
  h.default_method = (int32_t)mp__default_context()->method;
  mp_process_t *self = mp_current_process();
  mp_process_t *described = p ? p : self;
  h.daemon = p && p->daemon;
  h.depth = described->depth;
  memcpy(h.identity, described->identity, sizeof h.identity);
  memcpy(h.authkey, described->authkey, sizeof h.authkey);
  snprintf(h.name, sizeof h.name, "%s", p ? p->name : "ForkServer");
  snprintf(h.parent_name, sizeof h.parent_name, "%s",
           mp_current_process()->name);
  if (!p) {
    /* The forkserver: no target. */
  } else if (p->type) {
    rc = mp__fn_encode(p->type, &h.type);
    h.payload_size = p->type->data_size;
  } else {
    rc = mp__fn_encode((const void *)p->target, &h.target);
    h.payload_size = p->arg_size;
  }
  if (rc < 0)
    return rc;
  int *fds;
  int n = collect_fds(h.arena_fd, h.parent_pidfd, channel_fd, &fds);
  if (n < 0)
    return n;
  h.fd_count = (uint32_t)n;

  int fd = memfd_create("mproc-start", MFD_CLOEXEC);
  if (fd < 0) {
    free(fds);
    return -errno;
  }
  const void *payload = !p ? NULL : p->type ? p->data : p->arg;
  if ((rc = write_all(fd, &h, sizeof h)) < 0 ||
      (rc = write_all(fd, fds, (size_t)n * sizeof *fds)) < 0 ||
      (rc = write_all(fd, payload, (size_t)h.payload_size)) < 0) {
    free(fds);
    close(fd);
    return rc;
  }
  lseek(fd, 0, SEEK_SET);
  *fds_out = fds;
  *fd_count = n;
  return fd;
}

/* What a child learned from its start data, until mp_main runs it. */
static struct {
  bool pending;      /* started by spawn or the forkserver, not yet run */
  bool server;       /* this process is a forkserver */
  bool bootstrapped; /* mp_main took over */
  int error;         /* reading the start data failed */
  start_header_t header;
  void *payload;
  int *fds;
} child;

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
      syscall(SYS_close_range, first, (unsigned)keep[i] - 1, 0);
    first = (unsigned)keep[i] + 1;
  }
  syscall(SYS_close_range, first, ~0u, 0);
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
  start_header_t *h = &child.header;
  int rc = read_all(fd, h, sizeof *h);
  if (rc == 0 && (h->magic != START_MAGIC || h->version != START_VERSION))
    rc = MP_EINVAL;
  if (rc == 0 && h->fd_count > 4096)
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
  child.error = rc;
  return rc;
}

/* ---- the spawn start method ------------------------------------------------
 */

/* The parent's own command line is passed on unchanged, so that argv[0]
 * and the arguments are the same in the child (as in Python's spawn). */
/* The whole of /proc/self/cmdline (malloc'd, NUL-terminated; its length
 * in *length), or NULL. */
static char *read_cmdline(size_t *length) {
  int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap + 1);
  while (fd >= 0 && buf) {
    if (len == cap) {
      char *bigger = realloc(buf, (cap *= 2) + 1);
      if (!bigger) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = bigger;
    }
    ssize_t n = read(fd, buf + len, cap - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    len += (size_t)n;
  }
  if (fd >= 0)
    close(fd);
  if (buf)
    buf[len] = 0;
  *length = len;
  return buf;
}

static int build_argv_env(char mode, int start_fd, char ***argv_out,
                          char ***envp_out) {
  /* argv: /proc/self/cmdline, NUL-separated, read whole. */
  size_t len;
  char *args = read_cmdline(&len);
  if (!args)
    return -ENOMEM;
  size_t argc = 0;
  for (size_t i = 0; i < len; i++)
    argc += args[i] == 0;
  size_t envc = 0;
  while (environ[envc])
    envc++;
  char **argv = calloc(argc + 2, sizeof *argv);
  char **envp = calloc(envc + 2, sizeof *envp);
  char *marker = malloc(64);
  if (!argv || !envp || !marker) {
    free(argv), free(envp), free(args), free(marker);
    return -ENOMEM;
  }
  size_t k = 0;
  for (size_t i = 0; i < len; i += strlen(args + i) + 1)
    argv[k++] = args + i;
  if (k == 0)
    argv[k++] = args; /* an empty argv[0] */
  size_t e = 0;
  for (size_t i = 0; i < envc; i++)
    if (strncmp(environ[i], ENV_MARKER "=", sizeof ENV_MARKER) != 0)
      envp[e++] = environ[i];
  snprintf(marker, 64, ENV_MARKER "=%c:%d", mode, start_fd);
  envp[e++] = marker;
  *argv_out = argv;
  *envp_out = envp;
  return 0;
}

static void free_argv_env(char **argv, char **envp) {
  free(argv[0]);
  for (size_t i = 0; envp[i]; i++)
    if (strncmp(envp[i], ENV_MARKER "=", sizeof ENV_MARKER) == 0)
      free(envp[i]);
  free(argv);
  free(envp);
}

int mp__exec_self(char mode, int start_fd, const int *fds, int n,
                  pid_t *pid_out) {
  char **argv, **envp;
  int rc = build_argv_env(mode, start_fd, &argv, &envp);
  if (rc < 0)
    return rc;
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  /* dup2 of an fd onto itself clears its FD_CLOEXEC in the child only. */
  posix_spawn_file_actions_adddup2(&actions, start_fd, start_fd);
  for (int i = 0; i < n; i++)
    if (fds[i] >= 0)
      posix_spawn_file_actions_adddup2(&actions, fds[i], fds[i]);
  /* The child starts with no signal blocked and default dispositions for
   * whatever the parent catches, as a fresh program should. */
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid;
  int err = posix_spawn(&pid, mp__spawn_path, &actions, &attr, argv, envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  free_argv_env(argv, envp);
  if (err)
    return -err;
  *pid_out = pid;
  return 0;
}

int mp__start_spawn(mp_process_t *p) {
  int *fds, n;
  int start_fd = mp__start_data_write(p, -1, &fds, &n);
  if (start_fd < 0)
    return start_fd;
  pid_t pid;
  int rc = mp__exec_self('c', start_fd, fds, n, &pid);
  free(fds);
  close(start_fd);
  if (rc < 0)
    return rc;
  p->pid = pid;
  return mp__watch_child(p);
}

/* ---- the child side ---------------------------------------------------------
 */

/* Builds the child's own process object from the start data and runs it. */
_Noreturn void mp__run_from_start_data(pid_t direct_parent) {
  start_header_t *h = &child.header;
  mp_process_t *p = calloc(1, sizeof *p);
  if (!p || child.error) {
    fprintf(stderr, "mproc: the start data of this child is unusable: %s\n",
            mp_strerror(child.error ? child.error : -ENOMEM));
    _exit(70);
  }
  p->kind = MP__PROCESS_CHILD;
  p->name = strdup(h->name);
  p->daemon = h->daemon;
  p->depth = h->depth;
  memcpy(p->identity, h->identity, sizeof p->identity);
  memcpy(p->authkey, h->authkey, sizeof p->authkey);
  p->pidfd = p->sentinel = -1;
  if (h->type.valid) {
    p->type = mp__fn_decode(&h->type);
    p->data = child.payload;
  } else {
    p->target = (void (*)(void *))mp__fn_decode(&h->target);
    p->arg = child.payload;
    p->arg_size = (size_t)h->payload_size;
  }
  if (!p->type && !p->target) {
    fprintf(stderr,
            "mproc: the child's %s is not found in this program "
            "(module \"%s\")\n",
            h->type.valid ? "type" : "target",
            h->type.valid ? h->type.module : h->target.module);
    _exit(70);
  }
  mp__set_default_method((enum mp__start_method)h->default_method);
  mp__child_start_t start = {h->parent_pid, strdup(h->parent_name),
                             h->parent_pidfd,
                             direct_parent ? direct_parent : h->parent_pid};
  mp__child_main(p, &start);
}

/* Runs before main() in every program linked with mproc. Outside a spawned
 * child it only looks at the environment. */
__attribute__((constructor)) static void spawn_constructor(void) {
  const char *marker = getenv(ENV_MARKER);
  if (!marker)
    return;
  char mode = marker[0];
  int fd = marker[1] == ':' ? atoi(marker + 2) : -1;
  /* The marker is for this program only: not for programs it runs. */
  unsetenv(ENV_MARKER);
  if ((mode != 'c' && mode != 's') || fd < 3)
    return;
  child.pending = true;
  child.server = mode == 's';
  mp__start_data_read(fd, true);
}

void mp__check_bootstrapped(void) {
  if (!child.pending || child.bootstrapped)
    return;
  static const char message[] =
      "mproc: this program was started as a child process (spawn or "
      "forkserver start method), but main() did not call mp_main(argc, argv) "
      "before using mproc. Call it first thing in main(): it is the C form "
      "of Python's `if __name__ == \"__main__\":` guard.\n";
  if (write(STDERR_FILENO, message, sizeof message - 1) < 0) {
    /* Nothing more can be done. */
  }
  _exit(70);
}

int mp_main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  if (!child.pending || child.bootstrapped)
    return 0;
  child.bootstrapped = true;
  if (child.error) {
    fprintf(stderr, "mproc: cannot read this child's start data: %s\n",
            mp_strerror(child.error));
    _exit(70);
  }
  if (child.server)
    mp__forkserver_main(child.header.channel_fd, child.header.authkey,
                        sizeof child.header.authkey);
  mp__run_from_start_data(0);
}

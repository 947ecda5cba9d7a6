/* Functions named across processes (see fnref.h).
 *
 * Under spawn the child's libraries are at other addresses (ASLR), so a
 * function pointer travels as (module path, offset from its load base). */
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/fnref.h"

/* dl_iterate_phdr holds the C library's loader lock while it runs. A
 * fork() at that moment (a pool thread starting a worker while another
 * thread names or finds a function) leaves the lock held for good in the
 * child, whose first lookup then hangs: seen as a pool worker stuck in
 * dl_iterate_phdr under ThreadSanitizer. So every walk of the library's
 * goes through mp__dl_iterate, under a mutex that every fork() of the
 * process takes first (an after-fork handler, registered when the library
 * loads); fork then waits for the walk to end. Walks by code outside the
 * library are not covered. */
static pthread_mutex_t walk_lock = PTHREAD_MUTEX_INITIALIZER;

static void walk_prepare(void) {
  pthread_mutex_lock(&walk_lock);
}

/* In the child the lock is the forking thread's own, its only thread. */
static void walk_release(void) {
  pthread_mutex_unlock(&walk_lock);
}

static mp__atfork_t walk_atfork = {
    .prepare = walk_prepare, .parent = walk_release, .child = walk_release};

/* Registered before any thread of the library can walk (a handler
 * registered later would let a fork pass a walk already begun). Its
 * prepare runs last, after the other areas' (reverse order): a walk takes
 * no other lock, so none can wait on it while holding one of theirs. */
__attribute__((constructor)) static void walk_register(void) {
  mp__atfork_register(&walk_atfork);
}

int mp__dl_iterate(int (*visit)(struct dl_phdr_info *, size_t, void *),
                   void *arg) {
  pthread_mutex_lock(&walk_lock);
  int rc = dl_iterate_phdr(visit, arg);
  pthread_mutex_unlock(&walk_lock);
  return rc;
}

/* The module whose loaded segments hold an address. dl_iterate_phdr, not
 * dladdr: it works the same in a fully static program (whose only module
 * is the program itself) and in C libraries without dladdr1 (musl). */
typedef struct address_search {
  uintptr_t address;
  const char *name;
  uintptr_t base;
} address_search_t;

static int find_address(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  address_search_t *s = arg;
  for (size_t i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t start = (uintptr_t)info->dlpi_addr + (uintptr_t)ph->p_vaddr;
    if (ph->p_type == PT_LOAD && s->address >= start &&
        s->address - start < (uintptr_t)ph->p_memsz) {
      /* The main program's name is empty, as dl_iterate_phdr gives it in
       * the child. */
      s->name = info->dlpi_name ? info->dlpi_name : "";
      s->base = (uintptr_t)info->dlpi_addr;
      return 1;
    }
  }
  return 0;
}

static bool module_base_of(const void *address, char *path, size_t cap,
                           uintptr_t *base) {
  address_search_t s = {.address = (uintptr_t)address};
  if (!mp__dl_iterate(find_address, &s) || !s.name)
    return false;
  if (strlen(s.name) >= cap)
    return false; /* a path the reference cannot hold */
  snprintf(path, cap, "%s", s.name);
  *base = s.base;
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
  mp__dl_iterate(find_module, &s);
  if (!s.found && ref->module[0]) {
    /* A library the parent loaded with dlopen: load it here too. It stays
     * loaded for the life of the process. Not under walk_lock: the
     * library's constructors may call into mproc (and walk). It runs where
     * the parent's library is not loaded yet: a spawned or forkserver
     * child, before it has threads of its own that could fork. */
    if (dlopen(ref->module, RTLD_NOW | RTLD_GLOBAL))
      mp__dl_iterate(find_module, &s);
  }
  return s.found ? (void *)(s.base + ref->offset) : NULL;
}

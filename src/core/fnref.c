/* Functions named across processes (see fnref.h).
 *
 * Under spawn the child's libraries are at other addresses (ASLR), so a
 * function pointer travels as (module path, offset from its load base). */
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <string.h>

#include "core/fnref.h"

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

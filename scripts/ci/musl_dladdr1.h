/* For scripts/ci_portability.sh only, force-included into the musl build
 * while src/core/fnref.c still calls glibc's dladdr1 (issue 11 replaces it
 * with dl_iterate_phdr; the script stops using this file once fnref.c no
 * longer names dladdr1). It answers the one question fnref.c asks
 * (RTLD_DL_LINKMAP: which module holds an address, its name and load base)
 * from dl_iterate_phdr, which musl has, also in static programs. The first
 * module listed is the program itself, named "" as glibc names it (musl
 * names it "/proc/self/exe" in a static program and by argv[0] in a
 * dynamic one): fnref.c's own dl_iterate_phdr calls get the same view. */
#if !defined(MPROC_CI_MUSL_DLADDR1_H) && defined(MPROC_BUILDING)
#define MPROC_CI_MUSL_DLADDR1_H

#include <dlfcn.h>
#include <link.h>
#include <stdint.h>
#include <string.h>

#ifndef RTLD_DL_LINKMAP
#define RTLD_DL_LINKMAP 2

typedef struct mpci_search {
  uintptr_t address;
  int index;
  struct link_map map;
  int found;
} mpci_search_t;

static inline int mpci_find(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  mpci_search_t *s = arg;
  int first = s->index++ == 0;
  for (int k = 0; k < info->dlpi_phnum; k++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[k];
    uintptr_t low = (uintptr_t)info->dlpi_addr + ph->p_vaddr;
    if (ph->p_type == PT_LOAD && s->address >= low &&
        s->address < low + ph->p_memsz) {
      s->map.l_addr = info->dlpi_addr;
      s->map.l_name = (char *)(first ? "" : info->dlpi_name);
      s->found = 1;
      return 1;
    }
  }
  return 0;
}

static inline int dladdr1(const void *address, Dl_info *info, void **extra,
                          int flags) {
  static _Thread_local mpci_search_t s;
  (void)flags;
  memset(&s, 0, sizeof s);
  memset(info, 0, sizeof *info);
  s.address = (uintptr_t)address;
  dl_iterate_phdr(mpci_find, &s);
  if (!s.found)
    return 0;
  info->dli_fname = s.map.l_name;
  info->dli_fbase = (void *)s.map.l_addr;
  *extra = &s.map;
  return 1;
}

typedef struct mpci_rename {
  int (*callback)(struct dl_phdr_info *, size_t, void *);
  void *arg;
  int index;
} mpci_rename_t;

static inline int mpci_renamed(struct dl_phdr_info *info, size_t size,
                               void *arg) {
  mpci_rename_t *r = arg;
  struct dl_phdr_info copy = *info;
  if (r->index++ == 0)
    copy.dlpi_name = "";
  return r->callback(&copy, size, r->arg);
}

static inline int mpci_dl_iterate_phdr(int (*callback)(struct dl_phdr_info *,
                                                       size_t, void *),
                                       void *arg) {
  mpci_rename_t r = {callback, arg, 0};
  return dl_iterate_phdr(mpci_renamed, &r);
}
#define dl_iterate_phdr mpci_dl_iterate_phdr
#endif
#endif

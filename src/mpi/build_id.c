/* A module's build id, read from its NT_GNU_BUILD_ID note in the loaded
 * image (dl_iterate_phdr): a function reference names a module and an
 * offset, and the offset means the same function only in the same build. */
#include <elf.h>
#include <link.h>
#include <stdio.h>
#include <string.h>

#include "mpi/mpi_internal.h"

typedef struct search {
  const char *module;
  mp__build_id_t *id;
  bool found;
} search_t;

/* Notes are 4-byte aligned: namesz, descsz, type, name, desc. */
static bool note_build_id(const char *p, size_t size, mp__build_id_t *id) {
  size_t at = 0;
  while (at + sizeof(ElfW(Nhdr)) <= size) {
    const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)(p + at);
    size_t name = (n->n_namesz + 3) & ~(size_t)3;
    size_t desc = (n->n_descsz + 3) & ~(size_t)3;
    const char *name_at = p + at + sizeof *n;
    if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 &&
        memcmp(name_at, "GNU", 4) == 0 && n->n_descsz <= MP__BUILD_ID_MAX) {
      id->len = n->n_descsz;
      memcpy(id->bytes, name_at + name, n->n_descsz);
      return true;
    }
    at += sizeof *n + name + desc;
  }
  return false;
}

static int visit(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  search_t *s = arg;
  const char *name = info->dlpi_name ? info->dlpi_name : "";
  if (strcmp(name, s->module) != 0)
    return 0;
  s->found = true;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type == PT_NOTE &&
        note_build_id((const char *)(info->dlpi_addr + ph->p_vaddr),
                      ph->p_memsz, s->id))
      break;
  }
  return 1;
}

int mp__build_id(const char *module, mp__build_id_t *id) {
  memset(id, 0, sizeof *id);
  search_t s = {.module = module, .id = id};
  mp__dl_iterate(visit, &s);
  return s.found ? 0 : -ENOENT;
}

bool mp__build_id_equal(const mp__build_id_t *a, const mp__build_id_t *b) {
  return a->len == b->len && memcmp(a->bytes, b->bytes, a->len) == 0;
}

void mp__build_id_hex(const mp__build_id_t *id, char *out, size_t cap) {
  size_t at = 0;
  out[0] = '\0';
  for (uint32_t i = 0; i < id->len && at + 3 <= cap; i++)
    at += (size_t)snprintf(out + at, cap - at, "%02x", id->bytes[i]);
  if (id->len == 0)
    snprintf(out, cap, "(none)");
}

/* mp_main(): the C form of Python's `if __name__ == "__main__":` guard, and
 * the top of a spawned child or forkserver. In an ordinary program it
 * returns 0 at once; in a process started by spawn or the forkserver it
 * runs the child (or the server) and never returns. */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "process/start.h"

/* Builds the child's own process object from the start data and runs it.
 * noreturn as an attribute, not _Noreturn: clang makes only the attribute
 * part of the function type that mp__child_runner_cb names. */
__attribute__((noreturn)) static void run_from_start_data(pid_t direct_parent) {
  void *payload;
  int error;
  const mp__start_header_t *h = mp__start_data(&payload, &error);
  mp_process_t *p = calloc(1, sizeof *p);
  if (!p || error) {
    fprintf(stderr, "mproc: the start data of this child is unusable: %s\n",
            mp_strerror(error ? error : -ENOMEM));
    _exit(MP__EXIT_START_FAILED);
  }
  p->kind = MP__PROCESS_CHILD;
  p->name = strdup(h->name);
  p->daemon = h->daemon;
  p->end_with_parent = h->end_with_parent;
  p->depth = h->depth;
  memcpy(p->identity, h->identity, sizeof p->identity);
  memcpy(p->authkey, h->authkey, sizeof p->authkey);
  p->pidfd = p->sentinel = -1;
  if (h->type.valid) {
    p->type = mp__fn_decode(&h->type);
    p->data = payload;
  } else {
    p->target = (void (*)(void *))mp__fn_decode(&h->target);
    p->arg = payload;
    p->arg_size = (size_t)h->payload_size;
  }
  if (!p->type && !p->target) {
    fprintf(stderr,
            "mproc: the child's %s is not found in this program "
            "(module \"%s\")\n",
            h->type.valid ? "type" : "target",
            h->type.valid ? h->type.module : h->target.module);
    _exit(MP__EXIT_START_FAILED);
  }
  mp__set_default_method((enum mp__start_method)h->default_method);
  mp__child_start_t start = {
      h->parent_pid, strdup(h->parent_name), h->parent_pidfd,
      direct_parent ? direct_parent : h->parent_pid, direct_parent == 0};
  mp__child_main(p, &start);
}

/* set_forkserver_preload: the server loads the libraries once, so every
 * child it forks has them. As Python ignores a module that fails to
 * import, a library that fails to load is skipped (its children load it
 * themselves if they need it). */
static void preload_libraries(const char *paths, size_t size) {
  for (size_t at = 0; at < size; at += strlen(paths + at) + 1)
    dlopen(paths + at, RTLD_NOW | RTLD_GLOBAL);
}

int mp_main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  enum mp__boot_role role = mp__boot_take();
  if (role == MP__BOOT_NONE)
    return 0;
  void *payload;
  int error;
  const mp__start_header_t *h = mp__start_data(&payload, &error);
  if (error) {
    fprintf(stderr, "mproc: cannot read this child's start data: %s\n",
            mp_strerror(error));
    _exit(MP__EXIT_START_FAILED);
  }
  if (role == MP__BOOT_SERVER) {
    preload_libraries(payload, (size_t)h->payload_size);
    mp__forkserver_main(h->channel_fd, h->authkey, sizeof h->authkey,
                        run_from_start_data);
  }
  run_from_start_data(0);
}

/* A fully static program: spawn and the forkserver find the target in it
 * (function references are resolved with dl_iterate_phdr, which static
 * programs have). Prints one line per method. */
#include <stdatomic.h>
#include <stdio.h>

#include <mproc.h>

static void target(void *arg) {
  atomic_store(*(_Atomic int **)arg, 42);
}

int main(int argc, char **argv) {
  if (mp_main(argc, argv) != 0)
    return 1;
  _Atomic int *flag = mp_raw_alloc(sizeof *flag);
  const char *methods[] = {"spawn", "forkserver"};
  for (int i = 0; i < 2; i++) {
    atomic_store(flag, 0);
    mp_process_t *p =
        mp_process_new(target, &flag, sizeof flag,
                       &(mp_process_opts_t){.ctx = mp_get_context(methods[i])});
    int rc = p ? mp_process_start(p) : -1;
    int code = -1;
    if (rc == 0 && mp_process_join(p, 60) == 0)
      mp_process_exitcode(p, &code);
    printf("%s: start=%s exitcode=%d flag=%d\n", methods[i], mp_errname(rc),
           code, atomic_load(flag));
    fflush(stdout);
    mp_process_free(p);
  }
  return 0;
}

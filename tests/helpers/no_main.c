/* A program that forgets mp_main(): its spawned child must stop with a
 * clear message instead of running main() and starting children itself. */
#include <stdio.h>

#include <mproc.h>

static void target(void *arg) {
  (void)arg;
  printf("target ran\n");
}

int main(void) {
  printf("main runs in pid-independent line\n");
  fflush(stdout);
  mp_process_t *p = mp_process_new(
      target, NULL, 0, &(mp_process_opts_t){.ctx = mp_get_context("spawn")});
  int rc = p ? mp_process_start(p) : -1;
  int code = -1;
  if (rc == 0 && mp_process_join(p, 30) == 0)
    mp_process_exitcode(p, &code);
  printf("start=%d exitcode=%d\n", rc, code);
  mp_process_free(p);
  return 0;
}

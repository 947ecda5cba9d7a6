/* A program that forgets mp_main(): starting a process with spawn or the
 * forkserver fails with MP_ENOMAIN and a message, instead of a child that
 * runs main() again (and starts children itself). fork still works. */
#include <stdio.h>

#include <mproc.h>

static void target(void *arg) {
  (void)arg;
  printf("target ran\n");
}

int main(void) {
  printf("main runs in pid-independent line\n");
  fflush(stdout);
  const char *methods[] = {"spawn", "forkserver", "fork"};
  for (int i = 0; i < 3; i++) {
    mp_process_t *p =
        mp_process_new(target, NULL, 0,
                       &(mp_process_opts_t){.ctx = mp_get_context(methods[i])});
    int rc = p ? mp_process_start(p) : -1;
    int code = -1;
    if (rc == 0 && mp_process_join(p, 30) == 0)
      mp_process_exitcode(p, &code);
    printf("%s: start=%s exitcode=%d\n", methods[i], mp_errname(rc), code);
    fflush(stdout);
    mp_process_free(p);
  }
  return 0;
}

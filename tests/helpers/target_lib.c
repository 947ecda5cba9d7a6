/* A target in a shared library (linked, or loaded with dlopen). It uses no
 * mproc call, so it needs no copy of the library of its own. */
#include <unistd.h>

typedef struct lib_report {
  int value;
  int pid;
} lib_report_t;

void mpt_lib_target(void *arg);

__attribute__((visibility("default"))) void mpt_lib_target(void *arg) {
  lib_report_t *r = *(lib_report_t **)arg;
  r->value = 4242;
  r->pid = (int)getpid();
}

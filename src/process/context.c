/* Start methods and contexts (multiprocessing.get_context and friends). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "process/process.h"

static mp_context_t contexts[MP__METHOD_COUNT] = {
    [MP__METHOD_FORK] = {"fork", MP__METHOD_FORK},
    [MP__METHOD_SPAWN] = {"spawn", MP__METHOD_SPAWN},
    [MP__METHOD_FORKSERVER] = {"forkserver", MP__METHOD_FORKSERVER},
};

/* The actual context: NULL until set_start_method or first use fixes it
 * (Python's DefaultContext._actual_context). */
static _Atomic(const mp_context_t *) actual;

static mp_context_t *find(const char *method) {
  for (int i = 0; i < MP__METHOD_COUNT; i++)
    if (strcmp(contexts[i].name, method) == 0)
      return &contexts[i];
  return NULL;
}

/* The default before anything is fixed: MPROC_START_METHOD, else fork.
 * NULL when the variable names no method: a typo ("spwan") must not
 * silently mean fork and hide every spawn-only bug from the user who
 * thought they tested spawn. Said once on stderr. */
static const mp_context_t *initial_default(void) {
  const char *env = getenv("MPROC_START_METHOD");
  if (!env || !*env)
    return &contexts[MP__METHOD_FORK];
  mp_context_t *ctx = find(env);
  static atomic_flag said = ATOMIC_FLAG_INIT;
  if (!ctx && !atomic_flag_test_and_set(&said))
    fprintf(stderr,
            "mproc: MPROC_START_METHOD=\"%s\" is not a start method; the "
            "valid ones are \"fork\", \"spawn\" and \"forkserver\". Processes "
            "using the default method cannot start (MP_EINVAL).\n",
            env);
  return ctx;
}

const mp_context_t *mp__default_context(void) {
  const mp_context_t *ctx = atomic_load(&actual);
  if (ctx)
    return ctx;
  const mp_context_t *fixed = initial_default();
  if (!fixed) {
    errno = EINVAL;
    return NULL; /* nothing fixed: set_start_method can still repair it */
  }
  /* Two threads may race to fix it; the first one wins. */
  if (!atomic_compare_exchange_strong(&actual, &ctx, fixed))
    return ctx;
  return fixed;
}

mp_context_t *mp_get_context(const char *method) {
  if (!method)
    return (mp_context_t *)mp__default_context(); /* NULL, EINVAL: bad env */
  mp_context_t *ctx = find(method);
  if (!ctx)
    errno = EINVAL;
  return ctx;
}

const char *mp_context_start_method(const mp_context_t *ctx) {
  if (!ctx)
    ctx = mp__default_context();
  return ctx ? ctx->name : NULL;
}

int mp_set_start_method(const char *method, bool force) {
  mp_context_t *ctx = method ? find(method) : NULL;
  if (method && !ctx)
    return MP_EINVAL;
  if (!force && atomic_load(&actual))
    return MP_ESTATE; /* "context has already been set" */
  /* Python: set_start_method(None, force=True) unsets the method. */
  atomic_store(&actual, ctx);
  return 0;
}

const char *mp_get_start_method(void) {
  return mp_context_start_method(NULL);
}

size_t mp_get_all_start_methods(const char **out, size_t cap) {
  const mp_context_t *first = initial_default();
  if (!first)
    first = &contexts[MP__METHOD_FORK];
  size_t n = 0;
  if (n < cap && out)
    out[n] = first->name;
  n++;
  for (int i = 0; i < MP__METHOD_COUNT; i++) {
    if (&contexts[i] == first)
      continue;
    if (n < cap && out)
      out[n] = contexts[i].name;
    n++;
  }
  return n;
}

void mp__set_default_method(enum mp__start_method method) {
  if (method >= 0 && method < MP__METHOD_COUNT)
    atomic_store(&actual, &contexts[method]);
}

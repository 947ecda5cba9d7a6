/* Start methods and contexts (multiprocessing.get_context and friends). */
#include <pthread.h>
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

/* ---- set_forkserver_preload ------------------------------------------------
 * The paths, NUL-terminated one after the other, for the start data of the
 * next forkserver this process starts. */
static struct {
  pthread_mutex_t lock; /* guards paths and size */
  char *paths;
  size_t size;
} preload = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void preload_prepare(void) {
  pthread_mutex_lock(&preload.lock);
}

static void preload_parent(void) {
  pthread_mutex_unlock(&preload.lock);
}

static void preload_child(void) {
  pthread_mutex_init(&preload.lock, NULL);
}

static mp__atfork_t preload_atfork = {.prepare = preload_prepare,
                                      .parent = preload_parent,
                                      .child = preload_child};

int mp_set_forkserver_preload(const char *const *paths, size_t n) {
  if (!paths && n > 0)
    return MP_EINVAL;
  size_t size = 0;
  for (size_t i = 0; i < n; i++) {
    if (!paths[i] || !paths[i][0])
      return MP_EINVAL;
    size += strlen(paths[i]) + 1;
  }
  char *blob = size ? malloc(size) : NULL;
  if (size && !blob)
    return -ENOMEM;
  for (size_t i = 0, at = 0; i < n; i++) {
    size_t len = strlen(paths[i]) + 1;
    memcpy(blob + at, paths[i], len);
    at += len;
  }
  mp__atfork_register(&preload_atfork);
  pthread_mutex_lock(&preload.lock);
  char *old = preload.paths;
  preload.paths = blob;
  preload.size = size;
  pthread_mutex_unlock(&preload.lock);
  free(old);
  return 0;
}

int mp__forkserver_preload(char **paths, size_t *size) {
  pthread_mutex_lock(&preload.lock);
  *size = preload.size;
  *paths = preload.size ? malloc(preload.size) : NULL;
  if (*paths)
    memcpy(*paths, preload.paths, preload.size);
  pthread_mutex_unlock(&preload.lock);
  return *size && !*paths ? -ENOMEM : 0;
}

/* mproc: error codes and the definitions every area shares. */
#ifndef MPROC_ERROR_H
#define MPROC_ERROR_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MPROC_BUILDING)
#define MP_API __attribute__((visibility("default")))
#else
#define MP_API
#endif

/* Timeouts are double seconds: MP_FOREVER (any negative value) waits
 * forever, as Python's None; 0 never blocks. */
#define MP_FOREVER (-1.0)

/* The library's own error codes, written once. Every function that returns
 * int returns 0 on success or a negative code: one of these, or -errno for
 * anything else the system reports. X(name, value, message). */
#define MP_ERROR_MAP(X)                                                        \
  X(ESTATE, -1001, "operation not valid in the object's current state")        \
  X(ETIMEDOUT, -1002, "timed out")                                             \
  X(EEMPTY, -1003, "queue is empty")                                           \
  X(EFULL, -1004, "queue is full")                                             \
  X(EOVERFLOW, -1005, "released too many times, or buffer too small")          \
  X(ENOTOWNER, -1006, "not owned by the calling thread")                       \
  X(EBROKEN, -1007, "broken: the barrier or pool can no longer be used")       \
  X(ECLOSED, -1008, "closed: the peer or the object is closed")                \
  X(EAUTH, -1009, "authentication failed")                                     \
  X(EOWNERDEAD, -1010, "acquired, but the previous holder died holding it")    \
  X(EWORKER, -1011, "the worker process died while running the task")          \
  X(ETASK, -1012, "the task returned an error")                                \
  X(ENOHMAC, -1018,                                                            \
    "HMAC unavailable: no libcrypto and no built-in for this digest")

enum mp_error {
#define MP_ERROR_ENUM_(name, value, message) MP_##name = (value),
  MP_ERROR_MAP(MP_ERROR_ENUM_)
#undef MP_ERROR_ENUM_
  /* Bad arguments are reported with the system's own code. */
  MP_EINVAL = -EINVAL,
};

/* A message for an error code: one of the MP_E* codes or -errno. Never
 * NULL; the string is static. */
MP_API const char *mp_strerror(int err);

/* The symbolic name of an error code ("MP_ETIMEDOUT", "ENOENT"). Never
 * NULL; the string is static. */
MP_API const char *mp_errname(int err);

/* Frees a buffer the library returned with malloc (recv_bytes, get, ...). */
MP_API void mp_free(void *buf);

#ifdef __cplusplus
}
#endif
#endif

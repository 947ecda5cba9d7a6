/* Error codes: the messages and names come from MP_ERROR_MAP. */
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

const char *mp_strerror(int err) {
  switch (err) {
#define MP_ERROR_MESSAGE_(name, value, message)                                \
  case (value):                                                                \
    return (message);
    MP_ERROR_MAP(MP_ERROR_MESSAGE_)
#undef MP_ERROR_MESSAGE_
  case 0:
    return "success";
  }
  const char *text = err < 0 ? strerrordesc_np(-err) : NULL;
  return text ? text : "unknown error";
}

const char *mp_errname(int err) {
  switch (err) {
#define MP_ERROR_NAME_(name, value, message)                                   \
  case (value):                                                                \
    return "MP_" #name;
    MP_ERROR_MAP(MP_ERROR_NAME_)
#undef MP_ERROR_NAME_
  case 0:
    return "OK";
  }
  const char *name = err < 0 ? strerrorname_np(-err) : NULL;
  return name ? name : "UNKNOWN";
}

void mp_free(void *buf) {
  free(buf);
}

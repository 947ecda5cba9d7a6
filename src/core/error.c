/* Error codes: the library's own messages and names come from
 * MP_ERROR_MAP; a system code's name from the table below (glibc's
 * strerrorname_np is 2.32+ and musl has none), its message from strerror. */
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

/* The names of errno values, the first of two aliases (EAGAIN before
 * EWOULDBLOCK) first. Every Linux C library defines these, the last two
 * since Linux 2.6.32. */
static const struct errno_name {
  int value;
  const char *name;
} errno_names[] = {
#define NAME(e)                                                                \
  { (e), #e }
    NAME(EPERM),
    NAME(ENOENT),
    NAME(ESRCH),
    NAME(EINTR),
    NAME(EIO),
    NAME(ENXIO),
    NAME(E2BIG),
    NAME(ENOEXEC),
    NAME(EBADF),
    NAME(ECHILD),
    NAME(EAGAIN),
    NAME(ENOMEM),
    NAME(EACCES),
    NAME(EFAULT),
    NAME(ENOTBLK),
    NAME(EBUSY),
    NAME(EEXIST),
    NAME(EXDEV),
    NAME(ENODEV),
    NAME(ENOTDIR),
    NAME(EISDIR),
    NAME(EINVAL),
    NAME(ENFILE),
    NAME(EMFILE),
    NAME(ENOTTY),
    NAME(ETXTBSY),
    NAME(EFBIG),
    NAME(ENOSPC),
    NAME(ESPIPE),
    NAME(EROFS),
    NAME(EMLINK),
    NAME(EPIPE),
    NAME(EDOM),
    NAME(ERANGE),
    NAME(EDEADLK),
    NAME(ENAMETOOLONG),
    NAME(ENOLCK),
    NAME(ENOSYS),
    NAME(ENOTEMPTY),
    NAME(ELOOP),
    NAME(ENOMSG),
    NAME(EIDRM),
    NAME(ECHRNG),
    NAME(EL2NSYNC),
    NAME(EL3HLT),
    NAME(EL3RST),
    NAME(ELNRNG),
    NAME(EUNATCH),
    NAME(ENOCSI),
    NAME(EL2HLT),
    NAME(EBADE),
    NAME(EBADR),
    NAME(EXFULL),
    NAME(ENOANO),
    NAME(EBADRQC),
    NAME(EBADSLT),
    NAME(EBFONT),
    NAME(ENOSTR),
    NAME(ENODATA),
    NAME(ETIME),
    NAME(ENOSR),
    NAME(ENONET),
    NAME(ENOPKG),
    NAME(EREMOTE),
    NAME(ENOLINK),
    NAME(EADV),
    NAME(ESRMNT),
    NAME(ECOMM),
    NAME(EPROTO),
    NAME(EMULTIHOP),
    NAME(EDOTDOT),
    NAME(EBADMSG),
    NAME(EOVERFLOW),
    NAME(ENOTUNIQ),
    NAME(EBADFD),
    NAME(EREMCHG),
    NAME(ELIBACC),
    NAME(ELIBBAD),
    NAME(ELIBSCN),
    NAME(ELIBMAX),
    NAME(ELIBEXEC),
    NAME(EILSEQ),
    NAME(ERESTART),
    NAME(ESTRPIPE),
    NAME(EUSERS),
    NAME(ENOTSOCK),
    NAME(EDESTADDRREQ),
    NAME(EMSGSIZE),
    NAME(EPROTOTYPE),
    NAME(ENOPROTOOPT),
    NAME(EPROTONOSUPPORT),
    NAME(ESOCKTNOSUPPORT),
    NAME(EOPNOTSUPP),
    NAME(EPFNOSUPPORT),
    NAME(EAFNOSUPPORT),
    NAME(EADDRINUSE),
    NAME(EADDRNOTAVAIL),
    NAME(ENETDOWN),
    NAME(ENETUNREACH),
    NAME(ENETRESET),
    NAME(ECONNABORTED),
    NAME(ECONNRESET),
    NAME(ENOBUFS),
    NAME(EISCONN),
    NAME(ENOTCONN),
    NAME(ESHUTDOWN),
    NAME(ETOOMANYREFS),
    NAME(ETIMEDOUT),
    NAME(ECONNREFUSED),
    NAME(EHOSTDOWN),
    NAME(EHOSTUNREACH),
    NAME(EALREADY),
    NAME(EINPROGRESS),
    NAME(ESTALE),
    NAME(EUCLEAN),
    NAME(ENOTNAM),
    NAME(ENAVAIL),
    NAME(EISNAM),
    NAME(EREMOTEIO),
    NAME(EDQUOT),
    NAME(ENOMEDIUM),
    NAME(EMEDIUMTYPE),
    NAME(ECANCELED),
    NAME(ENOKEY),
    NAME(EKEYEXPIRED),
    NAME(EKEYREVOKED),
    NAME(EKEYREJECTED),
    NAME(EOWNERDEAD),
    NAME(ENOTRECOVERABLE),
#ifdef ERFKILL
    NAME(ERFKILL),
#endif
#ifdef EHWPOISON
    NAME(EHWPOISON),
#endif
#undef NAME
};

static const char *errno_name(int value) {
  for (size_t i = 0; i < sizeof errno_names / sizeof *errno_names; i++)
    if (errno_names[i].value == value)
      return errno_names[i].name;
  return NULL;
}

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
  /* strerror returns a static string for every code it knows: asked only
   * for those (an unknown one would use its per-thread buffer). */
  return err < 0 && errno_name(-err) ? strerror(-err) : "unknown error";
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
  const char *name = err < 0 ? errno_name(-err) : NULL;
  return name ? name : "UNKNOWN";
}

void mp_free(void *buf) {
  free(buf);
}

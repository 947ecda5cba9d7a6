/* HMAC from OpenSSL's libcrypto, loaded with dlopen on first use.
 *
 * Only the forkserver handshake and authenticated connections need it; a
 * program that never uses them does not load the 4 MiB library (which would
 * otherwise be relocated in every spawned child too). OpenSSL 3 and 1.1
 * (Debian 11, Ubuntu 20.04, RHEL 8) are tried by their runtime names, then
 * the development link. Where none loads (a static program, a machine
 * without OpenSSL) HMAC-SHA256 comes from sha256.c, which is what the
 * forkserver and Python 3.12's handshake use; other digests (MD5, which
 * Python <= 3.11 peers insist on, SHA-384, SHA3) then answer
 * MP_ENOHMAC. */
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "compat.h"

#include "testing.h"
#include "core/crypto.h"

typedef const void *(*evp_get_digestbyname_fn)(const char *name);
typedef unsigned char *(*hmac_fn)(const void *evp_md, const void *key,
                                  int key_len, const unsigned char *data,
                                  size_t data_len, unsigned char *md,
                                  unsigned int *md_len);
typedef int (*crypto_memcmp_fn)(const void *a, const void *b, size_t len);

static struct {
  pthread_once_t once;
  evp_get_digestbyname_fn get_digest;
  hmac_fn hmac;
  crypto_memcmp_fn memcmp_const;
} crypto = {PTHREAD_ONCE_INIT, NULL, NULL, NULL};

static void load(void) {
  static const char *const names[] = {"libcrypto.so.3", "libcrypto.so.1.1",
                                      "libcrypto.so"};
  void *lib = NULL;
  for (size_t i = 0; !lib && i < sizeof names / sizeof *names; i++)
    lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (!lib)
    return;
  *(void **)&crypto.get_digest = dlsym(lib, "EVP_get_digestbyname");
  *(void **)&crypto.hmac = dlsym(lib, "HMAC");
  *(void **)&crypto.memcmp_const = dlsym(lib, "CRYPTO_memcmp");
}

void mp__crypto_without_libcrypto(void) {
  pthread_once(&crypto.once, load);
  crypto.get_digest = NULL;
  crypto.hmac = NULL;
  crypto.memcmp_const = NULL;
}

int mp__hmac_libcrypto(const char *digest, const void *key, size_t key_len,
                       const void *msg, size_t msg_len, unsigned char *out,
                       size_t out_cap) {
  pthread_once(&crypto.once, load);
  if (!crypto.get_digest || !crypto.hmac)
    return -ENOENT;
  const void *md = crypto.get_digest(digest);
  if (!md)
    return MP_EINVAL;
  unsigned char mac[64];
  unsigned int len = 0;
  if (!crypto.hmac(md, key, (int)key_len, msg, msg_len, mac, &len) ||
      len > out_cap)
    return MP_EINVAL;
  memcpy(out, mac, len);
  return (int)len;
}

int mp__hmac(const char *digest, const void *key, size_t key_len,
             const void *msg, size_t msg_len, unsigned char *out,
             size_t out_cap) {
  int rc = mp__hmac_libcrypto(digest, key, key_len, msg, msg_len, out, out_cap);
  if (rc != -ENOENT)
    return rc;
  if (strcmp(digest, "sha256") != 0)
    return MP_ENOHMAC;
  if (out_cap < 32)
    return MP_EINVAL;
  mp__hmac_sha256(key, key_len, msg, msg_len, out);
  return 32;
}

int mp__memcmp_const(const void *a, const void *b, size_t len) {
  pthread_once(&crypto.once, load);
  if (crypto.memcmp_const)
    return crypto.memcmp_const(a, b, len);
  /* No libcrypto: the same in plain C (no early exit). */
  const unsigned char *x = a, *y = b;
  unsigned char diff = 0;
  for (size_t i = 0; i < len; i++)
    diff |= (unsigned char)(x[i] ^ y[i]);
  return diff;
}

/* /dev/urandom, read to the end of n or to an error. */
static int urandom(unsigned char *p, size_t n) {
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  int rc = 0;
  for (size_t got = 0; got < n && rc == 0;) {
    ssize_t r = read(fd, p + got, n - got);
    if (r > 0)
      got += (size_t)r;
    else if (r == 0)
      rc = -EIO;
    else if (errno != EINTR)
      rc = -errno;
  }
  close(fd);
  return rc;
}

int mp__random(void *buf, size_t n) {
  unsigned char *p = buf;
  for (size_t got = 0; got < n;) {
    ssize_t r = getrandom(p + got, n - got, 0);
    if (r > 0)
      got += (size_t)r;
    else if (r < 0 && MP__UNSUPPORTED(errno))
      return urandom(p + got, n - got); /* kernel < 3.17, or a sandbox */
    else if (r < 0 && errno != EINTR)
      return -errno;
    else if (r == 0)
      return -EIO;
  }
  return 0;
}

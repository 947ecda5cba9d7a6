/* HMAC from OpenSSL's libcrypto, loaded with dlopen on first use.
 *
 * Only the forkserver handshake and authenticated connections need it; a
 * program that never uses them does not load the 4 MiB library (which would
 * otherwise be relocated in every spawned child too). */
#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

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
  static const char *const names[] = {"libcrypto.so.3", "libcrypto.so"};
  void *lib = NULL;
  for (size_t i = 0; !lib && i < sizeof names / sizeof *names; i++)
    lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (!lib)
    return;
  *(void **)&crypto.get_digest = dlsym(lib, "EVP_get_digestbyname");
  *(void **)&crypto.hmac = dlsym(lib, "HMAC");
  *(void **)&crypto.memcmp_const = dlsym(lib, "CRYPTO_memcmp");
}

int mp__hmac(const char *digest, const void *key, size_t key_len,
             const void *msg, size_t msg_len, unsigned char *out,
             size_t out_cap) {
  pthread_once(&crypto.once, load);
  if (!crypto.get_digest || !crypto.hmac)
    return -ENOSYS;
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

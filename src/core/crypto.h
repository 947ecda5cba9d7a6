/* Message authentication for the forkserver handshake and authenticated
 * connections (internal). */
#ifndef MPROC_CRYPTO_H
#define MPROC_CRYPTO_H

#include "core/internal.h"

/* HMAC through libcrypto, loaded on first use (so that programs that never
 * authenticate do not pay for loading it); without libcrypto, sha256 from
 * the built-in and MP_ENOHMAC for other digests. digest: "sha256", "md5",
 * ... Returns the MAC length, or a negative code. */
int mp__hmac(const char *digest, const void *key, size_t key_len,
             const void *msg, size_t msg_len, unsigned char *out,
             size_t out_cap);
/* The built-in HMAC-SHA256 (sha256.c): out gets 32 bytes. */
void mp__hmac_sha256(const void *key, size_t key_len, const void *msg,
                     size_t msg_len, unsigned char out[32]);
/* Constant-time comparison: 0 when equal. */
int mp__memcmp_const(const void *a, const void *b, size_t len);

#endif

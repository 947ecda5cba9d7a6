/* The built-in HMAC-SHA256 (used where libcrypto cannot be loaded: static
 * programs, machines without OpenSSL): RFC 4231's vectors, and the same MAC
 * as OpenSSL's libcrypto over thousands of random keys and messages of
 * every length around SHA-256's block boundaries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "support.h"
#include "testing.h"

static void hex(const unsigned char *mac, char out[65]) {
  for (int i = 0; i < 32; i++)
    snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

static void expect(const void *key, size_t key_len, const char *msg,
                   const char *want) {
  unsigned char mac[32];
  char text[65];
  mp__hmac_sha256(key, key_len, msg, strlen(msg), mac);
  hex(mac, text);
  assert_string_equal(text, want);
}

static void test_known_vectors(void **state) {
  (void)state;
  unsigned char k20[20], k131[131];
  memset(k20, 0x0b, sizeof k20);
  memset(k131, 0xaa, sizeof k131);
  expect(k20, sizeof k20, "Hi There",
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  expect("Jefe", 4, "what do ya want for nothing?",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  expect(k131, sizeof k131,
         "Test Using Larger Than Block-Size Key - Hash Key First",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  expect("", 0, "",
         "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

/* xorshift64*: reproducible from the seed printed on a failure. */
static uint64_t next(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

static void test_same_as_libcrypto(void **state) {
  (void)state;
  unsigned char probe[64];
  if (mp__hmac_libcrypto("sha256", "k", 1, "m", 1, probe, sizeof probe) < 0)
    skip(); /* no libcrypto here to compare with */
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  uint64_t seed = ((uint64_t)now.tv_sec << 30 ^ (uint64_t)now.tv_nsec) | 1;
  print_message("seed %llu\n", (unsigned long long)seed);
  unsigned char key[200], msg[700], mine[32], theirs[64];
  for (int i = 0; i < 5000; i++) {
    /* Every length from 0 to 199 for keys (the 64-byte block: hashed above
     * it), 0 to 699 for messages (the padding's 55/56/64 boundaries). */
    size_t key_len = (size_t)i % sizeof key;
    size_t msg_len = i < 700 ? (size_t)i : next(&seed) % sizeof msg;
    for (size_t j = 0; j < key_len; j++)
      key[j] = (unsigned char)next(&seed);
    for (size_t j = 0; j < msg_len; j++)
      msg[j] = (unsigned char)next(&seed);
    mp__hmac_sha256(key, key_len, msg, msg_len, mine);
    assert_int_equal(32, mp__hmac_libcrypto("sha256", key, key_len, msg,
                                            msg_len, theirs, sizeof theirs));
    if (memcmp(mine, theirs, 32) != 0)
      fail_msg("differs at round %d (key %zu, message %zu bytes)", i, key_len,
               msg_len);
  }
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_known_vectors),
      mpt_test(test_same_as_libcrypto),
  };
  return MPT_RUN(argc, argv, tests);
}

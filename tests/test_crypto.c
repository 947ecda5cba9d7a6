/* The built-in HMAC-SHA256 (used where libcrypto cannot be loaded: static
 * programs, machines without OpenSSL): RFC 4231's vectors, and the same MAC
 * as OpenSSL's libcrypto over thousands of random keys and messages of
 * every length around SHA-256's block boundaries. */
#include <pthread.h>
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

/* ---- without libcrypto ---------------------------------------------------
 * As in a static program or on a machine without OpenSSL: authenticated
 * connections and the forkserver work on the built-in alone. */

#define KEY "a key both sides know"

typedef struct client {
  char address[128];
  const char *key;
  int rc;
} client_t;

static void *connect_and_send(void *arg) {
  client_t *c = arg;
  mp_conn_t *conn = NULL;
  mp_client_opts_t opts = {.timeout = 30};
  c->rc = mp_client_with_opts(c->address, c->key, strlen(c->key), &opts, &conn);
  if (c->rc == 0)
    c->rc = mp_conn_send_bytes(conn, "hello", 5);
  mp_conn_free(conn);
  return NULL;
}

/* A listener with KEY accepts a client with key; returns the two codes. */
static void handshake(const char *key, int *accept_rc, int *client_rc) {
  mp_listener_t *l = mp_listener_new("tcp:127.0.0.1:0", KEY, strlen(KEY));
  assert_non_null(l);
  client_t c = {.key = key};
  snprintf(c.address, sizeof c.address, "%s", mp_listener_address(l));
  pthread_t thread;
  assert_int_equal(0, pthread_create(&thread, NULL, connect_and_send, &c));
  mp_conn_t *conn = NULL;
  *accept_rc = mp_listener_accept(l, 30, &conn);
  if (*accept_rc == 0) {
    void *buf = NULL;
    size_t len = 0;
    assert_mp_ok(mp_conn_recv_bytes(conn, &buf, &len));
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 5);
    mp_free(buf);
  }
  mp_conn_free(conn);
  pthread_join(thread, NULL);
  mp_listener_free(l);
  *client_rc = c.rc;
}

static void child_exits_7(void *arg) {
  (void)arg;
  exit(7);
}

/* A Python client (python3 on the PATH) with KEY. Python <= 3.11 answers
 * in HMAC-MD5, which only libcrypto has; 3.12 and later in sha256. */
typedef struct python_client {
  char address[128];
  int rc, status;
  char *output;
} python_client_t;

static void *run_python_client(void *arg) {
  python_client_t *c = arg;
  char code[512];
  snprintf(code, sizeof code,
           "import sys\n"
           "from multiprocessing.connection import Client\n"
           "print('minor', sys.version_info.minor, flush=True)\n"
           "c = Client(('127.0.0.1', %s), authkey=b'" KEY "')\n"
           "c.send_bytes(b'hello')\n",
           strrchr(c->address, ':') + 1);
  char *argv[] = {"/usr/bin/env", "python3", "-c", code, NULL};
  c->rc = mpt_run_command(argv, 60, &c->output, &c->status);
  return NULL;
}

static void test_python_peer_without_libcrypto(void **state) {
  (void)state;
  mp__crypto_without_libcrypto();
  mp_listener_t *l = mp_listener_new("tcp:127.0.0.1:0", KEY, strlen(KEY));
  assert_non_null(l);
  python_client_t c = {0};
  snprintf(c.address, sizeof c.address, "%s", mp_listener_address(l));
  pthread_t thread;
  assert_int_equal(0, pthread_create(&thread, NULL, run_python_client, &c));
  mp_conn_t *conn = NULL;
  int rc = mp_listener_accept(l, 30, &conn);
  mp_conn_free(conn);
  pthread_join(thread, NULL);
  mp_listener_free(l);
  int minor = 0;
  if (c.rc != 0 || !c.output || sscanf(c.output, "minor %d", &minor) != 1) {
    free(c.output);
    skip(); /* no python3 here */
  }
  print_message("python3.%d: %s\n", minor, mp_errname(rc));
  free(c.output);
  assert_mp(minor <= 11 ? MP_ENOHMAC : 0, rc);
}

static void test_without_libcrypto(void **state) {
  (void)state;
  mp__crypto_without_libcrypto();
  unsigned char mac[64];
  assert_int_equal(
      -ENOENT, mp__hmac_libcrypto("sha256", "k", 1, "m", 1, mac, sizeof mac));
  int accepted, connected;
  handshake(KEY, &accepted, &connected);
  assert_mp_ok(accepted);
  assert_mp_ok(connected);
  handshake("another key", &accepted, &connected);
  assert_mp(MP_EAUTH, accepted); /* a wrong key, not a missing HMAC */
  assert_mp(MP_EAUTH, connected);
  /* The forkserver's handshake: this side signs with the built-in. */
  mp_process_opts_t opts = {.ctx = mp_get_context("forkserver")};
  mp_process_t *p = mp_process_new(child_exits_7, NULL, 0, &opts);
  int rc = mp_process_start(p);
  if (rc == -ENOEXEC) { /* under qemu-user: this program cannot exec */
    print_message("[  SKIPPED ] forkserver: cannot exec here\n");
    mp_process_free(p);
    return;
  }
  assert_mp_ok(rc);
  assert_mp_ok(mp_process_join(p, 60));
  int code = 0;
  assert_mp_ok(mp_process_exitcode(p, &code));
  assert_int_equal(code, 7);
  mp_process_free(p);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_known_vectors),
      mpt_test(test_same_as_libcrypto),
      /* Last: no libcrypto from the first of these on. */
      mpt_test(test_without_libcrypto),
      mpt_test(test_python_peer_without_libcrypto),
  };
  return MPT_RUN(argc, argv, tests);
}

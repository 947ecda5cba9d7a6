/* Python's connection authentication (multiprocessing.connection's
 * deliver_challenge / answer_challenge), byte for byte:
 *
 *   challenger                            answerer
 *   "#CHALLENGE#" + MESSAGE        ->
 *                                  <-     RESPONSE
 *   "#WELCOME#" or "#FAILURE#"     ->
 *
 * every piece one frame of Connection.send_bytes, at most 256 bytes.
 * MESSAGE is "{sha256}" + 40 random bytes from Python 3.12 on, 20 random
 * bytes (HMAC-MD5 only) before. RESPONSE is the raw 16-byte HMAC-MD5 of
 * MESSAGE for a 20-byte MESSAGE (or from a 3.11 answerer), otherwise
 * "{digest}" + HMAC-digest(key, MESSAGE), the digest named by MESSAGE's
 * prefix; the MAC always covers the whole MESSAGE, prefix included. A
 * challenger accepts any allowed digest in the response, and tells the
 * legacy form by its length (16 or 20 bytes). The listener challenges
 * first, then answers; the client the other way round. */
#include <string.h>

#include "conn/internal.h"
#include "core/crypto.h"

#define CHALLENGE        "#CHALLENGE#"
#define CHALLENGE_LEN    (sizeof CHALLENGE - 1)
#define WELCOME          "#WELCOME#"
#define FAILURE          "#FAILURE#"
#define NONCE_LEN        40 /* Python's MESSAGE_LENGTH */
#define LEGACY_NONCE_LEN 20 /* Python <= 3.11: MESSAGE_LENGTH, HMAC-MD5 */
#define MD5_LEN          16
#define DIGEST_NAME_MAX  8 /* "sha3_384", Python's _MAX_DIGEST_LEN */
#define OFFERED_DIGEST   "sha256"
#define MAC_MAX          64 /* OpenSSL's EVP_MAX_MD_SIZE */
/* "{" name "}" and the largest MAC. */
#define RESPONSE_MAX (2 + DIGEST_NAME_MAX + MAC_MAX)

typedef struct digest {
  const char *name;    /* Python's name, in the "{name}" prefix */
  const char *openssl; /* libcrypto's name for it */
} digest_t;

/* Python's _ALLOWED_DIGESTS; md5 first: the legacy form uses it. */
static const digest_t digests[] = {
    {"md5", "md5"},           {"sha256", "sha256"},     {"sha384", "sha384"},
    {"sha3_256", "sha3-256"}, {"sha3_384", "sha3-384"},
};
#define MD5_DIGEST (&digests[0])

bool mp__auth_available(void) {
  unsigned char mac[MAC_MAX];
  return mp__hmac("sha256", "k", 1, "m", 1, mac, sizeof mac) > 0;
}

/* Python's _get_digest_name_and_payload: the digest a challenge or a
 * response asks for, and where its payload starts. *legacy: the unprefixed
 * MD5 form (16 or 20 bytes). MP_EAUTH for anything else. */
static int parse_digest(const uint8_t *msg, size_t len, const digest_t **d,
                        size_t *payload_at, bool *legacy) {
  *legacy = len == LEGACY_NONCE_LEN || len == MD5_LEN;
  if (*legacy) {
    *d = MD5_DIGEST;
    *payload_at = 0;
    return 0;
  }
  if (len < 2 || msg[0] != '{')
    return MP_EAUTH;
  /* The first '}' within the longest name's reach ends the name. */
  const uint8_t *end =
      memchr(msg + 1, '}',
             len - 1 < DIGEST_NAME_MAX + 1 ? len - 1 : DIGEST_NAME_MAX + 1);
  if (!end)
    return MP_EAUTH;
  size_t name_len = (size_t)(end - msg - 1);
  for (size_t i = 0; i < sizeof digests / sizeof digests[0]; i++) {
    if (strlen(digests[i].name) == name_len &&
        memcmp(digests[i].name, msg + 1, name_len) == 0) {
      *d = &digests[i];
      *payload_at = name_len + 2;
      return 0;
    }
  }
  return MP_EAUTH;
}

/* HMAC from libcrypto (loaded on first use, see crypto.c). */
static int hmac(const digest_t *d, const void *key, size_t key_len,
                const uint8_t *msg, size_t len, uint8_t *out,
                unsigned *out_len) {
  static const unsigned char no_key = 0; /* OpenSSL wants a pointer */
  if (key_len > INT32_MAX)
    return MP_EINVAL;
  int n = mp__hmac(d->openssl, key_len ? key : &no_key, key_len, msg, len, out,
                   MAC_MAX);
  if (n == MP_ENOHMAC)
    return n; /* no libcrypto, and the built-in has only sha256 */
  if (n < 0)
    return MP_EAUTH; /* MD5 refused in FIPS mode */
  *out_len = (unsigned)n;
  return 0;
}

/* Python's _create_response: the answer to a challenge MESSAGE. */
static int create_response(const void *key, size_t key_len, const uint8_t *msg,
                           size_t len, uint8_t *out, size_t *out_len) {
  const digest_t *d;
  size_t payload_at;
  bool legacy;
  unsigned mac_len;
  int rc = parse_digest(msg, len, &d, &payload_at, &legacy);
  if (rc < 0)
    return rc;
  if (legacy) {
    if (hmac(d, key, key_len, msg, len, out, &mac_len) == 0) {
      *out_len = mac_len;
      return 0;
    }
    d = &digests[1]; /* no MD5 here: answer in sha256, as Python does */
  }
  size_t name_len = strlen(d->name);
  out[0] = '{';
  memcpy(out + 1, d->name, name_len);
  out[name_len + 1] = '}';
  rc = hmac(d, key, key_len, msg, len, out + name_len + 2, &mac_len);
  *out_len = name_len + 2 + mac_len;
  return rc;
}

/* Python's _verify_challenge: whether RESPONSE answers MESSAGE. */
static int verify_response(const void *key, size_t key_len, const uint8_t *msg,
                           size_t len, const uint8_t *response,
                           size_t response_len) {
  const digest_t *d;
  size_t mac_at;
  bool legacy;
  uint8_t expected[MAC_MAX];
  unsigned expected_len;
  int rc = parse_digest(response, response_len, &d, &mac_at, &legacy);
  if (rc == 0)
    rc = hmac(d, key, key_len, msg, len, expected, &expected_len);
  if (rc == 0 && (response_len - mac_at != expected_len ||
                  mp__memcmp_const(expected, response + mac_at, expected_len)))
    rc = MP_EAUTH;
  explicit_bzero(expected, sizeof expected);
  return rc;
}

/* A frame of the handshake: refused from its header if over 256 bytes. */
static int recv_frame(mp_conn_t *c, uint8_t *buf, size_t *len,
                      const mp__deadline_t *d) {
  int rc = mp__conn_recv(c, buf, MP__AUTH_FRAME_MAX, len, d);
  return rc == -EMSGSIZE || rc == -EPROTO ? MP_EAUTH : rc;
}

/* Python's deliver_challenge. */
static int deliver_challenge(mp_conn_t *c, const void *key, size_t key_len,
                             const mp__deadline_t *d) {
  static const char prefix[] = CHALLENGE "{" OFFERED_DIGEST "}";
  uint8_t challenge[sizeof prefix - 1 + NONCE_LEN];
  uint8_t response[MP__AUTH_FRAME_MAX];
  size_t response_len;
  memcpy(challenge, prefix, sizeof prefix - 1);
  int rc = mp__random(challenge + sizeof prefix - 1, NONCE_LEN);
  if (rc == 0)
    rc = mp__conn_send(c, challenge, sizeof challenge, d);
  if (rc == 0)
    rc = recv_frame(c, response, &response_len, d);
  if (rc < 0)
    return rc;
  /* The MAC covers MESSAGE: the challenge without "#CHALLENGE#". */
  rc =
      verify_response(key, key_len, challenge + CHALLENGE_LEN,
                      sizeof challenge - CHALLENGE_LEN, response, response_len);
  if (rc < 0) {
    mp__conn_send(c, FAILURE, sizeof FAILURE - 1, d);
    return rc == MP_ENOHMAC ? rc : MP_EAUTH;
  }
  return mp__conn_send(c, WELCOME, sizeof WELCOME - 1, d);
}

/* Python's answer_challenge. */
static int answer_challenge(mp_conn_t *c, const void *key, size_t key_len,
                            const mp__deadline_t *d) {
  uint8_t frame[MP__AUTH_FRAME_MAX], response[RESPONSE_MAX];
  size_t len, response_len;
  int rc = recv_frame(c, frame, &len, d);
  if (rc < 0)
    return rc;
  if (len < CHALLENGE_LEN + LEGACY_NONCE_LEN ||
      memcmp(frame, CHALLENGE, CHALLENGE_LEN) != 0)
    return MP_EAUTH; /* not a challenge, or too short to be one */
  rc = create_response(key, key_len, frame + CHALLENGE_LEN, len - CHALLENGE_LEN,
                       response, &response_len);
  if (rc == 0)
    rc = mp__conn_send(c, response, response_len, d);
  if (rc == 0)
    rc = recv_frame(c, frame, &len, d);
  if (rc < 0)
    return rc;
  if (len != sizeof WELCOME - 1 || memcmp(frame, WELCOME, len) != 0)
    return MP_EAUTH; /* "#FAILURE#": our key is not theirs */
  return 0;
}

int mp__auth_server(mp_conn_t *c, const void *key, size_t key_len,
                    const mp__deadline_t *deadline) {
  int rc = deliver_challenge(c, key, key_len, deadline);
  return rc < 0 ? rc : answer_challenge(c, key, key_len, deadline);
}

int mp__auth_client(mp_conn_t *c, const void *key, size_t key_len,
                    const mp__deadline_t *deadline) {
  int rc = answer_challenge(c, key, key_len, deadline);
  return rc < 0 ? rc : deliver_challenge(c, key, key_len, deadline);
}

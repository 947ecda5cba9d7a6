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
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

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
  unsigned mac_len = 0;
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

/* ---- the listener's side, without blocking -------------------------------
 * The same exchange as deliver_challenge then answer_challenge, as a state
 * machine over a non-blocking socket, so that one thread can carry many
 * handshakes at once (listener.c). Frames are read exactly (header, then
 * payload): nothing the peer sends after the handshake is consumed. */
_Static_assert(sizeof(((mp__handshake_t *)0)->message) ==
                   sizeof "{" OFFERED_DIGEST "}" - 1 + NONCE_LEN,
               "the handshake's MESSAGE");

enum handshake_step {
  SEND_CHALLENGE,
  RECV_RESPONSE,
  SEND_VERDICT,
  RECV_CHALLENGE,
  SEND_RESPONSE,
  RECV_WELCOME,
};

static void put_frame(mp__handshake_t *h, const void *payload, size_t len) {
  for (int i = 0; i < 4; i++)
    h->out[i] = (uint8_t)(len >> (24 - 8 * i));
  memcpy(h->out + 4, payload, len);
  h->out_len = 4 + len;
  h->out_done = 0;
}

int mp__handshake_begin(mp__handshake_t *h) {
  static const char prefix[] = "{" OFFERED_DIGEST "}";
  memset(h, 0, sizeof *h);
  memcpy(h->message, prefix, sizeof prefix - 1);
  int rc = mp__random(h->message + sizeof prefix - 1, NONCE_LEN);
  if (rc < 0)
    return rc;
  uint8_t challenge[CHALLENGE_LEN + sizeof h->message];
  memcpy(challenge, CHALLENGE, CHALLENGE_LEN);
  memcpy(challenge + CHALLENGE_LEN, h->message, sizeof h->message);
  put_frame(h, challenge, sizeof challenge);
  h->step = SEND_CHALLENGE;
  return 0;
}

/* Writes what is left of the frame in h->out: 0 when all of it went,
 * POLLOUT to wait, MP_ECLOSED. */
static int flush_frame(mp__handshake_t *h, int fd) {
  while (h->out_done < h->out_len) {
    ssize_t n = send(fd, h->out + h->out_done, h->out_len - h->out_done,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0)
      h->out_done += (size_t)n;
    else if (n < 0 && errno == EINTR)
      continue;
    else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return POLLOUT;
    else
      return MP_ECLOSED;
  }
  return 0;
}

/* Reads the next frame into h->in: 0 once it is whole (h->in_len is then
 * 4 + its length), POLLIN to wait, MP_EAUTH for a frame over
 * MP__AUTH_FRAME_MAX (refused from its header, as Python's recv_bytes(256)
 * does), MP_ECLOSED. */
static int fill_frame(mp__handshake_t *h, int fd) {
  for (;;) {
    size_t want = 4;
    if (h->in_len >= 4) {
      uint32_t len = (uint32_t)h->in[0] << 24 | (uint32_t)h->in[1] << 16 |
                     (uint32_t)h->in[2] << 8 | h->in[3];
      if (len > MP__AUTH_FRAME_MAX)
        return MP_EAUTH; /* also -1, the 8-byte form */
      want = 4 + len;
      if (h->in_len == want)
        return 0;
    }
    ssize_t n = recv(fd, h->in + h->in_len, want - h->in_len, MSG_DONTWAIT);
    if (n > 0)
      h->in_len += (size_t)n;
    else if (n < 0 && errno == EINTR)
      continue;
    else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return POLLIN;
    else
      return MP_ECLOSED;
  }
}

/* One step on a whole frame received: what to send next. */
static int handshake_received(mp__handshake_t *h, const void *key,
                              size_t key_len) {
  const uint8_t *frame = h->in + 4;
  size_t len = h->in_len - 4;
  h->in_len = 0;
  if (h->step == RECV_RESPONSE) {
    int rc = verify_response(key, key_len, h->message, sizeof h->message, frame,
                             len);
    h->failed = rc < 0 ? rc : 0;
    put_frame(h, h->failed ? FAILURE : WELCOME,
              h->failed ? sizeof FAILURE - 1 : sizeof WELCOME - 1);
    h->step = SEND_VERDICT;
    return 0;
  }
  if (h->step == RECV_CHALLENGE) {
    uint8_t response[RESPONSE_MAX];
    size_t response_len;
    if (len < CHALLENGE_LEN + LEGACY_NONCE_LEN ||
        memcmp(frame, CHALLENGE, CHALLENGE_LEN) != 0)
      return MP_EAUTH; /* not a challenge, or too short to be one */
    int rc = create_response(key, key_len, frame + CHALLENGE_LEN,
                             len - CHALLENGE_LEN, response, &response_len);
    if (rc < 0)
      return rc;
    put_frame(h, response, response_len);
    h->step = SEND_RESPONSE;
    return 0;
  }
  /* RECV_WELCOME: "#FAILURE#" means our key is not theirs. */
  if (len != sizeof WELCOME - 1 || memcmp(frame, WELCOME, len) != 0)
    return MP_EAUTH;
  return 1;
}

int mp__handshake_step(mp__handshake_t *h, int fd, const void *key,
                       size_t key_len) {
  for (;;) {
    int rc = flush_frame(h, fd);
    if (rc != 0)
      return rc;
    switch (h->step) {
    case SEND_CHALLENGE:
      h->step = RECV_RESPONSE;
      continue;
    case SEND_VERDICT:
      if (h->failed) /* our own lack of a digest is said as such */
        return h->failed == MP_ENOHMAC ? MP_ENOHMAC : MP_EAUTH;
      h->step = RECV_CHALLENGE;
      continue;
    case SEND_RESPONSE:
      h->step = RECV_WELCOME;
      continue;
    default:
      break;
    }
    rc = fill_frame(h, fd);
    if (rc != 0)
      return rc;
    rc = handshake_received(h, key, key_len);
    if (rc != 0)
      return rc == 1 ? 0 : rc;
  }
}

int mp__auth_client(mp_conn_t *c, const void *key, size_t key_len,
                    const mp__deadline_t *deadline) {
  int rc = answer_challenge(c, key, key_len, deadline);
  return rc < 0 ? rc : deliver_challenge(c, key, key_len, deadline);
}

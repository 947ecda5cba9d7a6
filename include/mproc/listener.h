/* mproc: connections between unrelated processes (Python's
 * multiprocessing.connection.Listener and Client), authenticated with
 * Python's HMAC challenge/response, so C and Python programs connect to
 * each other in both directions.
 *
 * Addresses are strings:
 *   "unix:/path/to/socket"  a Unix socket file (created with mode 0600,
 *                           removed when the listener is closed)
 *   "unix:@name"            a socket in Linux's abstract namespace (Python
 *                           writes it "\0name")
 *   "tcp:HOST:PORT"         TCP over IPv4 or IPv6; HOST is a name, an IPv4
 *                           address or a bracketed IPv6 one ("tcp:[::1]:0");
 *                           port 0 lets the system pick a free one.
 * (Python's Listener and Client only speak IPv4 for TCP addresses: IPv6
 * works between mproc programs.)
 *
 * Authentication. With an authkey the listener challenges the client, then
 * answers the client's challenge (Python's deliver_challenge then
 * answer_challenge; the client does the reverse). The listener sends
 * Python 3.12's challenge ("{sha256}" and 40 random bytes) and accepts a
 * response in any digest Python allows (md5, sha256, sha384, sha3_256,
 * sha3_384), including the raw HMAC-MD5 of Python 3.11 and earlier; the
 * client answers a 3.11 listener's 20-byte challenge with raw HMAC-MD5 and
 * a newer one's with the digest it names. So mproc talks to Python 3.8
 * through 3.14 either way. Digests are compared in constant time. A wrong
 * key gives MP_EAUTH on both sides and nothing else is exchanged; a peer
 * gets no application data before both sides are authenticated. A NULL
 * authkey means no authentication (Python's authkey=None); an empty
 * non-NULL key is a key like any other (Python 3.13; note that 3.11 and
 * 3.12 listeners skip authentication for an empty key).
 *
 * Hardening beyond Python: a peer must finish the handshake within a
 * timeout; handshake frames are limited to 256 bytes and a longer one is
 * refused from its header, before anything is read into memory; a limit on
 * the size of every message can be set for accepted connections.
 *
 * Authentication uses HMAC from OpenSSL's libcrypto (3 or 1.1), loaded at
 * run time on first use. Where none can be loaded (a static program, a
 * machine without OpenSSL) a built-in HMAC-SHA256 serves: peers of Python
 * 3.12 and later and mproc authenticate as usual; a Python 3.11 or older
 * peer insists on HMAC-MD5, which then fails: MP_ENOHMAC when it answers
 * our challenge, MP_EAUTH when we answer its own. */
#ifndef MPROC_LISTENER_H
#define MPROC_LISTENER_H

#include "conn.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A listening socket (multiprocessing.connection.Listener); opaque. */
typedef struct mp_listener mp_listener_t;

/* The default time a connected peer has to complete the handshake. */
#define MP_HANDSHAKE_TIMEOUT 5.0
/* The default time mp_client waits to connect and authenticate (Python's
 * CONNECTION_TIMEOUT, "a very generous timeout for local connections"). */
#define MP_CLIENT_TIMEOUT 20.0

/* Options of mp_listener_new_with_opts; a NULL pointer means all
 * defaults. */
typedef struct mp_listener_opts {
  int backlog;              /* listen() backlog; 0: 128 (Python: 1) */
  double handshake_timeout; /* 0: MP_HANDSHAKE_TIMEOUT; MP_FOREVER: none */
  size_t max_message;       /* 0: none; else mp_conn_set_max_message on
                               every accepted connection */
  size_t max_pending;       /* handshakes carried at once; 0: 128. A peer that
                               finds them all taken pushes out the oldest */
  bool untracked; /* a Unix socket file is removed by mp_listener_close
                     and, should the family be killed first, by the
                     resource tracker (see mp_shm_untrack); true: not by
                     the tracker */
} mp_listener_opts_t;

/* Listener(address, authkey=...): binds and listens. address NULL picks a
 * fresh Unix socket in $TMPDIR (or /tmp), as Python's default. authkey may
 * be NULL (no authentication). The key is copied.
 * Returns NULL with errno: EINVAL (an address not of the forms above, a
 * path too long for a Unix socket), EADDRINUSE, EACCES, ENOENT (no such
 * directory), a getaddrinfo failure as EHOSTUNREACH, ENOMEM. */
MP_API mp_listener_t *mp_listener_new(const char *address, const void *authkey,
                                      size_t authkey_len);

/* The same with options (NULL: the defaults). */
MP_API mp_listener_t *mp_listener_new_with_opts(const char *address,
                                                const void *authkey,
                                                size_t authkey_len,
                                                const mp_listener_opts_t *opts);

/* Listener.accept(): waits up to timeout seconds for a peer (MP_FOREVER:
 * no limit), authenticates it within the handshake timeout (which is not
 * counted in timeout: a peer that connected in time gets its handshake)
 * and stores the connection in *out (a duplex mp_conn_t, freed with
 * mp_conn_free). With a key, handshakes proceed concurrently: every peer
 * that connects is challenged at once and the first one to finish is
 * handed out, so silent, slow or hostile peers never hold up a good one.
 * At most max_pending handshakes are carried (the oldest is dropped for a
 * newcomer); those under way when a call returns go on at the next call.
 * One thread accepts at a time.
 * Errors (*out NULL):
 *   MP_ETIMEDOUT  no peer connected within timeout;
 *   MP_EAUTH      a peer was dropped: wrong key, not Python's protocol, an
 *                 oversized frame, too slow, pushed out, or it closed; it
 *                 has been disconnected. Call again to serve the next one
 *                 (Python raises AuthenticationError);
 *   MP_ENOHMAC    the peer answered in a digest only libcrypto has (HMAC-MD5
 *                 of Python <= 3.11), and no libcrypto can be loaded here;
 *                 it has been disconnected;
 *   MP_ECLOSED    the listener is closed (Python: "listener is closed");
 *   MP_EINTR      mp_interrupt() (handshakes under way are kept);
 *   other -errno (-EMFILE, -ENOMEM). */
MP_API int mp_listener_accept(mp_listener_t *l, double timeout,
                              mp_conn_t **out);

/* Listener.address: the address actually bound, in the form above (with
 * the port the system picked, "tcp:127.0.0.1:40123"). Valid until free. */
MP_API const char *mp_listener_address(const mp_listener_t *l);

/* The TCP port the listener is bound to (the one the system picked for
 * port 0), without parsing the address; MP_EINVAL for a Unix socket. */
MP_API int mp_listener_port(const mp_listener_t *l);

/* The path of a Unix-socket listener ("@name" for an abstract one),
 * without parsing the address; NULL with errno EINVAL for TCP. Valid until
 * free. */
MP_API const char *mp_listener_path(const mp_listener_t *l);

/* Listener.last_accepted: the peer's address of the connection the last
 * successful accept returned, in mproc's form ("tcp:127.0.0.1:51234";
 * "unix:" for an unnamed Unix peer, as a client usually is); NULL before
 * the first accept. Valid until the next accept or free. */
MP_API const char *mp_listener_last_accepted(const mp_listener_t *l);

/* The listening socket's fd, to wait for a peer with mp_wait (readable
 * means a peer is waiting), or MP_ECLOSED. */
MP_API int mp_listener_fileno(const mp_listener_t *l);

/* Listener.close(): stops listening and removes the Unix socket file (only
 * in the process that made the listener, and only if the file is still the
 * one it bound). Closing twice is allowed. Returns 0. Not to be called
 * while another thread is blocked in accept. */
MP_API int mp_listener_close(mp_listener_t *l);

/* Closes (as mp_listener_close) and frees. NULL does nothing. A listener
 * belongs to the process that made it; a child must not use it. */
MP_API void mp_listener_free(mp_listener_t *l);

/* Options of mp_client_with_opts; a NULL pointer means all defaults. */
typedef struct mp_client_opts {
  double timeout;     /* to connect and authenticate; 0: MP_CLIENT_TIMEOUT,
                         MP_FOREVER: no limit (Python) */
  size_t max_message; /* 0: none; else mp_conn_set_max_message */
} mp_client_opts_t;

/* Client(address, authkey=...): connects and, with a key, authenticates
 * (answers the listener's challenge, then challenges it). *out gets a
 * duplex connection.
 * Errors (*out NULL): MP_EAUTH (wrong key, or the peer does not speak the
 * protocol), MP_ETIMEDOUT (no connection or no handshake within the
 * timeout), MP_ECLOSED (the listener closed the connection during the
 * handshake), MP_EINVAL (bad address), -ECONNREFUSED, -ENOENT (no such
 * socket file), -EHOSTUNREACH (name not resolved), MP_ENOHMAC (the peer
 * asked for a digest only libcrypto has, and none is loadable), other
 * -errno. */
MP_API int mp_client(const char *address, const void *authkey,
                     size_t authkey_len, mp_conn_t **out);

/* The same with options (NULL: the defaults). */
MP_API int mp_client_with_opts(const char *address, const void *authkey,
                               size_t authkey_len, const mp_client_opts_t *opts,
                               mp_conn_t **out);

#ifdef __cplusplus
}
#endif
#endif

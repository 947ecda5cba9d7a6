/* Connection.send / Connection.recv: a pickle in one send_bytes frame.
 * Built on the public byte calls, so the connection layer knows nothing of
 * values. */
#include "obj/obj_internal.h"

int mp_conn_send(mp_conn_t *c, const mp_obj_t *o) {
  void *buf;
  size_t len;
  int rc = mp_obj_dumps(o, MP_OBJ_PROTOCOL_DEFAULT, &buf, &len);
  if (rc < 0)
    return rc;
  rc = mp_conn_send_bytes(c, buf, len);
  mp_free(buf);
  return rc;
}

int mp_conn_recv(mp_conn_t *c, mp_obj_t **out) {
  if (!out)
    return MP_EINVAL;
  void *buf;
  size_t len;
  int rc = mp_conn_recv_bytes(c, &buf, &len);
  if (rc < 0)
    return rc;
  rc = mp_obj_loads(buf, len, out);
  mp_free(buf);
  return rc;
}

/* Batched UDP I/O for the relay's hot path: recvmmsg(2) and sendmmsg(2) (Linux).
 *
 * Only I/O lives here; every TURN decision stays in the sans-I/O core (nat/server.py). The
 * relay calls these from its readiness callbacks on non-blocking sockets, so the GIL is kept
 * across the system call (MSG_DONTWAIT never sleeps, and releasing and re-taking the GIL would
 * cost more than the call saves).
 *
 * recv_batch(fd, max_n, bufsize) -> list[tuple[bytes, tuple[str, int]]]
 *     Up to max_n datagrams waiting on fd, each with its source as (host, port), also for
 *     IPv6 (the relay keys five-tuples by host and port only). A datagram longer than bufsize
 *     is truncated to bufsize, as socket.recvfrom(bufsize) does. [] when nothing waits.
 *     Raises OSError for any other error (e.g. EBADF).
 *
 * send_batch(fd, items: list[tuple[bytes | bytearray, tuple[str, int]]]) -> int
 *     Sends each payload to its numeric address; returns how many were sent. A full buffer
 *     (EAGAIN, ENOBUFS) stops the batch, the rest dropped as a relay drops a datagram it
 *     cannot send; a datagram refused on its own (unreachable, EPERM, a malformed address...)
 *     is dropped and the rest still go. Raises OSError for a bad descriptor (EBADF, ENOTSOCK).
 *
 * send_routed(fds: dict[tuple[str, int], int], items: list[tuple[key, address, data]]) -> int
 *     send_batch for datagrams leaving by several sockets: each item's data goes to address
 *     from the socket fds[key] (dropped when key is absent: its socket was closed), with one
 *     sendmmsg per run of consecutive items on the same socket. Items are what the core's fast
 *     entry points return for client -> peer, (relay address, peer address, payload), so the
 *     burst's loop only collects them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_BATCH 256  /* per call; more than a 64-datagram drain needs */
#define ADDRESS_CACHE 1024

/* Buffers reused by every call (the GIL is held throughout; `busy` refuses re-entry from a
 * finalizer run by an allocation in the middle of a call). */
static struct mmsghdr messages[MAX_BATCH];
static struct iovec vectors[MAX_BATCH];
static struct sockaddr_in6 names[MAX_BATCH]; /* large enough for sockaddr_in too */
static char *recv_area;
static size_t recv_area_size;
static int busy;

/* The buffers above are in use by a call further up the stack (see `busy`): fail. */
static int refuse_reentry(void)
{
    if (busy) {
        PyErr_SetString(PyExc_RuntimeError, "recv_batch/send_batch re-entered");
        return -1;
    }
    return 0;
}

/* Source addresses seen recently, as the (host, port) tuples handed out before: a relay hears
 * the same few clients and peers over and over, and formatting an address (inet_ntop, a str,
 * an int, a tuple) costs about as much as the rest of receiving it. Direct-mapped: with 256
 * slots, about 12 % of 32 sources heard in turn shared a slot with another and missed every
 * time; with 1024 about 3 % (32 KiB, touched only where used). */
typedef struct {
    sa_family_t family;
    in_port_t port;
    uint32_t scope;
    unsigned char address[16];
    PyObject *value;
} cached_address;

static cached_address address_cache[ADDRESS_CACHE];

static PyObject *format_address(const struct sockaddr *sa)
{
    char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    unsigned port;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host);
        port = ntohs(in4->sin_port);
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        port = ntohs(in6->sin6_port);
        if (in6->sin6_scope_id == 0) {
            inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        } else if (getnameinfo(sa, sizeof *in6, host, sizeof host, NULL, 0, NI_NUMERICHOST)) {
            /* With a zone ("fe80::1%eth0"), as the socket module formats it. */
            inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        }
    }
    return Py_BuildValue("(sI)", host, port);
}

static PyObject *source_address(const struct sockaddr *sa)
{
    cached_address key;
    memset(&key, 0, sizeof key);
    key.family = sa->sa_family;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        key.port = in4->sin_port;
        memcpy(key.address, &in4->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        key.port = in6->sin6_port;
        key.scope = in6->sin6_scope_id;
        memcpy(key.address, &in6->sin6_addr, 16);
    } else {
        Py_RETURN_NONE; /* not an internet socket: no address the relay could use */
    }
    uint32_t hash = key.port * 2654435761u;
    for (int i = 0; i < 16; i++) {
        hash = (hash ^ key.address[i]) * 16777619u;
    }
    cached_address *slot = &address_cache[(hash ^ (hash >> 16)) % ADDRESS_CACHE];
    if (slot->value != NULL && slot->family == key.family && slot->port == key.port &&
        slot->scope == key.scope && memcmp(slot->address, key.address, 16) == 0) {
        Py_INCREF(slot->value);
        return slot->value;
    }
    PyObject *value = format_address(sa);
    if (value == NULL) {
        return NULL;
    }
    PyObject *old = slot->value;
    key.value = Py_NewRef(value);
    *slot = key;
    Py_XDECREF(old);
    return value;
}

static PyObject *recv_batch(PyObject *module, PyObject *args)
{
    int fd;
    Py_ssize_t max_n, bufsize;
    if (!PyArg_ParseTuple(args, "inn:recv_batch", &fd, &max_n, &bufsize)) {
        return NULL;
    }
    if (max_n < 1 || bufsize < 1) {
        PyErr_SetString(PyExc_ValueError, "recv_batch: max_n and bufsize must be positive");
        return NULL;
    }
    if (max_n > MAX_BATCH) {
        max_n = MAX_BATCH;
    }
    if (refuse_reentry() < 0) {
        return NULL;
    }
    size_t need = (size_t)max_n * (size_t)bufsize;
    if (need > recv_area_size) {
        /* Pages are only touched as datagrams land, so a 64 x 64 KiB area costs little RSS. */
        char *area = realloc(recv_area, need);
        if (area == NULL) {
            return PyErr_NoMemory();
        }
        recv_area = area;
        recv_area_size = need;
    }
    for (Py_ssize_t i = 0; i < max_n; i++) {
        vectors[i].iov_base = recv_area + (size_t)i * (size_t)bufsize;
        vectors[i].iov_len = (size_t)bufsize;
        memset(&messages[i].msg_hdr, 0, sizeof messages[i].msg_hdr);
        messages[i].msg_hdr.msg_name = &names[i];
        messages[i].msg_hdr.msg_namelen = sizeof names[i];
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
    }
    int got;
    do {
        got = recvmmsg(fd, messages, (unsigned)max_n, MSG_DONTWAIT, NULL);
    } while (got < 0 && errno == EINTR);
    if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return PyList_New(0);
        }
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    busy = 1;
    PyObject *result = PyList_New(got);
    if (result == NULL) {
        busy = 0;
        return NULL;
    }
    for (int i = 0; i < got; i++) {
        size_t length = messages[i].msg_len;
        if (length > (size_t)bufsize) {
            length = (size_t)bufsize;
        }
        PyObject *data = PyBytes_FromStringAndSize(vectors[i].iov_base, (Py_ssize_t)length);
        PyObject *source = data ? source_address((struct sockaddr *)&names[i]) : NULL;
        PyObject *item = source ? PyTuple_Pack(2, data, source) : NULL;
        Py_XDECREF(data);
        Py_XDECREF(source);
        if (item == NULL) {
            Py_DECREF(result);
            busy = 0;
            return NULL;
        }
        PyList_SET_ITEM(result, i, item);
    }
    busy = 0;
    return result;
}

/* The last address prepare() converted, held (so no other object can take its place) with its
 * socket address: a relay sends to the same few peers and clients over and over, and the same
 * tuple object is handed in for each (the core keeps one per peer), so most datagrams skip the
 * text conversion. A tuple of a str and an int never changes. */
static PyObject *last_address;
static struct sockaddr_in6 last_name;
static socklen_t last_length;

/* (data, address) as a message to send: 1 if ready, 0 if that datagram cannot be sent (dropped),
 * -1 with an exception for a wrong type. Only exact str/int/bytes/bytearray are taken, so
 * no Python code runs while the batch is built (nothing can resize a payload under us). */
static int prepare(PyObject *data, PyObject *address, struct mmsghdr *message,
                   struct iovec *vector, struct sockaddr_in6 *name)
{
    if (PyBytes_CheckExact(data)) {
        vector->iov_base = PyBytes_AS_STRING(data);
        vector->iov_len = (size_t)PyBytes_GET_SIZE(data);
    } else if (PyByteArray_CheckExact(data)) {
        vector->iov_base = PyByteArray_AS_STRING(data);
        vector->iov_len = (size_t)PyByteArray_GET_SIZE(data);
    } else {
        PyErr_SetString(PyExc_TypeError, "data must be bytes or bytearray");
        return -1;
    }
    socklen_t length;
    if (address == last_address) {
        length = last_length;
        memcpy(name, &last_name, length);
        goto ready;
    }
    if (!PyTuple_CheckExact(address) || PyTuple_GET_SIZE(address) < 2 ||
        !PyUnicode_CheckExact(PyTuple_GET_ITEM(address, 0)) ||
        !PyLong_CheckExact(PyTuple_GET_ITEM(address, 1))) {
        PyErr_SetString(PyExc_TypeError, "addresses must be (str, int)");
        return -1;
    }
    const char *host = PyUnicode_AsUTF8(PyTuple_GET_ITEM(address, 0));
    if (host == NULL) {
        return -1;
    }
    long port = PyLong_AsLong(PyTuple_GET_ITEM(address, 1));
    if (port == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (port < 0 || port > 65535) {
        return 0;
    }
    memset(name, 0, sizeof *name);
    if (strchr(host, ':') == NULL) {
        struct sockaddr_in *in4 = (struct sockaddr_in *)name;
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &in4->sin_addr) != 1) {
            return 0; /* numeric addresses only: the core never hands out names */
        }
        length = sizeof *in4;
    } else {
        name->sin6_family = AF_INET6;
        name->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &name->sin6_addr) != 1) {
            return 0;
        }
        length = sizeof *name;
    }
    /* (only exact (str, int) tuples get here, and a reference is kept: identity is safe) */
    Py_XSETREF(last_address, Py_NewRef(address));
    memcpy(&last_name, name, length);
    last_length = length;
ready:
    memset(&message->msg_hdr, 0, sizeof message->msg_hdr);
    message->msg_hdr.msg_name = name;
    message->msg_hdr.msg_namelen = length;
    message->msg_hdr.msg_iov = vector;
    message->msg_hdr.msg_iovlen = 1;
    return 1;
}

/* sendmmsg(2) of messages[0..count) on fd, adding to *sent. 0 when done (a full buffer drops
 * the rest), -1 with errno set for a descriptor that is not a usable socket. */
static int send_prepared(int fd, unsigned count, long *sent)
{
    unsigned done = 0;
    while (done < count) {
        int n;
        if (count - done == 1) {
            /* One datagram (the usual run when a burst's clients take turns): sendto spares the
             * kernel copying and checking a msghdr and an iovec array. */
            const struct msghdr *one = &messages[done].msg_hdr;
            n = sendto(fd, one->msg_iov->iov_base, one->msg_iov->iov_len, MSG_DONTWAIT,
                       (const struct sockaddr *)one->msg_name, one->msg_namelen) < 0 ? -1 : 1;
        } else {
            n = sendmmsg(fd, messages + done, count - done, MSG_DONTWAIT);
        }
        if (n >= 0) {
            done += (unsigned)n;
            *sent += n;
            continue;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
            return 0; /* buffers full: the rest is dropped */
        }
        if (errno == EBADF || errno == ENOTSOCK || errno == EFAULT) {
            return -1;
        }
        done++; /* this datagram alone was refused: dropped, the others still go */
    }
    return 0;
}

static PyObject *send_batch(PyObject *module, PyObject *args)
{
    int fd;
    PyObject *items;
    if (!PyArg_ParseTuple(args, "iO!:send_batch", &fd, &PyList_Type, &items)) {
        return NULL;
    }
    if (refuse_reentry() < 0) {
        return NULL;
    }
    Py_ssize_t total = PyList_GET_SIZE(items);
    long sent = 0;
    for (Py_ssize_t start = 0; start < total; start += MAX_BATCH) {
        Py_ssize_t end = total - start > MAX_BATCH ? start + MAX_BATCH : total;
        unsigned count = 0;
        for (Py_ssize_t i = start; i < end; i++) {
            PyObject *item = PyList_GET_ITEM(items, i);
            if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2) {
                PyErr_SetString(PyExc_TypeError, "send_batch: items must be (data, (host, port))");
                return NULL;
            }
            int ready = prepare(PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1),
                                &messages[count], &vectors[count], &names[count]);
            if (ready < 0) {
                return NULL;
            }
            count += (unsigned)ready;
        }
        if (send_prepared(fd, count, &sent) < 0) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
    }
    return PyLong_FromLong(sent);
}

/* A key of the fds dict: an exact (str, int) tuple, whose hash and comparison run no Python
 * code. */
static int plain_address(PyObject *key)
{
    return PyTuple_CheckExact(key) && PyTuple_GET_SIZE(key) == 2 &&
           PyUnicode_CheckExact(PyTuple_GET_ITEM(key, 0)) &&
           PyLong_CheckExact(PyTuple_GET_ITEM(key, 1));
}

static PyObject *send_routed(PyObject *module, PyObject *args)
{
    PyObject *fds, *items;
    if (!PyArg_ParseTuple(args, "O!O!:send_routed", &PyDict_Type, &fds, &PyList_Type, &items)) {
        return NULL;
    }
    if (refuse_reentry() < 0) {
        return NULL;
    }
    Py_ssize_t total = PyList_GET_SIZE(items);
    Py_ssize_t i = 0;
    long sent = 0;
    while (i < total) {
        /* A run of consecutive items leaving by the same socket: one sendmmsg. */
        long fd = -1;
        unsigned count = 0;
        while (i < total && count < MAX_BATCH) {
            PyObject *item = PyList_GET_ITEM(items, i);
            if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 3 ||
                !plain_address(PyTuple_GET_ITEM(item, 0))) {
                PyErr_SetString(PyExc_TypeError,
                                "send_routed: items must be ((host, port), (host, port), data)");
                return NULL;
            }
            PyObject *found = PyDict_GetItemWithError(fds, PyTuple_GET_ITEM(item, 0));
            if (found == NULL) {
                if (PyErr_Occurred()) {
                    return NULL;
                }
                i++; /* its socket is gone: dropped */
                continue;
            }
            if (!PyLong_CheckExact(found)) {
                PyErr_SetString(PyExc_TypeError, "send_routed: fds values must be int");
                return NULL;
            }
            long this_fd = PyLong_AsLong(found);
            if (count > 0 && this_fd != fd) {
                break;
            }
            fd = this_fd;
            int ready = prepare(PyTuple_GET_ITEM(item, 2), PyTuple_GET_ITEM(item, 1),
                                &messages[count], &vectors[count], &names[count]);
            if (ready < 0) {
                return NULL;
            }
            count += (unsigned)ready;
            i++;
        }
        if (count > 0 && send_prepared((int)fd, count, &sent) < 0) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
    }
    return PyLong_FromLong(sent);
}

static PyMethodDef methods[] = {
    {"recv_batch", recv_batch, METH_VARARGS,
     "recv_batch(fd, max_n, bufsize) -> list of (data, (host, port)): recvmmsg(2), "
     "MSG_DONTWAIT; [] when nothing waits."},
    {"send_batch", send_batch, METH_VARARGS,
     "send_batch(fd, [(data, (host, port)), ...]) -> number sent: sendmmsg(2), MSG_DONTWAIT; "
     "EAGAIN drops the rest."},
    {"send_routed", send_routed, METH_VARARGS,
     "send_routed(fds, [(key, (host, port), data), ...]) -> number sent: each data from the "
     "socket fds[key] (dropped if absent), one sendmmsg(2) per run of the same socket."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "nat._mmsg_ext",
    .m_doc = "recvmmsg(2)/sendmmsg(2) for the relay's UDP hot path (see nat/_mmsg.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__mmsg_ext(void)
{
    return PyModule_Create(&module_def);
}

/* loop.h - the only code that knows both libevent and libwebsockets.
 *
 * Debian's lws 4.1 has no external-poll hooks, so lws never tells us which
 * fds it wants watched. Instead libevent owns the listening socket; each
 * accepted fd is adopted into lws and gets one persistent, edge-triggered
 * EV_READ|EV_WRITE|EV_CLOSED event (held in the socket's own allocation, no
 * malloc of its own), feeding lws_service_fd() (what lws leaves unread, or
 * unwritten while the socket takes more, gets another round at once;
 * whether a read filled lws's buffer, and so may have left input, comes
 * from net/rxwatch.h, an EOF due from EV_CLOSED: no peek per read). A write
 * round is made active directly (event_active: no syscall) by
 * loop_want_write(), the wrapper every lws_callback_on_writable() goes
 * through, and after a read when lws asked for one itself (a pong, a close
 * reply, a handshake answer): lws reports each change of the poll events it
 * wants through LWS_CALLBACK_GET_THREAD_ID, and drops POLLOUT before each
 * writable callback. The socket's own EV_WRITE edge is heeded only while
 * lws holds a partial write or serves a file, that is while the socket
 * itself must tell us when it takes more.
 * A socket with nothing pending skips even that round: loop_write_soon()
 * lists it, and one event writes every listed socket after the others.
 * With a write window, a socket written less than a window ago is held
 * until a window after that write (one timer for all of them), so the
 * messages of a busy stream leave several to a send().
 * A one-shot timer runs lws's own timers (handshake and close timeouts,
 * kills) straight from lws's timer lists when the first of them is due
 * (looked up after every lws call that may set one), and at least once a
 * second: lws_service() would also poll() every socket, a cost per idle
 * connection. When a timer makes lws want to write, lws reports the change
 * of poll events through LWS_CALLBACK_GET_THREAD_ID, which
 * loop_lws_thread_id() turns into a write kick. A full lws_service() runs
 * only when lws holds read data to feed. An idle connection costs nothing.
 *
 * Ownership: struct loop is owned by main. Each connection's struct fdev is
 * the wsi's opaque user data; loop owns it and frees it when lws destroys
 * the wsi (after the callback that is servicing it returns, if any). */
#ifndef WSGATE_LOOP_H
#define WSGATE_LOOP_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct lws;
struct lws_context;
struct lws_vhost;
struct loop;

/* The event base for the whole process, with a dispatch limit so writers
 * that keep re-activating themselves cannot starve reads. */
struct event_base *loop_base_new(void);

/* Binds host:port (port 0: the kernel picks, set in *port) with
 * SO_REUSEPORT without listening: holds the port for workers whose
 * loop_new() shares it. Returns the descriptor, or -1 with err set. */
int loop_reserve_port(const char *host, int *port, char *err, size_t errlen);

/* Binds host:port (with SO_REUSEPORT when reuseport: other processes may
 * listen on it too and the kernel spreads connections) and starts
 * accepting into vh. Client sockets (any
 * state: HTTP, WebSocket, lingering) are capped at RLIMIT_NOFILE minus a
 * reserve; beyond it a connection gets an HTTP 503 and is closed at once.
 * When accept() itself runs out of descriptors the listener pauses
 * (100 ms doubling to 1 s) instead of spinning; both warn at most once per
 * 10 s. The listener also yields to other events after 32 accepts in a row.
 * Each accepted socket gets SO_SNDBUF sndbuf (0: left to kernel autotuning,
 * which lets one stuck client pin megabytes). Returns NULL with err set when
 * the address cannot be bound (e.g. in use). */
struct loop *loop_new(struct event_base *base, struct lws_context *ctx,
                      struct lws_vhost *vh, const char *host, int port,
                      int reuseport, size_t sndbuf, char *err, size_t errlen);

/* Adopts the sockets accepted from now on with TLS (the vhost holds the
 * certificate): wss:// and https:// on the one port. A read that leaves
 * decrypted bytes inside OpenSSL (lws reads into a bounded buffer; the rest
 * of a TLS record raises no socket event) is serviced again at once, not
 * at the next packet or tick. */
void loop_use_tls(struct loop *loop);

/* Counts each io_uring submission of writes in *submits and the writes it
 * carried in *batched (both stay valid for the loop's life). */
void loop_count_sends(struct loop *loop, uint64_t *submits, uint64_t *batched);
/* Sets the write window of loop_write_soon() (0: off) and the counter it
 * bumps for each socket it holds (NULL: none; it must outlive the loop). */
void loop_set_write_window(struct loop *loop, unsigned window_us, uint64_t *held_total);

/* The bound port (the kernel's choice when 0 was asked for). */
int loop_port(const struct loop *loop);

/* Client sockets the descriptor limit lets the loop hold at once. */
unsigned loop_max_sockets(const struct loop *loop);

/* lws_callback_on_writable() plus arming EV_WRITE for the wsi's fd. */
void loop_want_write(struct lws *wsi);

/* Calls write(wsi) in place of a writable callback once this turn's other
 * events are handled, when the socket is idle and presumed writable: no
 * writable callback pending, no partial write held by lws, no file being
 * served, not inside lws's service of this socket. A message for an idle
 * subscriber thus leaves without a round through lws_service_fd() and
 * lws_callback_on_writable() per socket, and messages that arrived
 * together still leave together. With a write window (see
 * loop_set_write_window) a socket our last send() wrote less than a window
 * ago waits until a window after that send(): whatever is queued for it by
 * then leaves in that one write, and a message after a quiet spell still
 * leaves at once. If the socket is no longer idle by then,
 * a writable callback is asked for instead. What the socket did not take
 * waits for EV_WRITE as after any partial write; write returning -1 closes
 * wsi at the loop's next turn, as a writable callback's -1 would. Every
 * caller on one loop passes the same write. Returns 0 when nothing was
 * scheduled (the caller asks with loop_want_write()), else 1. */
int loop_write_soon(struct lws *wsi, int (*write)(struct lws *wsi));

/* Writes len bytes of complete WebSocket frames to wsi's socket: with one
 * send() of our own when lws holds nothing unsent and there is no TLS (lws
 * then keeps what the socket did not take, as after any partial write),
 * else through lws_write() as raw bytes. From loop_write_soon()'s write the
 * send() is queued (net/sendq.h) and every listed socket's leaves in one
 * io_uring submission; the socket is not idle until its result is in.
 * Returns 0, or -1 when the connection failed. */
int loop_send(struct lws *wsi, unsigned char *buf, size_t len);

/* The answer to LWS_CALLBACK_GET_THREAD_ID (one thread: a constant); lws
 * asks it whenever the poll events it wants on wsi's socket change, so the
 * socket gets a write round, and another after each read until
 * loop_lws_writeable(). */
int loop_lws_thread_id(struct lws *wsi);

/* Call first in LWS_CALLBACK_SERVER_WRITEABLE (websocket 1) and
 * LWS_CALLBACK_HTTP_WRITEABLE (0): lws has just dropped POLLOUT, so a
 * WebSocket's reads need no write round after them until lws changes its
 * poll events again (an HTTP socket gets one after every read), and a
 * change later in the same round (a keep-alive transaction completed, a
 * pong owed) gets a round of its own. */
void loop_lws_writeable(struct lws *wsi, int websocket);

/* Keeps EV_WRITE armed while on (a file being served by lws itself). */
void loop_keep_writable(struct lws *wsi, int on);

/* Closes wsi at the loop's next turn with a TCP reset (SO_LINGER 0), no
 * lingering: for a peer whose unsent megabytes must go now. */
void loop_abort(struct lws *wsi);

/* Call from LWS_CALLBACK_CLOSED (websocket 1) and CLOSED_HTTP (0): the fd is
 * still open. A WebSocket not closed by loop_abort(), whose peer has not
 * closed its side already (EOF or reset), lingers: the
 * loop keeps a duplicate of its descriptor, shuts the write side (FIN after
 * the close frame) and discards input until the peer's EOF or 2 s, so the
 * peer's data still in flight cannot turn the close into a reset that
 * destroys the close frame. */
void loop_wsi_closed(struct lws *wsi, int websocket);

/* Call from LWS_CALLBACK_WSI_DESTROY: lws has closed the fd. */
void loop_wsi_destroyed(struct lws *wsi);

/* Closes the listening socket; established connections carry on. */
void loop_stop_accepting(struct loop *loop);

/* Frees the loop; call after lws_context_destroy(). */
void loop_free(struct loop *loop);

#endif

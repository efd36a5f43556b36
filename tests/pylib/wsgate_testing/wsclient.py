"""Owns the raw blocking WebSocket client on a plain socket and the frame codec."""

import base64
import hashlib
import json
import os
import socket
import struct
import time


WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def encode_frame(opcode, payload, fin=True, mask=True):
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr = bytes([b0, mbit | n])
    elif n < 65536:
        hdr = bytes([b0, mbit | 126]) + n.to_bytes(2, "big")
    else:
        hdr = bytes([b0, mbit | 127]) + n.to_bytes(8, "big")
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    k = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big") if n else b""
    return hdr + key + masked


def parse_frame(buf):
    """(fin, opcode, payload, consumed) or None if buf holds no full frame."""
    if len(buf) < 2:
        return None
    fin = bool(buf[0] & 0x80)
    opcode = buf[0] & 0x0F
    masked = bool(buf[1] & 0x80)
    n = buf[1] & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n = int.from_bytes(buf[2:4], "big")
        pos = 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n = int.from_bytes(buf[2:10], "big")
        pos = 10
    key = None
    if masked:
        if len(buf) < pos + 4:
            return None
        key = buf[pos:pos + 4]
        pos += 4
    if len(buf) < pos + n:
        return None
    payload = bytes(buf[pos:pos + n])
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return fin, opcode, payload, pos + n


class RawWs:
    """Blocking minimal WebSocket client on a plain (or TLS) socket."""

    def __init__(self, port, path="/ws", rcvbuf=None, timeout=5.0, tls=None, early=b""):
        """tls: an ssl.SSLContext to speak wss:// instead of ws://. early: bytes
        (frames) sent in the same segment as the upgrade request, before the 101."""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # must be set before connect() so the advertised window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="127.0.0.1")
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.t_request = time.monotonic()
        self.sock.sendall(req.encode() + early)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError(f"connection closed during handshake: {buf!r}")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        assert " 101 " in lines[0] + " ", f"handshake failed: {head!r}"
        hdrs = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
        expect = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        assert hdrs.get("sec-websocket-accept") == expect, f"bad Sec-WebSocket-Accept: {head!r}"
        self.buf = bytearray(rest)

    def send_text(self, text):
        self.sock.sendall(encode_frame(0x1, text))

    def send_json(self, obj):
        self.send_text(json.dumps(obj))

    def recv_frame(self):
        while True:
            r = parse_frame(self.buf)
            if r:
                fin, op, payload, used = r
                del self.buf[:used]
                return fin, op, payload
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("EOF")
            self.buf += chunk

    def recv_json(self):
        while True:
            fin, op, payload = self.recv_frame()
            if op == 0x1:
                assert fin, "fragmented server text frame not supported by RawWs"
                return json.loads(payload)
            if op == 0x8:
                raise ConnectionError(f"close frame {payload!r}")
            # ignore ping/pong

    def recv_messages(self, n):
        """n JSON messages, each of which must be one whole text frame, as
        (messages, frames parsed from each recv()): how many frames shared
        a read shows how they were written together."""
        msgs, per_recv = [], []
        while len(msgs) < n:
            chunk = self.sock.recv(65536)
            assert chunk, f"EOF after {len(msgs)} messages"
            self.buf += chunk
            frames = 0
            while (f := parse_frame(self.buf)) is not None:
                fin, op, payload, used = f
                del self.buf[:used]
                assert (fin, op) == (True, 0x1), (fin, op)
                msgs.append(json.loads(payload))
                frames += 1
            per_recv.append(frames)
        return msgs, per_recv

    def drain_until_closed(self, timeout):
        """Read (and discard) until EOF/reset. Returns a dict with the number of
        bytes read, the text frames parsed, the close code/reason if a close
        frame was seen, and how the stream ended. Raises AssertionError if the
        server has not closed within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        total = 0
        texts = 0
        close = None
        ended = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"server did not close the connection within {timeout}s "
                                     f"(read {total} bytes, {texts} text frames)")
            self.sock.settimeout(min(remaining, 1.0))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                ended = "reset"
                break
            if not chunk:
                ended = "eof"
                break
            total += len(chunk)
            self.buf += chunk
            while True:
                r = parse_frame(self.buf)
                if not r:
                    break
                fin, op, payload, used = r
                del self.buf[:used]
                if op == 0x1:
                    texts += 1
                elif op == 0x8 and close is None:
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                    close = (code, payload[2:].decode("utf-8", "replace"))
        return {"bytes": total, "texts": texts, "close": close, "ended": ended}

    def close(self, reset=False):
        try:
            if reset:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()
        except OSError:
            pass

#!/usr/bin/env python3
"""A TLS 1.1-only HTTPS server on 127.0.0.1 for target_tls.rs.

rustls speaks no TLS below 1.2, so the relay can only be shown refusing
TLS 1.1 against a server that speaks nothing else. OpenSSL (through Python's
ssl module) still can, at security level 0.

Usage: tls11_server.py CERT_PEM KEY_PEM CA_PEM

Prints one line per event, flushed:
  listening PORT selfcheck VERSION   once a TLS 1.1 client of its own got in
  ok VERSION                         a handshake succeeded (then: 200 OK)
  failed REASON                      a handshake failed
It runs until it is killed.
"""

import socket
import ssl
import sys
import threading
import warnings

# Python deprecates TLS 1.1, which is the point of this server.
warnings.filterwarnings("ignore", category=DeprecationWarning)

TLS11 = ssl.TLSVersion.TLSv1_1
# OpenSSL 3 allows TLS 1.1 only at security level 0.
CIPHERS = "DEFAULT:@SECLEVEL=0"


def say(*words):
    print(*words, flush=True)


def pinned(ctx):
    ctx.set_ciphers(CIPHERS)
    ctx.minimum_version = TLS11
    ctx.maximum_version = TLS11
    return ctx


def self_check(port, ca, result):
    ctx = pinned(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    ctx.load_verify_locations(ca)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                result.append(tls.version())
    except OSError as e:
        result.append(f"failed:{e}")


def main():
    cert, key, ca = sys.argv[1:4]
    ctx = pinned(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    ctx.load_cert_chain(cert, key)
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    check = []
    client = threading.Thread(target=self_check, args=(port, ca, check))
    client.start()
    first = True
    while True:
        conn, _ = server.accept()
        conn.settimeout(10)
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                if first:
                    client.join()
                    say("listening", port, "selfcheck", check[0] if check else "none")
                else:
                    say("ok", tls.version())
                    tls.recv(65536)
                    tls.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        except (ssl.SSLError, OSError) as e:
            if first:
                client.join()
                say("listening", port, "selfcheck", f"failed:{e}")
            else:
                say("failed", getattr(e, "reason", None) or e)
        first = False


if __name__ == "__main__":
    main()

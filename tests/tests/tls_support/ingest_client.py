#!/usr/bin/env python3
"""A real TLS client for the ingest tests (ingest_security.rs): Python's ssl
and http.client, nothing of cpn's.

  ingest_client.py post URL --ca CA --body FILE [--header 'Name: value']...
      [--cert C --key K] [--tls 1.1|1.2|1.3]
    One POST on a fresh connection. Prints one JSON object: status, the
    response headers and body, the negotiated version and the server
    certificate's CN; or {"error": ..., "stage": "handshake"|"request"}.

  ingest_client.py load URL --ca CA --body FILE --seconds S [--threads T]
      [--per-connection N] [--header ...]
    T threads post events (the body with a fresh GSW_MESSAGE_GUID each, the
    GUID also in ETag) for S seconds, opening a new connection after every N
    requests, so handshakes go on all the time. Prints one JSON object:
    "accepted" (GUIDs answered 200), "failed" (anything else, with why) and
    "cns" (server certificate CN -> requests served under it).
"""
import argparse
import http.client
import json
import ssl
import sys
import threading
import time
import uuid
from urllib.parse import urlparse

VERSIONS = {
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


def context(args):
    ctx = ssl.create_default_context(cafile=args.ca)
    if args.tls:
        ctx.minimum_version = VERSIONS[args.tls]
        ctx.maximum_version = VERSIONS[args.tls]
        if args.tls == "1.1":
            # OpenSSL 3 refuses to offer TLS 1.1 at its default security
            # level; level 0 makes it offer it, so the server is what refuses.
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    return ctx


def headers_of(args):
    out = {"Content-Type": "application/json"}
    for h in args.header or []:
        name, _, value = h.partition(":")
        out[name.strip()] = value.strip()
    return out


def connect(url, ctx):
    u = urlparse(url)
    conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=20)
    conn.connect()
    return conn, u.path


def peer_cn(conn):
    cert = conn.sock.getpeercert()
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


def post(args):
    ctx = context(args)
    body = open(args.body, "rb").read()
    try:
        conn, path = connect(args.url, ctx)
    except (ssl.SSLError, OSError) as e:
        return {"error": repr(e), "stage": "handshake"}
    try:
        conn.request("POST", path, body=body, headers=headers_of(args))
        r = conn.getresponse()
        return {
            "status": r.status,
            "headers": {k.lower(): v for k, v in r.getheaders()},
            "body": r.read().decode("utf-8", "replace"),
            "version": conn.sock.version(),
            "cn": peer_cn(conn),
        }
    except (ssl.SSLError, OSError, http.client.HTTPException) as e:
        return {"error": repr(e), "stage": "request"}
    finally:
        conn.close()


def load(args):
    ctx = context(args)
    template = json.load(open(args.body, "rb"))
    headers = headers_of(args)
    deadline = time.monotonic() + args.seconds
    lock = threading.Lock()
    accepted, failed, cns = [], [], {}

    def worker():
        conn = None
        served = 0
        while time.monotonic() < deadline:
            guid = str(uuid.uuid4())
            event = dict(template, GSW_MESSAGE_GUID=guid)
            body = json.dumps(event).encode()
            try:
                if conn is None or served >= args.per_connection:
                    if conn is not None:
                        conn.close()
                    conn, path = connect(args.url, ctx)
                    served = 0
                    cn = peer_cn(conn)
                conn.request("POST", path, body=body, headers=dict(headers, ETag=guid))
                r = conn.getresponse()
                text = r.read()
                served += 1
                with lock:
                    if r.status == 200:
                        accepted.append(guid)
                        cns[cn] = cns.get(cn, 0) + 1
                    else:
                        failed.append({"guid": guid, "error": f"{r.status} {text[:200]!r}"})
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (ssl.SSLError, OSError, http.client.HTTPException) as e:
                with lock:
                    failed.append({"guid": guid, "error": repr(e)})
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"accepted": accepted, "failed": failed, "cns": cns}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["post", "load"])
    p.add_argument("url")
    p.add_argument("--ca", required=True)
    p.add_argument("--body", required=True)
    p.add_argument("--header", action="append")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--tls", choices=sorted(VERSIONS))
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--per-connection", type=int, default=5)
    args = p.parse_args()
    out = post(args) if args.mode == "post" else load(args)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

"""A loopback HTTP server for tensor2npy's remote-input tests: serves one directory with HEAD,
Range GETs (206 with Content-Range), ETag and Last-Modified, and If-Match (412 on mismatch);
counts the bytes it sends. Started and stopped by tests/outputs/remote.rs; prints its port, then serves
until standard input closes.

    python range_server.py DIR [--etag-changes-after N] [--stall-after N] [--status CODE]
                               [--require-query QUERY] [--delay-ms MS]

`--etag-changes-after N`: from the N-th request on, every object reports another ETag, as if it
had been replaced between reads. `--stall-after N`: from the N-th request on, the server never
answers (a stalled connection). `--status CODE`: every request is answered with CODE and no
body (503: an unavailable server). `--delay-ms MS`: every request waits MS milliseconds before it is answered (a distant
server). `--require-query QUERY`: a request whose query string is
not QUERY is refused with 403, as a presigned URL without its signature would be.
"""
import time
import http.server
import os
import sys
import threading

ROOT = sys.argv[1]
CHANGE_AFTER = int(sys.argv[sys.argv.index("--etag-changes-after") + 1]) if "--etag-changes-after" in sys.argv else None
STALL_AFTER = int(sys.argv[sys.argv.index("--stall-after") + 1]) if "--stall-after" in sys.argv else None
STATUS = int(sys.argv[sys.argv.index("--status") + 1]) if "--status" in sys.argv else None
QUERY = sys.argv[sys.argv.index("--require-query") + 1] if "--require-query" in sys.argv else None
DELAY = float(sys.argv[sys.argv.index("--delay-ms") + 1]) / 1000 if "--delay-ms" in sys.argv else 0
STATE = {"requests": 0, "bytes": 0}
LOCK = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _target(self):
        path = os.path.normpath(os.path.join(ROOT, self.path.split("?")[0].lstrip("/")))
        if not path.startswith(os.path.abspath(ROOT)) or not os.path.isfile(path):
            return None
        return path

    def _etag(self, path):
        st = os.stat(path)
        with LOCK:
            n = STATE["requests"]
        changed = CHANGE_AFTER is not None and n > CHANGE_AFTER
        return '"%x-%x%s"' % (st.st_size, int(st.st_mtime), "-new" if changed else "")

    def _count(self, n):
        with LOCK:
            STATE["bytes"] += n

    def _begin(self):
        with LOCK:
            STATE["requests"] += 1
        if self.path == "/__stats":
            body = ("%d %d\n" % (STATE["requests"], STATE["bytes"])).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return None
        if DELAY:
            time.sleep(DELAY)
        if STALL_AFTER is not None and STATE["requests"] > STALL_AFTER:
            time.sleep(3600)
            return None
        query = self.path.partition("?")[2]
        status = STATUS if STATUS is not None else 403 if QUERY is not None and query != QUERY else None
        if status is not None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        path = self._target()
        if path is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        etag = self._etag(path)
        want = self.headers.get("If-Match")
        if want is not None and want != etag:
            self.send_response(412)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return path, etag

    def _headers(self, path, etag, length):
        self.send_header("Content-Length", str(length))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", self.date_time_string(int(os.stat(path).st_mtime)))

    def do_HEAD(self):
        got = self._begin()
        if got is None:
            return
        path, etag = got
        self.send_response(200)
        self._headers(path, etag, os.path.getsize(path))
        self.end_headers()

    def do_GET(self):
        got = self._begin()
        if got is None:
            return
        path, etag = got
        size = os.path.getsize(path)
        rng = self.headers.get("Range")
        start, end = 0, size - 1
        if rng and rng.startswith("bytes="):
            a, b = rng[6:].split("-")
            start = int(a)
            end = min(int(b), size - 1) if b else size - 1
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        else:
            self.send_response(200)
        length = max(0, end - start + 1)
        self._headers(path, etag, length)
        self.end_headers()
        with open(path, "rb") as f:
            f.seek(start)
            self.wfile.write(f.read(length))
        self._count(length)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(server.server_address[1], flush=True)
sys.stdin.read()
server.shutdown()

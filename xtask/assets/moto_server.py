"""The moto S3 server for mux's tests, with requests applied one at a time.

moto evaluates `If-Match` / `If-None-Match` and then writes in separate steps on
concurrent request threads, so two conditional writes racing on one object can both
pass. Real S3 (and MinIO, Ceph, R2) evaluate the condition atomically with the write.
Running every write to one object (PUT, POST, DELETE on its path) under that
object's lock gives moto S3's semantics, which is what mux-s3's concurrency tests
rely on. Reads, and writes to other objects, still run in parallel.

Usage: python moto_server.py HOST PORT
"""

import sys
import threading

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

app = DomainDispatcherApplication(create_backend_app)
locks = {}
locks_guard = threading.Lock()


def object_lock(path):
    with locks_guard:
        return locks.setdefault(path, threading.Lock())


def serialized(environ, start_response):
    if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
        return app(environ, start_response)
    # Path-style addressing: the path is /bucket/key, one lock per object.
    with object_lock(environ.get("HTTP_HOST", "") + environ.get("PATH_INFO", "")):
        # Materialise the body inside the lock, so the whole request is one step.
        return list(app(environ, start_response))


if __name__ == "__main__":
    host, port = sys.argv[1], int(sys.argv[2])
    run_simple(host, port, serialized, threaded=True, request_handler=MotoRequestHandler)

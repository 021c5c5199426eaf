"""The moto S3 server for mux's tests, with requests applied one at a time.

moto evaluates `If-Match` / `If-None-Match` and then writes in separate steps on
concurrent request threads, so two conditional writes racing on one object can both
pass. Real S3 (and MinIO, Ceph, R2) evaluate the condition atomically with the write.
Running every write to one object (PUT, POST, DELETE on its path) under that
object's lock gives moto S3's semantics, which is what mux-s3's concurrency tests
rely on. Reads, and writes to other objects, still run in parallel.

SSM: moto answers DescribeParameters by reading every parameter of the region and
looking up its tags, so each call costs as much as the whole store. mux-ssm calls it
with one `Name` (Equals) filter on every read and write, and with one `Path`
(Recursive) filter to list; those are answered from the parameters that can match,
with the same results.

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

from moto.ssm.models import SimpleSystemManagerBackend

_describe_parameters = SimpleSystemManagerBackend.describe_parameters


def describe_parameters(self, filters, parameter_filters):
    only = parameter_filters[0] if parameter_filters and len(parameter_filters) == 1 else None
    values = (only or {}).get("Values") or []
    if filters or only is None or len(values) != 1 or values[0].startswith("/aws"):
        return _describe_parameters(self, filters, parameter_filters)
    self._validate_parameter_filters(parameter_filters, by_path=False)
    wanted = "/" + values[0].strip("/")
    if only["Key"] == "Name" and only.get("Option", "Equals") == "Equals":
        candidates = [n for n in (values[0], wanted, wanted.lstrip("/")) if n in self._parameters]
    elif only["Key"] == "Path" and only.get("Option") == "Recursive" and wanted != "/":
        candidates = [
            n for n in list(self._parameters) if ("/" + n.lstrip("/")).startswith(wanted + "/")
        ]
    else:
        return _describe_parameters(self, filters, parameter_filters)
    found = {}
    for name in candidates:
        parameter = self.get_parameter(name)
        if parameter is not None and self._match_filters(parameter, parameter_filters):
            found[parameter.name] = parameter
    return list(found.values())


SimpleSystemManagerBackend.describe_parameters = describe_parameters

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

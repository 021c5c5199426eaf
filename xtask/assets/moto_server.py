"""The moto S3 server for mux's tests, with requests applied one at a time.

moto evaluates `If-Match` / `If-None-Match` and then writes in separate steps on
concurrent request threads, so two conditional writes racing on one object can both
pass. Real S3 (and MinIO, Ceph, R2) evaluate the condition atomically with the write.
Running every write to one object (PUT, POST, DELETE on its path) under that
object's lock gives moto S3's semantics, which is what mux-s3's concurrency tests
rely on. Reads, and writes to other objects, still run in parallel.

DynamoDB requests all go to the path `/`, so they run one at a time: conditional
writes and transactions are atomic, as in DynamoDB. moto's TransactWriteItems copies
the whole table once per item of the transaction (to roll back); the copy is made
once per transaction here, which changes nothing else (mux-dynamodb's batches are
transactions of up to 100 items).

SSM: moto answers DescribeParameters by reading every parameter of the region and
looking up its tags, so each call costs as much as the whole store. mux-ssm calls it
with one `Name` (Equals) filter on every read and write, and with one `Path`
(Recursive) filter to list; those are answered from the parameters that can match,
with the same results.

Usage: python moto_server.py HOST PORT
"""

import copy
import sys
import threading
import types

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


def copy_tables_once_per_transaction():
    """Makes moto's TransactWriteItems deep-copy each table once, not once per item."""
    try:
        import moto.dynamodb.models as ddb

        table_class = ddb.Table
        transact = ddb.DynamoDBBackend.transact_write_items
    except (ImportError, AttributeError) as e:  # another moto layout: leave it be
        print(f"moto_server: DynamoDB transactions unpatched ({e})", file=sys.stderr)
        return
    local = threading.local()

    def deepcopy(obj, memo=None):
        tables = getattr(local, "tables", None)
        if tables is None or not isinstance(obj, table_class):
            return copy.deepcopy(obj, memo)
        if id(obj) not in tables:
            tables[id(obj)] = copy.deepcopy(obj, memo)
        return tables[id(obj)]

    def transact_write_items(self, transact_items):
        local.tables = {}
        try:
            return transact(self, transact_items)
        finally:
            local.tables = None

    ddb.copy = types.SimpleNamespace(deepcopy=deepcopy, copy=copy.copy)
    ddb.DynamoDBBackend.transact_write_items = transact_write_items


copy_tables_once_per_transaction()
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

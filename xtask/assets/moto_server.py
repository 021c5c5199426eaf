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

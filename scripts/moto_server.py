"""moto server with DynamoDB requests handled one at a time, for the tests
that need DynamoDB's transaction isolation (started by `moto::isolated()` in
shared/tests/moto; every other test uses a plain moto server).

Usage: .venv/bin/python scripts/moto_server.py -H 127.0.0.1 -p PORT
(the same arguments as `moto_server`).

Why: moto's `TransactWriteItems` deep-copies the tables before it applies a
transaction and puts the copy back when a condition fails. A request that
committed on another server thread in between is wiped by that restore, so
two concurrent transactions on one item can both appear to lose (real
DynamoDB isolates transactions: one commits, the other fails its condition).
The tests that hand one delivery to two dispatchers at once depend on that
isolation. Serialising DynamoDB's own requests (X-Amz-Target `DynamoDB_*`)
restores it; everything else (SQS long polls, Secrets Manager, streams) keeps
moto's threaded server. It is not used for the whole suite: a lock around
DynamoDB requests changes the timing of the rate-limit and breaker tests
(they failed 2 of 4 runs of their binary behind it, 0 of 4 without).
"""

import os
import threading
import time

import moto.server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

_DYNAMODB = threading.Lock()
_dispatch = DomainDispatcherApplication.__call__


def _one_dynamodb_request_at_a_time(self, environ, start_response):
    if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
        return _dispatch(self, environ, start_response)
    with _DYNAMODB:
        body = _dispatch(self, environ, start_response)
        try:
            return [b"".join(body)]
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()


DomainDispatcherApplication.__call__ = _one_dynamodb_request_at_a_time



def _exit_with_parent():
    # A test binary that started this server cannot stop it on exit (its
    # handle lives in a static, never dropped): leave when the parent does.
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


if __name__ == "__main__":
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    moto.server.main()

"""Real services for the tests: a throw-away PostgreSQL server and an S3 endpoint (moto server mode).

Both are plain context managers so that benchmarks, scripts and fault-injection tests can use them
outside pytest; ``gbifdl_assets_tests/conftest.py`` wraps them in session fixtures.
"""

from gbifdl_assets_tests.harness.ports import free_port, wait_for_port
from gbifdl_assets_tests.harness.postgres import PostgresServer, PostgresStartError
from gbifdl_assets_tests.harness.s3 import S3Server, S3StartError

__all__ = [
    "PostgresServer",
    "PostgresStartError",
    "S3Server",
    "S3StartError",
    "free_port",
    "wait_for_port",
]

"""A property-based run of the service's OpenAPI document with schemathesis, against the live server.

Schemathesis generates valid and invalid requests for every annotation endpoint (and the login),
follows links between them (create, then read, vote, comment, delete) and checks every answer: no
5xx, only documented status codes and content types, bodies matching the response schemas, invalid
input refused, endpoints that need a login refusing requests without one, and 405 answers with a
correct ``Allow`` header. Bounded (5 examples per operation, fixed seed, one worker; 20-25 s per
backend measured on a busy 2-core machine): the explicit examples, random fuzzing and the stateful
link walk. Schemathesis' ``coverage`` phase (boundary and invalid values of every parameter, ~1,750
more requests; up to a minute per backend under load) also passes; it runs when
``GBIFDL_SCHEMATHESIS_COVERAGE=1`` is set.

Two of schemathesis' checks do not apply to GBIF's API by design and are left out:

* ``positive_data_acceptance``: the schema cannot express "a valid polygon" or "an existing taxon",
  so schema-valid bodies are often (rightly) refused with 400;
* ``use_after_free``: GBIF deletes softly and ``GET /rule/{id}`` shows deleted rules (with
  ``deleted`` set), as its clients expect.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gbifdl_assets.annotations.store import AnnotationStore
from gbifdl_assets_tests.harness.annotation_service import AnnotationService

USER, PASSWORD = "fuzzer", "fuzzer-password-1"
PHASES = "examples,fuzzing,stateful" + (
    ",coverage" if os.environ.get("GBIFDL_SCHEMATHESIS_COVERAGE") == "1" else ""
)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_schemathesis_run_finds_no_failures(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "postgresql":  # as deployed; PostgreSQL refuses more input than SQLite does
        url = request.getfixturevalue("pg_database").dsn
    else:
        url = f"sqlite:///{tmp_path / 'annotations.sqlite'}"
    with AnnotationStore(url) as store:
        store.add_user(USER, PASSWORD)
    # wrong-credential probes (the ignored_auth check) must not lock the fuzzer out; an empty data
    # storage, so the rule preview answers (without one it says 503: not configured)
    (tmp_path / "data").mkdir()
    args = ("--max-failed-logins", "0", "--data", str(tmp_path / "data"))
    with AnnotationService(url, tmp_path, extra_args=args) as service:
        schemathesis = Path(sys.executable).with_name("schemathesis")
        cmd = [
            str(schemathesis), "run", f"{service.url}/openapi.json",
            "--auth", f"{USER}:{PASSWORD}",
            "--checks", "all", "--exclude-checks", "positive_data_acceptance,use_after_free",
            "--include-path-regex", "^/(occurrence|user)/",
            "--max-examples", "5", "--seed", "1", "--workers", "1",
            "--generation-database", "none", "--no-color", "--request-timeout", "30",
            "--phases", PHASES,
        ]  # fmt: skip
        done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240)
        assert "Internal Server Error" not in service.log_text()
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-6000:]
    # every API operation: 29, the preview and 9 image-flag ones
    assert "Tested: 39" in report, report[-3000:]

"""A storage in an S3-compatible bucket (AWS, MinIO, Ceph, moto) under an optional key prefix.

An object only becomes visible when a PutObject or CompleteMultipartUpload succeeds, so a write is
staged on this machine first (a spooled temporary file) and uploaded at the end; large objects go
up as a multipart upload that is aborted on failure. botocore errors are translated into
:class:`FileNotFoundError` and :class:`StorageUnavailable` naming the endpoint, the bucket and what
to check, with the credentials scrubbed from every message.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

from gbifdl_assets.storage.base import Storage
from gbifdl_assets.storage.errors import StorageError, StorageUnavailable
from gbifdl_assets.storage.keys import join_key, validate_key
from gbifdl_assets.storage.staging import STALE_AFTER_SECONDS, TMP_PREFIX

#: Up to this size an S3 write is one PutObject; above it, a multipart upload.
MULTIPART_THRESHOLD = 16 * 1024 * 1024
#: Part size for multipart uploads (S3 requires >= 5 MiB for all but the last part).
MULTIPART_PART_SIZE = 16 * 1024 * 1024
#: ``open_write`` on S3 keeps this much in memory before spilling to a temporary file.
SPOOL_MAX_MEMORY = 8 * 1024 * 1024

_ACCESS_DENIED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "Forbidden"}
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


_LOADER: Any = None
_LOADER_LOCK = threading.Lock()


def _shared_loader() -> Any:
    global _LOADER
    with _LOADER_LOCK:
        if _LOADER is None:
            import botocore.loaders

            _LOADER = botocore.loaders.create_loader()
        return _LOADER


class S3Storage(Storage):
    """Objects under ``prefix`` in an S3-compatible bucket (AWS, MinIO, Ceph, moto).

    Credentials: explicit ``access_key_id``/``secret_access_key``, else boto3's usual chain
    (environment variables, shared config files, instance metadata). A custom ``endpoint_url``
    switches to path-style addressing and to checksums "when required", which S3-compatible
    servers expect. The boto3 client is created lazily, so constructing a storage never does I/O;
    call :meth:`check` to fail fast on a wrong endpoint, bucket or credentials.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        region_name: str | None = None,
        max_attempts: int = 5,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        if not _BUCKET_RE.match(bucket or ""):
            raise StorageError(
                f"invalid S3 bucket name {bucket!r}: use 3-63 lowercase letters, digits, '.' or '-', "
                "starting and ending with a letter or digit"
            )
        prefix = prefix.strip("/")
        if prefix:
            validate_key(prefix, what="prefix")
        if (access_key_id is None) != (secret_access_key is None):
            raise StorageError(
                "S3 credentials are incomplete: give both access_key_id and secret_access_key, "
                "or neither (then AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the AWS config are used)"
            )
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = (
            endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        )
        self.region_name = (
            region_name or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        )
        self.uri = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self._credentials = (access_key_id, secret_access_key, session_token)
        self._client_options = {
            "max_attempts": max_attempts,
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
        }
        self._client_obj: Any = None
        self._lock = threading.Lock()
        self._bucket_checked = False

    # ----------------------------------------------------------- plumbing
    @property
    def endpoint(self) -> str:
        """The endpoint for messages: the configured one, or AWS's regional default."""
        return self.endpoint_url or f"https://s3.{self.region_name}.amazonaws.com"

    def _client(self) -> Any:
        with self._lock:
            if self._client_obj is None:
                import boto3
                import botocore.session
                from botocore.config import Config

                key_id, secret, token = self._credentials
                # A fresh botocore session per storage keeps credential resolution independent (the
                # default chain is read when the client is made), while the shared loader avoids
                # re-parsing the S3 service model each time (~65 ms -> ~15 ms per client).
                botocore_session = botocore.session.Session()
                botocore_session.register_component("data_loader", _shared_loader())
                session = boto3.session.Session(
                    aws_access_key_id=key_id,
                    aws_secret_access_key=secret,
                    aws_session_token=token,
                    region_name=self.region_name,
                    botocore_session=botocore_session,
                )
                extra: dict[str, Any] = {}
                if self.endpoint_url:
                    extra = {
                        "s3": {"addressing_style": "path"},
                        # Newer botocore adds CRC checksums to every upload by default, which some
                        # S3-compatible servers reject; send them only where the API requires them.
                        "request_checksum_calculation": "when_required",
                        "response_checksum_validation": "when_required",
                    }
                config = Config(
                    retries={"max_attempts": self._client_options["max_attempts"], "mode": "standard"},
                    connect_timeout=self._client_options["connect_timeout"],
                    read_timeout=self._client_options["read_timeout"],
                    max_pool_connections=32,
                    **extra,
                )
                self._client_obj = session.client("s3", endpoint_url=self.endpoint_url, config=config)
            return self._client_obj

    def __getstate__(self) -> dict[str, Any]:
        # boto3 clients and locks do not pickle; rebuild them lazily in the other process.
        state = self.__dict__.copy()
        state["_client_obj"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        endpoint = f", endpoint_url={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3Storage({self.uri!r}{endpoint})"

    __str__ = __repr__

    def _key(self, key: str) -> str:
        return join_key(self.prefix, validate_key(key))

    def _scrub(self, text: str) -> str:
        for secret in self._credentials:
            if secret:
                text = text.replace(secret, "***")
        return text

    def _translate(self, exc: Exception, key: str | None) -> Exception:
        """Map a botocore exception to FileNotFoundError / StorageUnavailable with a clear message."""
        from botocore.exceptions import (
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
            ReadTimeoutError,
        )

        where = f"bucket {self.bucket!r} at endpoint {self.endpoint}"
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            detail = self._scrub(f"{code}: {err.get('Message', '')}".strip(": "))
            if code in {"NoSuchBucket"} or (key is None and code in {"404", "NotFound"}):
                return StorageUnavailable(
                    f"S3 {where} does not exist: create it or fix the bucket name in {self.uri!r}"
                )
            if key is not None and code in {"NoSuchKey", "404", "NotFound"}:
                return self._not_found(key)
            if code in _ACCESS_DENIED_CODES or status == 403:
                return StorageUnavailable(
                    f"S3 refused access to {where} ({detail}): check the access key and secret "
                    "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the storage configuration) and the "
                    "bucket policy"
                )
            return StorageUnavailable(f"S3 request to {where} failed ({detail or status})")
        if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
            return StorageUnavailable(
                f"cannot reach S3 endpoint {self.endpoint} (bucket {self.bucket!r}): check that the "
                "server is running and that endpoint_url / AWS_ENDPOINT_URL is right"
            )
        if isinstance(exc, ReadTimeoutError):
            return StorageUnavailable(
                f"S3 endpoint {self.endpoint} (bucket {self.bucket!r}) stopped answering (read timeout): "
                "check the server's health and network"
            )
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return StorageUnavailable(
                f"no S3 credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or "
                "pass access_key_id/secret_access_key"
            )
        return exc

    @contextlib.contextmanager
    def _errors(self, key: str | None) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            translated = self._translate(exc, key)
            if translated is exc:
                raise StorageUnavailable(
                    f"S3 request to bucket {self.bucket!r} at endpoint {self.endpoint} failed: "
                    f"{self._scrub(str(exc))}"
                ) from exc
            raise translated from exc

    # ----------------------------------------------------------------- API
    def check(self) -> None:
        """Fail fast with :class:`StorageUnavailable` if the endpoint, bucket or credentials are wrong."""
        with self._errors(None):
            self._client().head_bucket(Bucket=self.bucket)

    def local_path(self, key: str) -> Path | None:
        validate_key(key)
        return None

    def child(self, prefix: str) -> S3Storage:
        sub = S3Storage.__new__(S3Storage)
        sub.__dict__.update(self.__getstate__())
        sub._lock = threading.Lock()
        sub.prefix = join_key(self.prefix, validate_key(prefix.rstrip("/"), what="prefix"))
        sub.uri = f"s3://{self.bucket}/{sub.prefix}"
        return sub

    def write_bytes(self, key: str, data: bytes) -> None:
        full = self._key(key)
        if len(data) <= MULTIPART_THRESHOLD:
            with self._errors(key):
                self._client().put_object(Bucket=self.bucket, Key=full, Body=data)
        else:
            self._multipart_upload(key, io.BytesIO(data))

    @contextlib.contextmanager
    def _open_write(self, key: str) -> Iterator[BinaryIO]:
        full = self._key(key)
        # Stage locally: nothing is sent until the block finishes cleanly, so an exception in the
        # block can never leave a partial (or any) object behind.
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_MEMORY, prefix=TMP_PREFIX) as spool:
            yield spool  # type: ignore[misc]
            if spool.closed:
                raise StorageError(
                    f"the file for {self.uri_of(key)} was closed inside the open_write block, so its "
                    "data is lost and nothing was uploaded: let the with-statement close it"
                )
            spool.seek(0, io.SEEK_END)
            size = spool.tell()
            spool.seek(0)
            if size <= MULTIPART_THRESHOLD:
                with self._errors(key):
                    self._client().put_object(Bucket=self.bucket, Key=full, Body=spool.read())
            else:
                self._multipart_upload(key, spool)

    def _multipart_upload(self, key: str, source: IO[bytes]) -> None:
        full = self._key(key)
        client = self._client()
        with self._errors(key):
            upload_id = client.create_multipart_upload(Bucket=self.bucket, Key=full)["UploadId"]
        try:
            parts = []
            number = 1
            while chunk := source.read(MULTIPART_PART_SIZE):
                with self._errors(key):
                    resp = client.upload_part(
                        Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=chunk
                    )
                parts.append({"PartNumber": number, "ETag": resp["ETag"]})
                number += 1
            with self._errors(key):
                client.complete_multipart_upload(
                    Bucket=self.bucket, Key=full, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
        except BaseException:
            # Uploaded parts cost storage until aborted, and are never visible as an object.
            with contextlib.suppress(Exception):
                client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            raise

    def open_read(self, key: str) -> BinaryIO:
        with self._errors(key):
            return self._client().get_object(Bucket=self.bucket, Key=self._key(key))["Body"]

    def read_bytes(self, key: str) -> bytes:
        with self._errors(key):
            body = self._client().get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            try:
                return body.read()
            finally:
                body.close()

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except FileNotFoundError:
            return False
        return True

    def copy_within(self, src: Storage, src_key: str, key: str) -> int | None:
        """A server-side CopyObject when ``src`` is on the same endpoint with the same credentials
        (an export from the image store into the same bucket or a sibling one): no image bytes
        travel through this process. Objects of up to 5 GB; images are far smaller."""
        if not (
            isinstance(src, S3Storage)
            and src.endpoint_url == self.endpoint_url
            and src._credentials == self._credentials  # noqa: SLF001 - same class
            and src.region_name == self.region_name
        ):
            return None
        source = {"Bucket": src.bucket, "Key": src._key(src_key)}  # noqa: SLF001 - same class
        full = self._key(key)
        with src._errors(src_key):  # noqa: SLF001 - a missing object is the source's (NoSuchKey)
            self._client().copy_object(Bucket=self.bucket, Key=full, CopySource=source)
        return self.size(key)

    def size(self, key: str) -> int:
        try:
            with self._errors(key):
                head = self._client().head_object(Bucket=self.bucket, Key=self._key(key))
        except FileNotFoundError:
            # HEAD answers a bare 404 both for a missing key and a missing bucket; tell them apart
            # once, so a typo in the bucket name is not reported as "every object is missing".
            if not self._bucket_checked:
                self.check()
                self._bucket_checked = True
            raise
        return int(head["ContentLength"])

    def delete(self, key: str) -> None:
        with self._errors(key):
            self._client().delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_key(prefix, allow_empty=True, what="prefix")
        return self._list(prefix)

    def cleanup(self, prefix: str = "", *, stale_after: float = STALE_AFTER_SECONDS) -> list[str]:
        """Abort the abandoned multipart uploads of keys under ``prefix``; returns their keys.

        How S3 writes are done (``write_bytes``/``open_write``): the data is staged on the writer's
        machine; up to MULTIPART_THRESHOLD (16 MiB) it is sent in one PutObject, which leaves nothing
        behind when the writer dies; above it ``_multipart_upload`` (our own loop of
        CreateMultipartUpload/UploadPart/CompleteMultipartUpload, not boto3's upload_fileobj)
        aborts the upload on any exception. Only a writer that dies without running its handler
        (kill -9, power loss, the network gone during the abort) leaves an unfinished upload, whose
        parts are billed until it is aborted but which never becomes a visible object.

        An upload is abandoned when it was initiated more than ``stale_after`` seconds ago *and*
        none of its parts was uploaded in that time: initiation alone would condemn a live writer
        whose large upload simply takes longer than ``stale_after``, while a live writer sends a
        part every few seconds. Upload names carry no pid to check, so age is the only test (the
        comparison uses the server's timestamps against this machine's clock, so keep
        ``stale_after`` well above any clock skew). A key is listed once per upload aborted.
        """
        validate_key(prefix, allow_empty=True, what="prefix")
        base = f"{self.prefix}/" if self.prefix else ""
        client = self._client()
        cutoff = time.time() - stale_after
        aborted: list[str] = []
        with self._errors(None):
            pages = client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=base + prefix
            )
            for page in pages:
                for upload in page.get("Uploads", ()):
                    full, upload_id = upload["Key"], upload["UploadId"]
                    if not full.startswith(base + prefix) or upload["Initiated"].timestamp() >= cutoff:
                        continue
                    if self._upload_active_since(full, upload_id, cutoff):
                        continue
                    try:
                        client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
                    except client.exceptions.NoSuchUpload:
                        continue  # completed or aborted meanwhile (by its writer or another sweep)
                    aborted.append(full[len(base) :])
        return sorted(aborted)

    def _upload_active_since(self, full: str, upload_id: str, cutoff: float) -> bool:
        """True if a part of the upload was sent after ``cutoff`` (or it is already gone)."""
        client = self._client()
        try:
            for page in client.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=full, UploadId=upload_id
            ):
                if any(part["LastModified"].timestamp() >= cutoff for part in page.get("Parts", ())):
                    return True
        except client.exceptions.NoSuchUpload:
            return True  # nothing left to abort
        return False

    def _list(self, prefix: str, page_size: int = 1000) -> Iterator[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        paginator = self._client().get_paginator("list_objects_v2")
        with self._errors(None):
            pages = paginator.paginate(
                Bucket=self.bucket, Prefix=base + prefix, PaginationConfig={"PageSize": page_size}
            )
            for page in pages:
                for obj in page.get("Contents", ()):
                    name = obj["Key"][len(base) :]
                    if name and not name.endswith("/"):  # skip "folder" marker objects
                        yield name

"""Multipart uploads for the ``s3://`` sink: parts sent or copied server-side, completed or aborted.

A log's segments become one object through ``UploadPartCopy`` (the server copies them:
nothing is downloaded again), a report through parts sent as they fill. The expected
multipart ETag (md5 of the parts' md5s, ``-N``) lets the sink check the composed object.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
from dataclasses import dataclass
from typing import Any

from batchdrain.logstore.base import LogStoreError
from batchdrain.logstore.s3client import S3Client

MAX_COPY = 5 * 1024**3  # the largest object CopyObject / UploadPartCopy takes in one go


@dataclass(frozen=True)
class Segment:
    """One stored segment object of a log being written."""

    key: str
    size: int
    etag: str


def etag_of(value: Any) -> str:
    """An ETag without its quotes."""
    return str(value or "").strip('"')


class Upload:
    """One multipart upload: parts sent or copied in order, completed or aborted."""

    def __init__(self, client: S3Client, bucket: str, name: str) -> None:
        self._client = client
        self._bucket = bucket
        self._name = name
        self._what = f"storing {bucket}/{name}"
        self.parts: list[dict[str, Any]] = []
        self._md5s: list[bytes] = []
        response = client.call("create_multipart_upload", self._what, Bucket=bucket, Key=name)
        self._id = response["UploadId"]

    def part(self, data: bytes) -> None:
        number = len(self.parts) + 1
        md5 = hashlib.md5(data, usedforsecurity=False)
        response = self._client.call(
            "upload_part", f"{self._what} part {number}", Bucket=self._bucket, Key=self._name,
            UploadId=self._id, PartNumber=number, Body=data, ContentMD5=base64.b64encode(md5.digest()).decode())
        self.parts.append({"PartNumber": number, "ETag": response["ETag"]})
        self._md5s.append(md5.digest())

    def copy(self, segment: Segment) -> None:
        for start in range(0, max(segment.size, 1), MAX_COPY):
            number = len(self.parts) + 1
            end = min(segment.size, start + MAX_COPY) - 1
            ranged = {"CopySourceRange": f"bytes={start}-{end}"} if segment.size > MAX_COPY else {}
            response = self._client.call(
                "upload_part_copy", f"{self._what} part {number}", Bucket=self._bucket, Key=self._name,
                UploadId=self._id, PartNumber=number, CopySource={"Bucket": self._bucket, "Key": segment.key},
                **ranged)
            etag = etag_of((response.get("CopyPartResult") or {}).get("ETag"))
            self.parts.append({"PartNumber": number, "ETag": f'"{etag}"'})
            self._md5s.append(binascii.unhexlify(segment.etag) if not ranged and len(segment.etag) == 32 else b"")

    def complete(self) -> None:
        self._client.call("complete_multipart_upload", self._what, Bucket=self._bucket, Key=self._name,
                               UploadId=self._id, MultipartUpload={"Parts": self.parts})

    def expectedetag_of(self) -> str | None:
        """S3's multipart ETag (md5 of the parts' md5s, ``-N``), when every part's md5 is known."""
        if not self._md5s or any(not m for m in self._md5s):
            return None
        return f"{hashlib.md5(b''.join(self._md5s), usedforsecurity=False).hexdigest()}-{len(self._md5s)}"

    def abort(self) -> None:
        # Best effort by design: the upload failed already and that error is what is raised;
        # an upload left behind costs storage, never a wrong log (a bucket lifecycle rule
        # for incomplete uploads, see README, removes it).
        try:
            self._client.call("abort_multipart_upload", f"aborting {self._what}", Bucket=self._bucket,
                                   Key=self._name, UploadId=self._id)
        except OSError as err:
            raise LogStoreError(errno.EIO, f"{self._what}: upload failed, and aborting it too: {err}") from err

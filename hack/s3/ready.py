"""Exit 0 when the S3 gateway at argv[1] serves bucket argv[2] (created if missing).

Used by up.sh with the machine's python3 and no third-party package: a SigV4-signed
PUT of the bucket, then a PUT and GET of a small object, over plain HTTP.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit


def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def request(endpoint: str, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    host = urlsplit(endpoint).netloc
    now = dt.datetime.now(dt.UTC)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    payload = hashlib.sha256(body).hexdigest()
    headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": stamp}
    signed = ";".join(sorted(headers))
    canonical = "\n".join([method, path, "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed, payload])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _sign(_sign(_sign(_sign(f"AWS4{os.environ['AWS_SECRET_ACCESS_KEY']}".encode(), day), region), "s3"),
                "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={os.environ['AWS_ACCESS_KEY_ID']}/{scope}, "
                                f"SignedHeaders={signed}, Signature={signature}")
    req = urllib.request.Request(endpoint + path, data=body if method == "PUT" else None, method=method,
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def main() -> int:
    endpoint, bucket = sys.argv[1], sys.argv[2]
    status, body = request(endpoint, "PUT", f"/{bucket}")
    if status not in (200, 409):
        print(f"create bucket: {status} {body[:200]!r}", file=sys.stderr)
        return 1
    status, body = request(endpoint, "PUT", f"/{bucket}/.ready", b"ready")
    if status != 200:
        print(f"put: {status} {body[:200]!r}", file=sys.stderr)
        return 1
    status, body = request(endpoint, "GET", f"/{bucket}/.ready")
    if status != 200 or body != b"ready":
        print(f"get: {status} {body[:200]!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

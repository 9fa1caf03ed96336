"""Object-store URIs (s3://, gs://, az://): storage options, the endpoint in use, and plain errors.

LanceDB and Lance take the same `storage_options` (keys such as `endpoint`, `region`,
`allow_http`, `aws_access_key_id`) and fill in what is missing from the environment
(AWS_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID, ...). Their failures arrive as one long Rust
debug dump (retry state, request URI, XML body, source location); `plain_error` turns the
common ones (endpoint unreachable, host unknown, credentials refused, bucket missing) into a
short cause naming the endpoint.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

from ..errors import BindspaceError

ENDPOINT_KEYS = ("endpoint", "aws_endpoint", "endpoint_url", "aws_endpoint_url")
ENDPOINT_ENV = ("AWS_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")
# The driver forwards these to Ray workers so they reach the same store (see ray_indexer).
FORWARDED_ENV_PREFIXES = ("AWS_", "GOOGLE_", "AZURE_")

_REQUEST_URI = re.compile(r"uri: Some\((\w+://[^/)\s]+)")
_S3_CODE = re.compile(r"<Code>([^<]+)</Code>(?:<Message>([^<]*)</Message>)?")
_STATUS = re.compile(r"status: (\d{3})")
_OS_MESSAGE = re.compile(r'message: \\?"([^"\\]+)')
_DNS = re.compile(r'dns error", Custom \{[^}]*error: \\?"([^"\\]+)')
CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken",
                    "InvalidToken", "InvalidClientTokenId", "AuthorizationHeaderMalformed"}


def is_remote(uri: str) -> bool:
    """True for object-store URIs (anything with a scheme other than file://)."""
    return "://" in uri and not uri.startswith("file://")


def parse_storage_options(pairs: Iterable[str] | None) -> dict[str, str]:
    """KEY=VALUE strings as a dict (later keys win); a pair without '=' is a BindspaceError."""
    options: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BindspaceError(f"--storage-option {pair!r}: expected KEY=VALUE (e.g. endpoint=http://host:9000)")
        options[key.strip().lower()] = value
    return options


def endpoint_of(uri: str, options: Mapping[str, str] | None = None) -> str:
    """The endpoint a store URI is reached at: from the options, the environment, or the scheme's default."""
    for key in ENDPOINT_KEYS:
        if (options or {}).get(key):
            return str((options or {})[key])
    for name in ENDPOINT_ENV:
        if os.environ.get(name):
            return os.environ[name]
    scheme = uri.split("://", 1)[0]
    return f"the default {scheme}:// endpoint"


def plain_error(exc: BaseException, uri: str, options: Mapping[str, str] | None = None) -> str | None:
    """A one-line cause naming the endpoint for object-store failures LanceDB reports; None if not one."""
    text = str(exc)
    if not is_remote(uri):
        return None
    found = _REQUEST_URI.search(text)
    endpoint = found.group(1) if found else endpoint_of(uri, options)
    bucket = uri.split("://", 1)[1].split("/", 1)[0]
    code = _S3_CODE.search(text)
    if code is not None:
        name, message = code.group(1), (code.group(2) or "").strip()
        detail = f"{name}: {message}" if message else name
        if name in CREDENTIAL_CODES:
            return f"the object store at {endpoint} refused the credentials ({name}); check AWS_ACCESS_KEY_ID " \
                   "and AWS_SECRET_ACCESS_KEY (or the aws_* storage options)"
        if name == "NoSuchBucket":
            return f"bucket {bucket!r} does not exist at {endpoint} ({detail})"
        return f"the object store at {endpoint} answered {detail}"
    if "dns error" in text:
        dns = _DNS.search(text)
        return f"cannot reach the object store at {endpoint}: host not found ({dns.group(1) if dns else 'dns error'})"
    if "tcp connect error" in text or "ConnectError" in text or "kind: Connect" in text:
        message = _OS_MESSAGE.search(text)
        cause = message.group(1).lower() if message else "connection failed"
        return f"cannot reach the object store at {endpoint}: {cause}"
    if "timed out" in text.lower() or "kind: Timeout" in text:
        return f"cannot reach the object store at {endpoint}: timed out"
    status = _STATUS.search(text)
    if status is not None and "RetryError" in text:
        return f"the object store at {endpoint} answered HTTP {status.group(1)}"
    return None


def forwarded_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Object-store variables (AWS_*, GOOGLE_*, AZURE_*) of this process, for Ray workers' runtime_env."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if k.startswith(FORWARDED_ENV_PREFIXES)}

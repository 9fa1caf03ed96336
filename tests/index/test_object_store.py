"""Object-store failures as LanceDB reports them (texts captured from lance-io against moto) become one plain line."""
from __future__ import annotations

import pytest

from bindspace.errors import BindspaceError
from bindspace.index.object_store import endpoint_of, forwarded_env, parse_storage_options, plain_error

REFUSED = ('Invalid input, Failed to connect to namespace: IO { source: Generic { store: "S3", source: ListRequest '
           '{ source: RetryError(RetryErrorImpl { method: GET, uri: Some(http://127.0.0.1:1/bucket-one?list-type=2&'
           'prefix=x%2F__manifest%2F_versions%2F), retries: 3, max_retries: 3, elapsed: 539.5ms, retry_timeout: 180s, '
           'inner: Http(HttpError { kind: Connect, source: reqwest::Error { kind: Request, source: hyper_util::client::'
           'legacy::Error(Connect, ConnectError("tcp connect error", 127.0.0.1:1, Os { code: 111, kind: '
           'ConnectionRefused, message: "Connection refused" })) } }) }) } }, location: Location { file: "/root/.cargo/'
           'registry/src/index.crates.io-1949cf8c6b5b557f/lance-io-13.0.0/src/object_store.rs", line: 1506 }')
DNS = ('Failed to connect to namespace: IO { source: Generic { store: "S3", source: ListRequest { source: RetryError('
       'RetryErrorImpl { method: GET, uri: Some(http://no-such-host.invalid:9000/b?list-type=2), retries: 3, inner: '
       'Http(HttpError { kind: Connect, source: reqwest::Error { kind: Request, source: hyper_util::client::legacy::'
       'Error(Connect, ConnectError("dns error", Custom { kind: Uncategorized, error: "failed to lookup address '
       'information: Name or service not known" })) } }) }) } }')
SIGNATURE = ('Failed to connect to namespace: IO { source: Generic { store: "S3", source: ListRequest { source: '
             'RetryError(RetryErrorImpl { method: GET, uri: Some(http://127.0.0.1:5125/bucket-two?list-type=2), '
             'retries: 0, inner: Status { status: 403, body: Some("<?xml version=\\"1.0\\" encoding=\\"utf-8\\"?>\\n'
             '<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match'
             '</Message></Error>") } }) } }')


@pytest.mark.parametrize("text, words", [
    (REFUSED, ["http://127.0.0.1:1", "connection refused"]),
    (DNS, ["http://no-such-host.invalid:9000", "host not found", "Name or service not known"]),
    (SIGNATURE, ["http://127.0.0.1:5125", "refused the credentials", "SignatureDoesNotMatch"]),
])
def test_lance_object_store_errors_become_one_plain_line(text, words):
    line = plain_error(ValueError(text), "s3://bucket-one/x")
    assert line is not None and "\n" not in line and len(line) < 200
    for word in words:
        assert word in line
    assert "RetryError" not in line and ".rs" not in line


def test_local_paths_and_unknown_errors_are_left_alone():
    assert plain_error(ValueError(REFUSED), "/data/index") is None
    assert plain_error(ValueError("Table 'items' was not found"), "s3://b/x") is None


def test_storage_options_parse_and_endpoint_resolution(monkeypatch):
    assert parse_storage_options(["Endpoint=http://h:9000", "allow_http=true", "token=a=b"]) == {
        "endpoint": "http://h:9000", "allow_http": "true", "token": "a=b"}
    with pytest.raises(BindspaceError, match="KEY=VALUE"):
        parse_storage_options(["endpoint"])
    monkeypatch.delenv("AWS_ENDPOINT", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://env:9000")
    assert endpoint_of("s3://b/x", {"aws_endpoint": "http://opt:1"}) == "http://opt:1"
    assert endpoint_of("s3://b/x", {}) == "http://env:9000"
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    assert endpoint_of("gs://b/x") == "the default gs:// endpoint"
    assert forwarded_env({"AWS_REGION": "r", "HOME": "/root", "GOOGLE_APPLICATION_CREDENTIALS": "f"}) == {
        "AWS_REGION": "r", "GOOGLE_APPLICATION_CREDENTIALS": "f"}

"""modules/jsii_runtime.py cache_token_reads: repeated reads of a token-valued property cost one round trip,
and a set or method call on the object drops what was cached for it."""
from __future__ import annotations

from cdktf_cdktf_provider_aws import s3_bucket
from jsii._kernel.providers import process

from tests.conftest import new_stack


def _count_gets(monkeypatch) -> list[str]:
    seen: list[str] = []
    original = process._NodeProcess.send

    def send(self, request, response_type):
        if type(request).__name__ == "GetRequest":
            seen.append(request.property)
        return original(self, request, response_type)

    monkeypatch.setattr(process._NodeProcess, "send", send)
    return seen


def test_a_token_attribute_is_read_from_node_once(monkeypatch):
    stack = new_stack()
    bucket = s3_bucket.S3Bucket(stack, "b", bucket="b")
    gets = _count_gets(monkeypatch)
    first, second = bucket.arn, bucket.arn
    assert first == second and "${TfToken[" in first
    assert gets.count("arn") == 1


def test_setting_a_property_drops_the_cached_reads_of_that_object(monkeypatch):
    stack = new_stack()
    bucket = s3_bucket.S3Bucket(stack, "b", bucket="b")
    gets = _count_gets(monkeypatch)
    bucket.arn
    bucket.bucket = "renamed"       # a set (or a method call) on the object may change what its getters return
    bucket.arn
    assert gets.count("arn") == 2


def test_plain_values_are_always_read_afresh(monkeypatch):
    stack = new_stack()
    bucket = s3_bucket.S3Bucket(stack, "b", bucket="plain")
    gets = _count_gets(monkeypatch)
    assert (bucket.bucket_input, bucket.bucket_input) == ("plain", "plain")   # the configured value, no token
    assert gets.count("bucketInput") == 2

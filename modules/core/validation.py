"""Pure validation shared by environment config and construct props. Bad input raises ConfigError,
whose message names the field, the value and the fix."""
from __future__ import annotations

import contextlib
import ipaddress
import re
from typing import Iterator

from .tokens import is_unresolved


class ConfigError(ValueError):
    def __init__(self, field: str, value: object, problem: str, fix: str) -> None:
        self.field, self.value, self.problem, self.fix = field, value, problem, fix
        super().__init__(f"{field}={value!r} {problem}; fix: {fix}")

    def within(self, prefix: str) -> "ConfigError":
        """The same error with its field path qualified by the enclosing config (e.g. the environment)."""
        return ConfigError(f"{prefix}.{self.field}", self.value, self.problem, self.fix)


def require(condition: bool, field: str, value: object, problem: str, fix: str) -> None:
    if not condition:
        raise ConfigError(field, value, problem, fix)


@contextlib.contextmanager
def section(name: str) -> Iterator[None]:
    """Validation of one settings section: a ConfigError raised inside names its field `<name>.<field>`, the path
    the user sets (e.g. `database.instance_class`; the environment adds `environments.<env>.`)."""
    try:
        yield
    except ConfigError as err:
        raise err.within(name) from None



# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                      2922, 3288, 3653)
_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_TAG_CHARS = re.compile(r"[\w .:/=+\-@]*", re.UNICODE)


_AWS_REGION = re.compile(r"[a-z]{2}(-gov)?-[a-z]+-\d")
_ACCOUNT_ID = re.compile(r"\d{12}")
_EKS_CLUSTER = re.compile(r"[a-z][a-z0-9-]{0,38}[a-z0-9]")
_KMS_KEY_ARN = re.compile(r"arn:aws(-cn|-us-gov)?:kms:[a-z0-9-]+:\d{12}:key/[0-9a-f-]{36}")


def _token(value: object) -> bool:
    """A Terraform reference (a cdktf token) is checked by Terraform at plan, not here."""
    return isinstance(value, str) and is_unresolved(value)


def _name_check(pattern: re.Pattern[str], problem: str, fix: str):
    """A validator `(field, value)` for an AWS name: a string matching `pattern`, or a Terraform reference."""
    def check(field: str, value: object) -> None:
        require(_token(value) or (isinstance(value, str) and pattern.fullmatch(value) is not None), field, value,
                problem, fix)
    return check


aws_region = _name_check(_AWS_REGION, "is not an AWS region name", "use e.g. 'eu-west-1'")
account_id = _name_check(_ACCOUNT_ID, "is not a 12-digit AWS account id", "pass the account id, e.g. '123456789012'")
eks_cluster_name = _name_check(_EKS_CLUSTER, "is not a valid EKS cluster name",
                               "use 2-40 lowercase letters, digits and inner hyphens")
kms_key_arn = _name_check(_KMS_KEY_ARN, "is not a KMS key ARN",
                          "pass the key's ARN (arn:aws:kms:<region>:<account>:key/<id>), not its alias")


def ipv4_network(field: str, value: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except (ValueError, TypeError) as err:
        raise ConfigError(field, value, f"is not a valid IPv4 CIDR block ({err})",
                          "use a network address with its prefix length, e.g. '10.20.0.0/16'") from None
    return network


def no_overlaps(named: dict[str, ipaddress.IPv4Network]) -> None:
    items = list(named.items())
    for i, (field_a, net_a) in enumerate(items):
        for field_b, net_b in items[i + 1:]:
            require(not net_a.overlaps(net_b), field_b, str(net_b), f"overlaps {field_a}={str(net_a)!r}",
                    "give every subnet its own, non-overlapping range")


def dns_name(field: str, value: str) -> None:
    labels = value.split(".") if isinstance(value, str) else []
    require(isinstance(value, str) and len(value) <= 253 and len(labels) >= 2
            and all(_DNS_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit(),
            field, value, "is not a valid DNS domain name",
            "use lowercase labels of letters, digits and inner hyphens separated by dots, e.g. 'data.example.com'")


def log_retention(field: str, value: int) -> None:
    require(value in LOG_RETENTION_DAYS, field, value, "is not a retention period CloudWatch Logs accepts",
            f"use one of {', '.join(map(str, LOG_RETENTION_DAYS))}")


def tags(field: str, value: dict[str, str]) -> None:
    for key, tag_value in value.items():
        require(isinstance(key, str) and 0 < len(key.strip()) <= 128 and _TAG_CHARS.fullmatch(key) is not None
                and not key.lower().startswith("aws:"),
                f"{field}.key", key, "is not a valid AWS tag key", "use 1-128 letters, digits, spaces or _.:/=+-@, "
                "not starting with 'aws:'")
        require(isinstance(tag_value, str) and 0 < len(tag_value.strip()) <= 256
                and _TAG_CHARS.fullmatch(tag_value) is not None,
                f"{field}.{key}", tag_value, "is empty or not a valid AWS tag value",
                "set a non-empty value of at most 256 letters, digits, spaces or _.:/=+-@")


_BUCKET = re.compile(r"(?!xn--)(?!sthree-)(?!amzn-s3-demo-)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def bucket_name(field: str, value: str) -> None:
    """S3 general-purpose bucket naming rules (no dots here: dots break virtual-host TLS certificates)."""
    ok = (isinstance(value, str) and _BUCKET.fullmatch(value) is not None and "." not in value and ".." not in value
          and not value.endswith(("-s3alias", "--ol-s3", "--x-s3")))
    require(ok, field, value, "is not a valid S3 bucket name",
            "use 3-63 lowercase letters, digits and hyphens, starting and ending with a letter or digit")


_DAILY_WINDOW = re.compile(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d")
_WEEKLY_WINDOW = re.compile(r"(mon|tue|wed|thu|fri|sat|sun):([01]\d|2[0-3]):[0-5]\d-"
                            r"(mon|tue|wed|thu|fri|sat|sun):([01]\d|2[0-3]):[0-5]\d")


def daily_window(field: str, value: str) -> None:
    """An AWS daily UTC window such as RDS backup_window or ElastiCache snapshot_window."""
    require(isinstance(value, str) and _DAILY_WINDOW.fullmatch(value) is not None, field, value,
            "is not a daily UTC window", "use 'hh:mm-hh:mm', e.g. '02:00-03:00'")


def weekly_window(field: str, value: str) -> None:
    """An AWS weekly UTC maintenance window."""
    require(isinstance(value, str) and _WEEKLY_WINDOW.fullmatch(value) is not None, field, value,
            "is not a weekly UTC window", "use 'ddd:hh:mm-ddd:hh:mm', e.g. 'sun:03:30-sun:04:30'")

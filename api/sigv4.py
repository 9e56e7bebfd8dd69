"""AWS Signature Version 4, both sides, pure: sign a request, or check a received one.

The canonical request follows botocore for service ``lambda`` (not S3): the path is normalised
and percent-encoded a second time, query pairs are decoded, re-encoded (RFC 3986 unreserved
set) and sorted, only the headers listed in SignedHeaders are signed, and the payload hash is the
body's SHA-256 unless the client sent ``X-Amz-Content-SHA256``. The gateway verifies strictly
against the SignedHeaders it receives, never a fixed list, and compares in constant time.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "lambda"
MAX_SKEW = timedelta(minutes=5)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*Signature=(?P<signature>[0-9a-f]{64})\s*$"
)


class SignatureError(Exception):
    """A request's signature cannot be accepted. ``code`` is the AWS error type."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Request:
    """The parts of an HTTP request a signature covers."""

    method: str
    raw_path: str
    raw_query: str
    headers: Mapping[str, str]
    """Header values by lower-case name (repeated headers joined with ',')."""
    body: bytes


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    date: str
    region: str
    service: str


@dataclass(frozen=True)
class Signed:
    """A parsed Authorization header."""

    credential: Credential
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str


# --------------------------------------------------------------------------- canonical form


def canonical_uri(raw_path: str) -> str:
    path = raw_path or "/"
    normalised = posixpath.normpath(path)
    if path.endswith("/") and normalised != "/":
        normalised += "/"
    normalised = re.sub(r"/{2,}", "/", normalised)
    return quote(normalised, safe="/~")


def canonical_query(raw_query: str) -> str:
    pairs = []
    for part in raw_query.split("&") if raw_query else []:
        key, _, value = part.partition("=")
        decoded = unquote(value.replace("+", "%20"))
        pairs.append((quote(unquote(key), safe="-_.~"), quote(decoded, safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _header_value(value: str) -> str:
    return " ".join(value.split())


def canonical_request(req: Request, signed_headers: Iterable[str], payload_hash: str) -> str:
    names = list(signed_headers)
    headers = "".join(f"{n}:{_header_value(req.headers.get(n, ''))}\n" for n in names)
    return "\n".join(
        [
            req.method.upper(),
            canonical_uri(req.raw_path),
            canonical_query(req.raw_query),
            headers,
            ";".join(names),
            payload_hash,
        ]
    )


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


@functools.lru_cache(maxsize=1024)
def signing_key(secret: str, date: str, region: str, service: str = SERVICE) -> bytes:
    """The day's key of a secret (cached: four HMACs that every request of the day repeats)."""
    k = _hmac(("AWS4" + secret).encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def payload_hash(req: Request) -> str:
    return req.headers.get("x-amz-content-sha256") or hashlib.sha256(req.body).hexdigest()


# --------------------------------------------------------------------------- signing


def sign(
    method: str,
    url_path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    *,
    access_key_id: str,
    secret: str,
    region: str,
    now: datetime | None = None,
) -> dict[str, str]:
    """Headers to add (X-Amz-Date, Authorization) for a request to ``host`` in ``headers``."""
    now = now or datetime.now(UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    lowered = {k.lower(): v for k, v in headers.items()}
    lowered["x-amz-date"] = amz_date
    names = sorted(lowered)
    req = Request(method, url_path, query, lowered, body)
    scope = f"{date}/{region}/{SERVICE}/aws4_request"
    canonical = canonical_request(req, names, hashlib.sha256(body).hexdigest())
    signature = hmac.new(
        signing_key(secret, date, region),
        string_to_sign(amz_date, scope, canonical).encode(),
        hashlib.sha256,
    ).hexdigest()
    return {
        "X-Amz-Date": amz_date,
        "Authorization": f"{ALGORITHM} Credential={access_key_id}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}",
    }


# --------------------------------------------------------------------------- verifying


def parse(req: Request) -> Signed:
    """Reads the Authorization header; raises SignatureError when it is absent or malformed."""
    auth = req.headers.get("authorization")
    if not auth:
        raise SignatureError("MissingAuthenticationTokenException", "Missing Authentication Token")
    m = _AUTH_RE.match(auth)
    if not m:
        raise SignatureError(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' "
            f"parameters for the {ALGORITHM} algorithm",
        )
    parts = m["credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise SignatureError(
            "IncompleteSignatureException",
            "Credential should be scoped to a valid region, service and 'aws4_request'",
        )
    signed = tuple(m["signed"].split(";"))
    amz_date = req.headers.get("x-amz-date") or ""
    return Signed(Credential(*parts[:4]), signed, m["signature"], amz_date)


def verify(
    req: Request,
    signed: Signed,
    secret: str,
    region: str,
    now: datetime | None = None,
    service: str = SERVICE,
) -> None:
    """Checks scope, time and signature; raises SignatureError with AWS's messages.
    ``service``: the signing name the endpoint answers for (``sqs``, ``kinesis``)."""
    cred = signed.credential
    if cred.service != service:
        raise SignatureError(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{service}'.",
        )
    if cred.region != region:
        raise SignatureError(
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region, not '{cred.region}'.",
        )
    if "host" not in signed.signed_headers:
        raise SignatureError("InvalidSignatureException", "'Host' must be a signed header.")
    missing = [h for h in signed.signed_headers if h not in req.headers]
    if missing:
        raise SignatureError(
            "InvalidSignatureException", f"Signed header '{missing[0]}' is missing."
        )
    when = _parse_date(signed.amz_date)
    if cred.date != signed.amz_date[:8]:
        raise SignatureError(
            "InvalidSignatureException",
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{cred.date}' != '{signed.amz_date[:8]}'",
        )
    _check_time(when, now or datetime.now(UTC))
    declared = req.headers.get("x-amz-content-sha256")
    if declared not in (None, hashlib.sha256(req.body).hexdigest()):
        raise SignatureError(
            "InvalidSignatureException",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
    scope = f"{cred.date}/{cred.region}/{cred.service}/aws4_request"
    canonical = canonical_request(req, signed.signed_headers, payload_hash(req))
    expected = hmac.new(
        signing_key(secret, cred.date, cred.region, cred.service),
        string_to_sign(signed.amz_date, scope, canonical).encode(),
        hashlib.sha256,
    ).hexdigest()
    if not hmac.compare_digest(expected, signed.signature):
        raise SignatureError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service "
            "documentation for details.",
        )


_AMZ_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z")


def _parse_date(value: str) -> datetime:
    """X-Amz-Date (``20261204T010203Z``); by hand: strptime costs every request ~10 us."""
    match = _AMZ_DATE.fullmatch(value)
    try:
        if match is None:
            raise ValueError(value)
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        raise SignatureError(
            "IncompleteSignatureException",
            "Authorization header requires the 'X-Amz-Date' header.",
        ) from None


def _check_time(when: datetime, now: datetime) -> None:
    fmt = "%Y%m%dT%H%M%SZ"
    if when < now - MAX_SKEW:
        raise SignatureError(
            "InvalidSignatureException",
            f"Signature expired: {when.strftime(fmt)} is now earlier than "
            f"{(now - MAX_SKEW).strftime(fmt)} ({now.strftime(fmt)} - 5 min.)",
        )
    if when > now + MAX_SKEW:
        raise SignatureError(
            "InvalidSignatureException",
            f"Signature not yet current: {when.strftime(fmt)} is still later than "
            f"{(now + MAX_SKEW).strftime(fmt)} ({now.strftime(fmt)} + 5 min.)",
        )

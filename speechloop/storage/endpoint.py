"""Parsing the S3 endpoint setting (``SPEECHLOOP_S3_ENDPOINT``) into what the SDK takes.

The MinIO SDK wants a bare ``host[:port]`` and a separate ``secure`` flag; people write
``http://minio:9000`` (what ``mc alias set`` and the AWS CLI take) or paste a console
URL with a path. :func:`parse_endpoint` accepts ``host[:port]`` and ``http(s)://host[:port]``
(the scheme decides ``secure``), and refuses anything else with one message naming the
problem, instead of an SDK traceback on the first request.
"""

from __future__ import annotations

from urllib.parse import urlsplit

ENV_NAME = "SPEECHLOOP_S3_ENDPOINT"
_SCHEMES = {"http": False, "https": True}


def parse_endpoint(value: str) -> tuple[str, bool | None]:
    """``(host[:port], secure)`` of an endpoint; ``secure`` is None when no scheme was given.

    Raises ValueError naming the setting and what is wrong: an unknown scheme, a path,
    query or fragment, credentials in the URL, no host, or a bad port.
    """
    text = value.strip()
    scheme = None
    rest = text
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme.lower() not in _SCHEMES:
            raise ValueError(_problem(value, f"scheme {scheme!r} is not http or https"))
    parts = urlsplit(f"//{rest}")
    if parts.path not in ("", "/"):
        raise ValueError(
            _problem(value, f"it has a path {parts.path!r} (buckets are separate settings)")
        )
    if parts.query or parts.fragment or "?" in rest or "#" in rest:
        raise ValueError(_problem(value, "it has a query or fragment"))
    if parts.username is not None or "@" in parts.netloc:
        raise ValueError(
            _problem(value, "it holds credentials: use SPEECHLOOP_S3_ACCESS_KEY/_SECRET_KEY")
        )
    if not parts.hostname:
        raise ValueError(_problem(value, "it names no host"))
    try:
        port = parts.port
    except ValueError:
        raise ValueError(_problem(value, "its port is not a number from 1 to 65535")) from None
    if port == 0 or parts.netloc.endswith(":"):
        raise ValueError(_problem(value, "its port is not a number from 1 to 65535"))
    secure = None if scheme is None else _SCHEMES[scheme.lower()]
    return parts.netloc, secure


def _problem(value: str, what: str) -> str:
    return f"{ENV_NAME}={value!r} is not host:port or http(s)://host:port: {what}"

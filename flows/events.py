"""MinIO bucket notifications -> Prefect ``speechloop.batch.complete`` events.

A self-hosted Prefect server has no webhooks (a Prefect Cloud feature) but takes events
on ``POST /api/events``. This adapter is the webhook target MinIO posts to::

    mc admin config set local notify_webhook:speechloop \\
        endpoint=http://speechloop-events:8470/minio auth_token=<token>
    mc event add local/speech-data arn:minio:sqs::speechloop:webhook \\
        --event put --suffix manifest.jsonl

For every ``s3:ObjectCreated:*`` record whose key is ``<kind>/batches/<id>/manifest.jsonl``
(the manifest is uploaded last, so its creation means the batch is complete) it posts
one event::

    event     speechloop.batch.complete
    resource  prefect.resource.id = speechloop.batch.<kind>.<batch_id>
              speechloop.kind, speechloop.batch, speechloop.bucket

which the deployments' ``DeploymentEventTrigger`` in ``prefect.yaml`` counts
(``speechloop.batch.asr.*``, threshold N within a window: retrain after N new batches).
Other records (audio uploads, deletions, other prefixes) are ignored and counted.

Run it: ``python -m flows.events --port 8470`` (``SPEECHLOOP_FLOWS_EVENTS_TOKEN`` sets the
bearer token MinIO must send; ``PREFECT_API_URL`` says where events go).
"""

from __future__ import annotations

import argparse
import hmac
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from speechloop.errors import InvalidInput, StoreError

EVENT = "speechloop.batch.complete"
_MANIFEST_KEY = re.compile(r"^(asr|spk)/batches/([A-Za-z0-9._@+-]{1,128})/manifest\.jsonl$")


class EventsSettings(BaseSettings):
    """Where events go and the token MinIO must present (``SPEECHLOOP_FLOWS_EVENTS_*``)."""

    model_config = SettingsConfigDict(env_prefix="SPEECHLOOP_FLOWS_EVENTS_", extra="ignore")

    token: SecretStr | None = Field(default=None, description="bearer token MinIO sends")
    prefect_api_url: str | None = Field(default=None, description="default: PREFECT_API_URL")
    timeout_s: float = Field(default=10.0, gt=0)

    def api_url(self) -> str:
        """The Prefect API to post to (this setting, else Prefect's own setting)."""
        if self.prefect_api_url:
            return self.prefect_api_url.rstrip("/")
        from prefect.settings import PREFECT_API_URL

        url = PREFECT_API_URL.value()
        if not url:
            raise InvalidInput(
                "no Prefect API: set PREFECT_API_URL or SPEECHLOOP_FLOWS_EVENTS_PREFECT_API_URL"
            )
        return str(url).rstrip("/")


@dataclass(frozen=True)
class BatchComplete:
    """One batch whose manifest was created."""

    kind: str
    batch_id: str
    bucket: str
    key: str
    size: int | None = None
    etag: str | None = None
    event_time: str | None = None

    def to_prefect(self) -> dict[str, Any]:
        """The Prefect event (JSON form of ``prefect.events.Event``)."""
        return {
            "id": str(uuid.uuid4()),
            "occurred": self.event_time or datetime.now(UTC).isoformat(),
            "event": EVENT,
            "resource": {
                "prefect.resource.id": f"speechloop.batch.{self.kind}.{self.batch_id}",
                "prefect.resource.name": self.batch_id,
                "speechloop.kind": self.kind,
                "speechloop.batch": self.batch_id,
                "speechloop.bucket": self.bucket,
            },
            "payload": {"key": self.key, "size": self.size, "etag": self.etag},
            "related": [],
        }


def parse_notification(body: Mapping[str, Any]) -> tuple[list[BatchComplete], int]:
    """The completed batches a MinIO notification body announces, and how many records
    it held that announce none. InvalidInput if the body is not a notification."""
    records = body.get("Records")
    if not isinstance(records, list):
        raise InvalidInput("not a MinIO/S3 notification: no 'Records' list")
    found: list[BatchComplete] = []
    for index, record in enumerate(records):
        batch = _record_batch(record, index)
        if batch is not None:
            found.append(batch)
    return found, len(records) - len(found)


def _record_batch(record: Any, index: int) -> BatchComplete | None:
    try:
        name = str(record["eventName"])
        bucket = str(record["s3"]["bucket"]["name"])
        obj = record["s3"]["object"]
        key = unquote_plus(str(obj["key"]))  # MinIO URL-encodes object keys in records
    except (KeyError, TypeError) as exc:
        raise InvalidInput(f"notification record {index} lacks {exc}") from None
    match = _MANIFEST_KEY.match(key)
    if not name.startswith("s3:ObjectCreated:") or match is None:
        return None
    size = obj.get("size")
    return BatchComplete(
        kind=match.group(1), batch_id=match.group(2), bucket=bucket, key=key,
        size=int(size) if isinstance(size, int | float) else None,
        etag=obj.get("eTag"), event_time=record.get("eventTime"),
    )  # fmt: skip


def post_events(batches: Sequence[BatchComplete], settings: EventsSettings) -> None:
    """POST the events to the Prefect API (``/api/events``); StoreError if it refuses."""
    if not batches:
        return
    url = f"{settings.api_url()}/events"
    try:
        reply = httpx.post(url, json=[b.to_prefect() for b in batches], timeout=settings.timeout_s)
    except httpx.HTTPError as exc:
        raise StoreError(f"cannot post events to {url}: {exc}") from exc
    if reply.status_code >= 300:
        raise StoreError(f"Prefect refused the events at {url}: {reply.status_code} {reply.text}")


def make_app(settings: EventsSettings | None = None) -> Starlette:
    """The webhook app: ``POST /minio`` (notifications), ``GET /healthz``."""
    config = settings or EventsSettings()

    async def minio(request: Request) -> JSONResponse:
        if not _authorised(request, config.token):
            return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
        try:
            body = json.loads(await request.body())
            if not isinstance(body, dict):
                raise InvalidInput("the body is not a JSON object")
            batches, ignored = parse_notification(body)
        except (ValueError, InvalidInput) as exc:
            return JSONResponse({"error": f"bad notification: {exc}"}, status_code=400)
        try:
            post_events(batches, config)
        except (StoreError, InvalidInput) as exc:
            return JSONResponse({"error": str(exc)}, status_code=502)
        emitted = [f"{b.kind}/{b.batch_id}" for b in batches]
        return JSONResponse({"emitted": emitted, "ignored": ignored})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/minio", minio, methods=["POST"]),
                             Route("/healthz", healthz, methods=["GET"])])  # fmt: skip


def _authorised(request: Request, token: SecretStr | None) -> bool:
    if token is None:
        return True
    given = request.headers.get("authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token.get_secret_value()}".encode())


def main() -> None:
    """Serve the webhook app with uvicorn."""
    import uvicorn

    parser = argparse.ArgumentParser(description="MinIO notifications -> Prefect events")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8470)
    args = parser.parse_args()
    uvicorn.run(make_app(), host=args.host, port=args.port)


if __name__ == "__main__":
    main()

"""The receiver over HTTP: an ASGI app answering ``POST /{serviceId}`` with the acknowledgement as JSON."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tiers.acks import Ack, AckCode
from tiers.receiver import ReceiverCore


def _response(ack: Ack) -> Response:
    try:
        status = AckCode(ack.code).http_status
    except ValueError:
        status = 500
    headers = {"Retry-After": str(max(1, round(ack.retryAfter)))} if ack.retryAfter is not None else None
    return Response(ack.to_json(), status, headers=headers, media_type="application/json")


def receiver_app(core: ReceiverCore) -> Starlette:
    """The ASGI app; the body limit is enforced from Content-Length, then while the body streams in."""
    limit = core.limits.max_message_bytes

    async def upload(request: Request) -> Response:
        peer = request.client.host if request.client else "?"
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return _response(core.too_large(peer, int(declared)))
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return _response(core.too_large(peer))
        return _response(await core.handle(bytes(body), peer, request.path_params["service"]))

    return Starlette(routes=[Route("/{service}", upload, methods=["POST"])])

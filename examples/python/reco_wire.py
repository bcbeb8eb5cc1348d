"""reco's wire contract, for Python producers and callers.

Everything here follows README.md § Wire contract of the reco repository:
payloads are MessagePack maps with field names, ids are unsigned 64-bit
integers, subjects start with the deployment's prefix (default ``reco``).

Shared by ``producer.py`` and ``caller.py``; copy it into your own service.
"""

import asyncio
import dataclasses
from typing import Any, Dict, List, Optional

import msgpack
import nats
import nats.errors

EVENT_KINDS = ("play", "stop", "click", "impression", "rate", "list_add")
"""The event kinds reco accepts (``kind`` field of an event)."""

MAX_U64 = 2**64 - 1


def events_subject(prefix: str, member: int) -> str:
    """Where a member's events go (publish)."""
    return f"{prefix}.events.{member}"


def recommend_subject(prefix: str, member: int) -> str:
    """Where a member's recommendations are asked (request/reply)."""
    return f"{prefix}.recommend.{member}"


def fallback_subject(prefix: str, member: int) -> str:
    """Where to ask when the recommend subject has no responders or a try
    times out: every node of a cluster answers it (one queue group) from
    precomputed lists."""
    return f"{prefix}.fallback.recommend.{member}"


def check_id(name: str, value: int) -> int:
    """Ids are unsigned 64-bit integers; reco rejects anything else."""
    if not 0 <= value <= MAX_U64:
        raise ValueError(f"{name} must be an unsigned 64-bit integer, got {value}")
    return value


def encode_event(
    member: int,
    item: int,
    kind: str,
    value: float = 0.0,
    at_ms: Optional[int] = None,
    device: Optional[str] = None,
) -> bytes:
    """An ``Event`` as a MessagePack map with field names.

    ``value`` is seconds watched for play/stop (at most a week), stars 0-5
    for rate, 0 otherwise. Optional fields are left out when unknown.
    """
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}: use one of {', '.join(EVENT_KINDS)}")
    event: Dict[str, Any] = {
        "member": check_id("member", member),
        "item": check_id("item", item),
        "kind": kind,
        "value": float(value),
    }
    if at_ms is not None:
        event["at_ms"] = check_id("at_ms", at_ms)
    if device is not None:
        if len(device.encode()) > 256:
            raise ValueError("device must be at most 256 bytes")
        event["device"] = device
    return msgpack.packb(event, use_single_float=True)


def encode_request(
    k: Optional[int] = None,
    deadline_ms: Optional[int] = None,
    row: Optional[str] = None,
    device: Optional[str] = None,
    exclude_seen: Optional[bool] = None,
    details: Optional[bool] = None,
) -> bytes:
    """A ``RecommendRequest``: every field optional (an empty map asks for
    the node's defaults). ``row`` picks the gallery (``top``,
    ``genre:Comedy``, ``because:260``, ``continue``, ``popular``, ``new``);
    ``details`` asks for each item's title and genres."""
    request: Dict[str, Any] = {}
    if k is not None:
        request["k"] = k
    if deadline_ms is not None:
        request["deadline_ms"] = deadline_ms
    if row is not None:
        request["row"] = row
    if device is not None:
        request["device"] = device
    if exclude_seen is not None:
        request["exclude_seen"] = exclude_seen
    if details is not None:
        request["details"] = details
    return msgpack.packb(request)


@dataclasses.dataclass
class Recommendations:
    """A reply that carries a list (``source`` says where it came from,
    ``degraded``/``reason`` why a fallback answered)."""

    member: int
    items: List[Dict[str, Any]]
    source: str
    model_version: Optional[str]
    degraded: bool
    reason: Optional[str]
    served_us: int
    subject: str
    """The subject that answered (the recommend or the fallback subject)."""
    row: Optional[str] = None
    """The row the reply answers (``top``, ``genre:Comedy``, ...)."""
    titles: Optional[Dict[int, str]] = None
    """Item id -> title, when ``details`` was asked and the node has item data."""


class RecoError(Exception):
    """reco answered with an ``ErrorReply`` (``code`` is one of
    ``bad_request``, ``too_large``, ``unavailable``, ``internal``)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"reco refused the request ({code}): {message}")
        self.code = code
        self.message = message


class NobodyAnswered(Exception):
    """Neither the recommend subject nor the fallback subject answered."""


def decode_reply(payload: bytes, subject: str) -> Recommendations:
    """Decodes a reply: a list, or raises :class:`RecoError`.

    Unknown fields are ignored, as the contract asks of every decoder.
    """
    reply = msgpack.unpackb(payload, raw=False)
    if not isinstance(reply, dict):
        raise ValueError(f"reply is not a map: {reply!r}")
    if "error" in reply:
        error = reply["error"] or {}
        raise RecoError(str(error.get("code")), str(error.get("message")))
    return Recommendations(
        member=reply["member"],
        items=[{"item": i["item"], "score": i["score"]} for i in reply["items"]],
        source=reply["source"],
        model_version=reply.get("model_version"),
        degraded=bool(reply.get("degraded", False)),
        reason=reply.get("reason"),
        served_us=int(reply.get("served_us", 0)),
        subject=subject,
        row=reply.get("row"),
        titles=(
            {d["item"]: d["title"] for d in reply["details"]}
            if reply.get("details") is not None
            else None
        ),
    )


async def recommend(
    nc: "nats.aio.client.Client",
    prefix: str,
    member: int,
    k: int = 10,
    deadline_ms: int = 50,
    row: Optional[str] = None,
    device: Optional[str] = None,
    exclude_seen: Optional[bool] = None,
    details: Optional[bool] = None,
    margin_ms: int = 250,
    log=lambda message: None,
) -> Recommendations:
    """Asks for ``member``'s recommendations, following the caller's rule.

    1. Request on ``<prefix>.recommend.<member>`` and wait the deadline plus
       a margin (a node always answers by the deadline, so the margin only
       covers the network).
    2. On "no responders" (no node serves the member right now: none is
       running, or the member's partition is between owners) or when that
       try times out, ask ``<prefix>.fallback.recommend.<member>`` once.
    3. If nothing answers there either, raise :class:`NobodyAnswered`:
       the caller shows its own default row.
    """
    check_id("member", member)
    payload = encode_request(k, deadline_ms, row, device, exclude_seen, details)
    timeout = (deadline_ms + margin_ms) / 1000.0
    tried = []
    for subject in (recommend_subject(prefix, member), fallback_subject(prefix, member)):
        try:
            msg = await nc.request(subject, payload, timeout=timeout)
        except nats.errors.NoRespondersError:
            tried.append(f"{subject}: no responders")
            log(f"{subject}: no responders")
            continue
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            tried.append(f"{subject}: no reply within {timeout * 1000:.0f} ms")
            log(f"{subject}: timed out")
            continue
        return decode_reply(msg.data, subject)
    raise NobodyAnswered(
        "no reco node answered for member "
        f"{member} ({'; '.join(tried)}): is a `reco serve` node running on this "
        f"NATS server with the prefix {prefix!r}?"
    )

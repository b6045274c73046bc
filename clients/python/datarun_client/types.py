"""Typed shapes of the master's answers (``TypedDict``: plain dicts at run time, checked by
mypy). A field the master may leave out is in a ``total=False`` part. Records the client passes
through as they are (a fold with its attempts, a dataset with its statistics) are ``JSON``."""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, TypedDict

#: A JSON object as the master sends it.
JSON = Dict[str, Any]

#: ``fold``, ``array`` or ``submission``: what a webhook watches.
HookKind = Literal["fold", "array", "submission"]

#: ``hold``, ``release`` or ``remove``: what ``POST /folds/bulk/{action}`` does.
BulkAction = Literal["hold", "release", "remove"]


class Health(TypedDict):
    ok: bool
    version: str


class Blob(TypedDict):
    sha256: str
    size: int


class Held(TypedDict):
    """A fold stored held because no runner could ever run it."""

    id: int
    code: str
    reason: str


class Submitted(TypedDict):
    """``POST /folds``."""

    id: int
    fold: JSON
    held: List[Held]


class SubmittedBatch(TypedDict):
    """``POST /folds/batch``."""

    ids: List[int]
    held: List[Held]


class FoldPage(TypedDict):
    """``GET /folds``: a page; ``next`` is the next page's ``after`` (``before`` with
    ``order="newest"``), ``None`` on the last."""

    folds: List[JSON]
    seq: int
    next: Optional[int]


class ArrayFold(TypedDict):
    id: int
    index: int


class ArrayHeld(TypedDict):
    code: str
    reason: str


class SubmittedArray(TypedDict):
    """``POST /arrays``."""

    array: int
    cap: Optional[int]
    folds: List[ArrayFold]
    held: Optional[ArrayHeld]


class QueueCount(TypedDict):
    queue: str
    owner: str
    state: str
    count: int


class BulkResult(TypedDict):
    """``POST /folds/bulk/{action}``: how many folds matched and changed; those that could not
    be changed with why (``errors``, the first few); ``more`` when the constraint matched
    more than one request handles."""

    matched: int
    changed: int
    failed: int
    errors: List[JSON]
    more: bool


class _EventBase(TypedDict):
    seq: int
    at: int
    fold: Optional[int]
    attempt: Optional[int]
    kind: str
    detail: str


class Event(_EventBase, total=False):
    """An event of the master's log; ``state`` (the fold's state after it) when it is the
    fold's newest event."""

    state: str


class EventPage(TypedDict):
    events: List[Event]
    seq: int


class Webhook(TypedDict):
    """A webhook (``GET /webhooks``): ``state`` is ``armed`` (its target has not ended),
    ``pending`` (to deliver), ``delivered`` or ``failed`` (given up, ``last_error`` says why)."""

    id: int
    event_id: str
    kind: str
    target: int
    url: str
    owner: str
    created_at: int
    state: str
    ended_at: Optional[int]
    attempts: int
    next_at: Optional[int]
    last_status: Optional[int]
    last_error: Optional[str]
    delivered_at: Optional[int]


class WebhookPage(TypedDict):
    webhooks: List[Webhook]
    next: Optional[int]


class WebhookSecret(TypedDict):
    """The secret that signs the webhooks a token asks for (``token``: its id)."""

    token: int
    secret: str


class WebhookDelivery(TypedDict):
    """The JSON body a webhook receiver gets (see ``verify_webhook``)."""

    event_id: str
    kind: str
    id: int
    state: str
    outcome: Any
    ended_at: int

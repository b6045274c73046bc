"""The HTTP client for datarun's native REST API (``/api/v1``, bearer token).

``Client`` maps the API one method per endpoint and adds the original datarun client's helpers
(``post_data``, ``post_split``, ``custom_post_split``, ``post_submission_fold``,
``get_prediction_new``, ...) on top of it. Every 4xx/5xx answer raises a :class:`DatarunError`
subclass carrying the server's message.

Datasets are of two kinds: one CSV table (split by ratio, ``post_split``), or a *problem
dataset*: several files with a Python problem script (the original datarun's ``specific.py``:
``prepare_data(path)``, ``get_train_data(path)``, ``get_test_data(path)``,
``train_submission(module_path, X, y, train_is)``, ``test_submission(trained, X, indices)``),
whose split is the script's ``prepare_data`` run on the master's queue (``custom_post_split``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import time
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
    cast,
)
from urllib.parse import quote, urlencode

import numpy as np
import numpy.typing as npt
import requests

from .types import (
    JSON,
    Blob,
    BulkAction,
    BulkResult,
    Event,
    EventPage,
    FoldPage,
    Health,
    HookKind,
    QueueCount,
    Submitted,
    SubmittedArray,
    SubmittedBatch,
    WebhookDelivery,
    WebhookPage,
    WebhookSecret,
)

#: A file given by its path or as its bytes.
FileLike = Union[str, "os.PathLike[str]", bytes, bytearray]

#: Files: a list of paths (named by their base name) or {name: path or bytes}.
Files = Union[Mapping[str, FileLike], Sequence[Union[str, "os.PathLike[str]"]]]

#: Row indices: a 1-D numpy array, a list or a range.
Indices = Union[Sequence[int], "npt.NDArray[Any]", range]

_F = TypeVar("_F", bound=Callable[..., Any])

#: Every ``/api/v1`` route a method of ``Client`` calls: (HTTP method, path) → method name.
ROUTES: Dict[Tuple[str, str], str] = {}


def route(method: str, path: str) -> Callable[[_F], _F]:
    """Marks a ``Client`` method as the one for ``method path`` (a path of the master's router,
    e.g. ``/folds/{id}``), so a test can check that every route has its method."""

    def mark(f: _F) -> _F:
        ROUTES[(method, path)] = f.__name__
        return f

    return mark

__all__ = [
    "Client",
    "DatarunError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "ServerError",
    "Unreachable",
    "IntegrityError",
    "SplitFailed",
    "default_data_dir",
    "verify_webhook",
    "ROUTES",
]


class DatarunError(Exception):
    """An error answer of the master: ``status`` (HTTP), ``code`` (the API's error code, e.g.
    ``bad_request``), ``message`` (the server's explanation), ``method`` and ``path``."""

    def __init__(
        self,
        message: str,
        status: Optional[int] = None,
        code: Optional[str] = None,
        method: Optional[str] = None,
        path: Optional[str] = None,
    ) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.method = method
        self.path = path
        where = f"{method} {path}: " if method else ""
        answered = f"the master answered {status}: " if status else ""
        super().__init__(f"{where}{answered}{message}")


class BadRequest(DatarunError):
    """400: the request is wrong; the message names the field and the problem."""


class Unauthorized(DatarunError):
    """401: missing, unknown, revoked or expired token (the message says which)."""


class Forbidden(DatarunError):
    """403: the token may not do this (not an admin; or a listing filter naming another owner)."""


class NotFound(DatarunError):
    """404: no such object or endpoint (another owner's object answers so too)."""


class Conflict(DatarunError):
    """409: a name is taken, or the object is in use."""


class PayloadTooLarge(DatarunError):
    """413: the body is over the master's --max-body."""


class ServerError(DatarunError):
    """5xx: the master failed."""


class Unreachable(DatarunError):
    """The master could not be reached at all (connection refused, DNS, timeout)."""


class IntegrityError(DatarunError):
    """Downloaded bytes do not match the checksum the master announced."""


class SplitFailed(DatarunError):
    """A custom split's ``prepare_data`` failed: ``split_id``, ``reason`` (the master's, with the
    script's traceback when there is one) and ``split`` (the split record)."""

    def __init__(self, split: JSON) -> None:
        self.split = split
        self.split_id = split.get("id")
        self.reason = split.get("reason") or "no reason recorded"
        super().__init__(f"custom split {self.split_id} failed: {self.reason}")


_BY_STATUS: Dict[int, Type[DatarunError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
}

#: Submission-fold states that are final (a result exists).
ENDED = ("TESTED", "VALIDATED", "ERROR")

#: Queue-fold states a fold waits in no longer: final, or held until someone acts.
STOPPED = ("done", "failed", "removed", "held")

#: The most fold ids in one ``folds`` filter of ``GET /events``; more are followed unfiltered.
MAX_EVENT_FOLDS = 1000

#: The longest long poll the master takes (``GET /events?timeout=``), in seconds.
MAX_EVENTS_WAIT = 60


def default_data_dir() -> str:
    """The master's data directory as the Rust CLI finds it: $DATARUN_DATA_DIR, else
    $XDG_DATA_HOME/datarun, else ~/.local/share/datarun."""
    if os.environ.get("DATARUN_DATA_DIR"):
        return os.environ["DATARUN_DATA_DIR"]
    if os.environ.get("XDG_DATA_HOME"):
        return os.path.join(os.environ["XDG_DATA_HOME"], "datarun")
    return os.path.join(os.path.expanduser("~"), ".local", "share", "datarun")


def _read_trimmed(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return text or None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _read(path_or_bytes: FileLike) -> bytes:
    if isinstance(path_or_bytes, (bytes, bytearray)):
        return bytes(path_or_bytes)
    with open(path_or_bytes, "rb") as f:
        return f.read()


def _named_files(files: Any, what: str = "files") -> Dict[str, FileLike]:
    """{name: path or bytes} from a dict as is, or from a list of paths (named by their base
    name; two paths with one base name are refused)."""
    if isinstance(files, dict):
        return dict(files)
    if isinstance(files, (str, bytes, bytearray, os.PathLike)):
        raise TypeError(f"{what}: give a list of paths or {{name: path or bytes}}, not one value")
    out: Dict[str, FileLike] = {}
    for p in files:
        name = os.path.basename(os.fspath(p))
        if name in out:
            raise ValueError(f"{what}: two files named {name!r}")
        out[name] = p
    return out


def _indices(values: Indices, what: str) -> List[int]:
    """A list of non-negative ints from a numpy array, list or range."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D array of row indices, got shape {arr.shape}")
    if arr.size and arr.dtype.kind == "b":
        raise ValueError(f"{what}: give row indices, not a boolean mask")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"{what}: expected integer row indices, got dtype {arr.dtype}")
    return [int(i) for i in arr]


def _split_names(text: str) -> List[str]:
    """``"a, b"`` → ``["a", "b"]`` (the original's comma-separated workflow elements)."""
    return [w.strip() for w in text.split(",") if w.strip()]


def load_npy(data: bytes, sha256: Optional[str] = None, what: str = "predictions") -> "npt.NDArray[Any]":
    """Decodes ``.npy`` bytes with numpy (no pickles), checking them against ``sha256``."""
    if sha256 is not None:
        got = hashlib.sha256(data).hexdigest()
        if got != sha256:
            raise IntegrityError(f"{what}: sha256 {got} differs from the announced {sha256}")
    return cast("npt.NDArray[Any]", np.load(io.BytesIO(data), allow_pickle=False))


def verify_webhook(secret: str, body: bytes, signature: str) -> WebhookDelivery:
    """Checks a webhook delivery (README "Webhooks") and returns its JSON body: ``signature``
    is the ``X-Datarun-Signature`` header, ``sha256=`` and the hex HMAC-SHA256 of the raw
    ``body`` under ``secret`` (``Client.webhook_secret()``). Raises ``ValueError`` when it does
    not match. A delivery may come more than once: dedupe by its ``event_id``."""
    want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, signature):
        raise ValueError("webhook signature does not match: not from this master, or altered")
    return cast(WebhookDelivery, json.loads(body))


class Client:
    """A datarun master.

    ``url`` (the master's base address, e.g. ``http://127.0.0.1:4680``) and ``token`` default to
    $DATARUN_URL (or $DATARUN_SERVER, the Rust CLI's name) and $DATARUN_TOKEN, then to the files
    ``datarun serve`` writes into its data directory (``server``, ``admin.token``), as the CLI
    does, so a client on the master's machine needs no configuration.

    ``ca_cert`` (default $DATARUN_CA_CERT): a PEM file of the CA that signed the certificate of
    a master serving HTTPS (``datarun serve --tls-cert``); it is passed to requests as
    ``verify``, so only that CA is trusted then. Without it, requests' own CA bundle is used.
    """

    def __init__(
        self,
        url: Optional[str] = None,
        token: Optional[str] = None,
        data_dir: Optional[str] = None,
        timeout: float = 300,
        session: Optional[requests.Session] = None,
        ca_cert: Optional[str] = None,
        ca_file: Optional[str] = None,
    ) -> None:
        data_dir = data_dir or default_data_dir()
        url = (
            url
            or os.environ.get("DATARUN_URL")
            or os.environ.get("DATARUN_SERVER")
            or _read_trimmed(os.path.join(data_dir, "server"))
        )
        if not url:
            raise DatarunError(
                f"no server given and none found in {data_dir}: start one with `datarun serve`, "
                "or pass url= (or set DATARUN_URL)"
            )
        token = (
            token
            or os.environ.get("DATARUN_TOKEN")
            or _read_trimmed(os.path.join(data_dir, "admin.token"))
        )
        if not token:
            raise DatarunError(
                "no token given: pass token= (or set DATARUN_TOKEN); "
                "`datarun token create NAME` on the master makes one"
            )
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.http = session or requests.Session()
        ca_cert = ca_cert or ca_file or os.environ.get("DATARUN_CA_CERT")
        if ca_cert and not os.path.isfile(ca_cert):
            raise DatarunError(f"ca_cert {ca_cert}: no such file (a PEM CA certificate)")
        # Given per request: a session's verify would lose to $REQUESTS_CA_BUNDLE.
        self.ca_cert: Optional[str] = ca_cert or None

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # ---- transport -------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        json: Any = None,
        data: Optional[bytes] = None,
        headers: Optional[Mapping[str, str]] = None,
        stream: bool = False,
        timeout: Union[None, float, Tuple[float, float]] = None,
    ) -> requests.Response:
        headers = dict(headers or {})
        headers["Authorization"] = f"Bearer {self.token}"
        try:
            resp = self.http.request(
                method,
                f"{self.url}/api/v1{path}",
                json=json,
                data=data,
                headers=headers,
                timeout=timeout or self.timeout,
                stream=stream,
                verify=self.ca_cert if self.ca_cert is not None else True,
            )
        except requests.RequestException as e:
            hint = ""
            if isinstance(e, requests.exceptions.SSLError):
                hint = " (is its certificate signed by a private CA? pass ca_cert= or set DATARUN_CA_CERT)"
            raise Unreachable(
                f"cannot reach the datarun master at {self.url}: {e}{hint}",
                method=method,
                path=path,
            ) from e
        if resp.status_code >= 400:
            code, message = None, resp.text
            try:
                err = resp.json()["error"]
                code, message = err.get("code"), err.get("message", message)
            except (ValueError, KeyError, TypeError):
                pass
            cls: Optional[Type[DatarunError]] = _BY_STATUS.get(resp.status_code)
            if cls is None:
                cls = ServerError if resp.status_code >= 500 else DatarunError
            raise cls(message, status=resp.status_code, code=code, method=method, path=path)
        return resp

    def get(self, path: str) -> Any:
        return self._request("GET", path).json()

    def post(self, path: str, body: Any = None) -> Any:
        return self._request("POST", path, json=body if body is not None else {}).json()

    def delete(self, path: str) -> Any:
        return self._request("DELETE", path).json()

    def get_bytes(self, path: str) -> bytes:
        return self._request("GET", path).content

    def all_pages(self, path: str, key: str) -> List[JSON]:
        """Every row of a listing that pages in id order (``next`` is the ``after`` of the
        next page), however many pages."""
        sep = "&" if "?" in path else "?"
        rows: List[JSON] = []
        after = None
        while True:
            page = self.get(path + (f"{sep}after={after}" if after is not None else ""))
            rows.extend(page[key])
            after = page.get("next")
            if after is None:
                return rows

    # ---- native API: health, blobs, folds ---------------------------------------------------

    @route("GET", "/health")
    def health(self) -> Health:
        """``GET /health`` (needs no token)."""
        return cast(Health, self.get("/health"))

    @route("GET", "/openapi.json")
    def openapi(self) -> JSON:
        """``GET /openapi.json`` (needs no token): the OpenAPI 3.1 document of ``/api/v1``."""
        return cast(JSON, self.get("/openapi.json"))

    @route("POST", "/blobs")
    def put_blob(self, data: FileLike) -> str:
        """``POST /blobs``: stores bytes (or a file's content, given its path); returns the sha256."""
        return self.put_blob_info(data)["sha256"]

    def put_blob_info(self, data: FileLike) -> Blob:
        """``POST /blobs`` → ``{sha256, size}``."""
        body = _read(data)
        v = self._request(
            "POST", "/blobs", data=body, headers={"Content-Type": "application/octet-stream"}
        ).json()
        return cast(Blob, v)

    @route("POST", "/folds")
    def submit_fold(self, spec: JSON, webhook: Optional[str] = None) -> Submitted:
        """``POST /folds``: one fold spec (see the README) → ``{id, fold, held}``. ``webhook``:
        a URL called when the fold ends (README "Webhooks")."""
        if webhook is not None:
            spec = {**spec, "webhook": webhook}
        return cast(Submitted, self.post("/folds", spec))

    @route("POST", "/folds/batch")
    def submit_folds(self, specs: Iterable[JSON]) -> SubmittedBatch:
        """``POST /folds/batch``: all or nothing → ``{ids, held}`` (a spec may carry its own
        ``webhook``)."""
        return cast(SubmittedBatch, self.post("/folds/batch", {"folds": list(specs)}))

    @route("GET", "/folds")
    def list_folds(
        self,
        state: Union[None, str, Sequence[str]] = None,
        queue: Optional[str] = None,
        owner: Optional[str] = None,
        array: Optional[int] = None,
        since: Optional[int] = None,
        after: Optional[int] = None,
        order: Optional[str] = None,
        before: Optional[int] = None,
        limit: Optional[int] = None,
    ) -> FoldPage:
        """``GET /folds``: one page of folds, filtered by ``state`` (one or several), ``queue``,
        ``owner`` (admins), ``array``; in id order after ``after``, or changed after the seq
        ``since``, or ``order="newest"`` before ``before``. Page on with the answer's
        ``next`` (see ``all_folds``)."""
        if state is not None and not isinstance(state, str):
            state = ",".join(state)
        params = {
            "state": state,
            "queue": queue,
            "owner": owner,
            "array": array,
            "since": since,
            "after": after,
            "order": order,
            "before": before,
            "limit": limit,
        }
        query = urlencode({k: v for k, v in params.items() if v is not None}, safe=",")
        return cast(FoldPage, self.get("/folds" + (f"?{query}" if query else "")))

    def all_folds(self, **filters: Any) -> Iterator[JSON]:
        """Every fold matching ``filters`` (those of ``list_folds``), page after page in id
        order."""
        after = filters.pop("after", None)
        while True:
            page = self.list_folds(after=after, **filters)
            yield from page["folds"]
            if page["next"] is None:
                return
            after = page["next"]

    @route("GET", "/folds/{id}")
    def fold(self, fold_id: int) -> JSON:
        """``GET /folds/{id}``: the fold, its attempts, events, progress, why_pending."""
        return cast(JSON, self.get(f"/folds/{int(fold_id)}"))

    @route("GET", "/folds/{id}/log")
    def fold_log(self, fold_id: int, offset: int = 0) -> str:
        """``GET /folds/{id}/log``: the fold's log (from byte ``offset``)."""
        query = f"?offset={int(offset)}" if offset else ""
        return self.get_bytes(f"/folds/{int(fold_id)}/log{query}").decode("utf-8", "replace")

    @route("GET", "/folds/{id}/analyze")
    def analyze(self, fold_id: int) -> JSON:
        """``GET /folds/{id}/analyze``: why the fold waits (each matching step and what it
        rejected), or what it is when it does not wait."""
        return cast(JSON, self.get(f"/folds/{int(fold_id)}/analyze"))

    @route("GET", "/folds/{id}/outputs/{*name}")
    def fold_output(self, fold_id: int, name: str) -> bytes:
        """``GET /folds/{id}/outputs/{name}``: one output file's bytes."""
        return self.get_bytes(f"/folds/{int(fold_id)}/outputs/{name}")

    @route("POST", "/folds/{id}/hold")
    def hold_fold(self, fold_id: int, reason: Optional[str] = None) -> JSON:
        """``POST /folds/{id}/hold``: holds the fold (a running one is stopped) → the fold."""
        body = {} if reason is None else {"reason": reason}
        return cast(JSON, self.post(f"/folds/{int(fold_id)}/hold", body)["fold"])

    @route("POST", "/folds/{id}/release")
    def release_fold(
        self,
        fold_id: int,
        memory: Optional[str] = None,
        cpus: Optional[float] = None,
        soft_time_limit: Union[None, str, float] = None,
        hard_time_limit: Union[None, str, float] = None,
    ) -> JSON:
        """``POST /folds/{id}/release``: puts a held fold back in line, optionally with new
        requests (``memory="2G"``, ``hard_time_limit="1h"``) → the fold."""
        changes = {
            "memory": memory,
            "cpus": cpus,
            "soft_time_limit": soft_time_limit,
            "hard_time_limit": hard_time_limit,
        }
        body = {k: v for k, v in changes.items() if v is not None}
        return cast(JSON, self.post(f"/folds/{int(fold_id)}/release", body)["fold"])

    @route("POST", "/folds/{id}/remove")
    def remove_fold(self, fold_id: int) -> JSON:
        """``POST /folds/{id}/remove`` → ``{fold}``."""
        return cast(JSON, self.post(f"/folds/{int(fold_id)}/remove"))

    @route("GET", "/folds/{id}/provenance")
    def provenance(self, fold_id: int, attempt: Optional[int] = None) -> JSON:
        """``GET /folds/{id}/provenance``: what produced the fold's result (image id, inputs'
        sha256, argv, environment with secrets redacted, runner, versions, limits)."""
        query = f"?attempt={int(attempt)}" if attempt is not None else ""
        return cast(JSON, self.get(f"/folds/{int(fold_id)}/provenance{query}"))

    @route("POST", "/folds/{id}/rerun")
    def rerun(
        self,
        fold_id: int,
        attempt: Optional[int] = None,
        env: Optional[Dict[str, str]] = None,
    ) -> JSON:
        """``POST /folds/{id}/rerun``: a new fold from the fold's provenance record (image
        pinned by id, the same inputs); ``env`` gives the redacted secrets again."""
        body: JSON = {}
        if attempt is not None:
            body["attempt"] = int(attempt)
        if env:
            body["env"] = env
        return cast(JSON, self.post(f"/folds/{int(fold_id)}/rerun", body))

    @route("POST", "/folds/bulk/{action}")
    def bulk(
        self,
        action: BulkAction,
        ids: Optional[Iterable[int]] = None,
        owner: Optional[str] = None,
        queue: Optional[str] = None,
        array: Optional[int] = None,
        state: Union[None, str, Sequence[str]] = None,
        reason: Optional[str] = None,
        changes: Optional[JSON] = None,
    ) -> BulkResult:
        """``POST /folds/bulk/{action}``: holds, releases or removes the folds given by
        ``ids`` and/or a constraint (``owner``, ``queue``, ``array``, ``state``), as
        ``condor_rm -constraint`` does; ``reason`` (hold), ``changes`` (release)."""
        if state is not None and not isinstance(state, str):
            state = ",".join(state)
        body: JSON = {"ids": [int(i) for i in ids or []]}
        optional = {
            "owner": owner,
            "queue": queue,
            "array": array,
            "state": state,
            "reason": reason,
            "changes": changes,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return cast(BulkResult, self.post(f"/folds/bulk/{action}", body))

    # ---- native API: arrays, queue, runners ---------------------------------------------------

    @route("POST", "/arrays")
    def create_array(
        self,
        spec: JSON,
        array: str,
        stop_on_failure: bool = False,
        webhook: Optional[str] = None,
    ) -> SubmittedArray:
        """``POST /arrays``: one fold of ``spec`` per index of ``array`` (``"0-4"``,
        ``"0-99:2%8"``: at most 8 at once), each with ``$DATARUN_ARRAY_INDEX``;
        ``stop_on_failure``: a fold failing with its own error removes its waiting siblings;
        ``webhook``: a URL called once every fold of the array has ended."""
        body: JSON = {"spec": spec, "array": array, "stop_on_failure": stop_on_failure}
        if webhook is not None:
            body["webhook"] = webhook
        return cast(SubmittedArray, self.post("/arrays", body))

    @route("GET", "/arrays/{id}")
    def array(self, array_id: int) -> JSON:
        """``GET /arrays/{id}``: the array, with its folds' counts by state."""
        return cast(JSON, self.get(f"/arrays/{int(array_id)}")["array"])

    @route("GET", "/arrays/{id}/{index}")
    def array_fold(self, array_id: int, index: int) -> JSON:
        """``GET /arrays/{id}/{index}``: the fold ``ARRAY.INDEX``."""
        return cast(JSON, self.get(f"/arrays/{int(array_id)}/{int(index)}")["fold"])

    @route("POST", "/sweeps")
    def create_sweep(
        self,
        spec: JSON,
        sweep: JSON,
        stop_on_failure: bool = False,
        webhook: Optional[str] = None,
    ) -> JSON:
        """``POST /sweeps``: one fold of ``spec`` per point of ``sweep`` (the params.toml
        document as JSON: ``grid``, ``random``, ``stop``, ``cap``), each with its values in
        ``$DATARUN_PARAM_<NAME>`` and ``params.json``. Answers ``{sweep, cap, folds, held}``."""
        body: JSON = {"spec": spec, "sweep": sweep, "stop_on_failure": stop_on_failure}
        if webhook is not None:
            body["webhook"] = webhook
        return cast(JSON, self.post("/sweeps", body))

    @route("GET", "/sweeps/{id}")
    def sweep(
        self, sweep_id: int, metric: Optional[str] = None, order: Optional[str] = None
    ) -> JSON:
        """``GET /sweeps/{id}``: the sweep and its points (params, state, metrics), ranked by
        ``metric`` (``order``: ``"min"``, the default, or ``"max"``) when given."""
        params = {"metric": metric, "order": order}
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return cast(JSON, self.get(f"/sweeps/{int(sweep_id)}" + (f"?{query}" if query else "")))

    @route("POST", "/sweeps/{id}/keep")
    def keep_sweep(self, sweep_id: int, best: int, metric: str, order: str = "min") -> JSON:
        """``POST /sweeps/{id}/keep``: drops the outputs of every ended point but the best
        ``best`` by ``metric``."""
        body = {"best": best, "metric": metric, "order": order}
        return cast(JSON, self.post(f"/sweeps/{int(sweep_id)}/keep", body))

    @route("GET", "/queue")
    def queue(self) -> List[QueueCount]:
        """``GET /queue``: fold counts by queue, owner and state."""
        return cast(List[QueueCount], self.get("/queue")["counts"])

    @route("GET", "/owners")
    def owners(self) -> JSON:
        """``GET /owners``: each owner's share of the pool (fair share, running, waiting)."""
        return cast(JSON, self.get("/owners"))

    @route("GET", "/runners")
    def runners(self) -> JSON:
        """``GET /runners``: each runner's slots, resources and connection (admins also see
        which attempts run where) and the inventory's error, if any."""
        return cast(JSON, self.get("/runners"))

    @route("POST", "/runners/reload")
    def reload_runners(self) -> JSON:
        """``POST /runners/reload`` (admin): reads the inventory again."""
        return cast(JSON, self.post("/runners/reload"))

    @route("POST", "/runners/{name}/drain")
    def drain_runner(self, name: str) -> JSON:
        """``POST /runners/{name}/drain`` (admin): no new folds go to the runner."""
        return cast(JSON, self.post(f"/runners/{quote(name, safe='')}/drain"))

    @route("POST", "/runners/{name}/resume")
    def resume_runner(self, name: str) -> JSON:
        """``POST /runners/{name}/resume`` (admin): the runner takes folds again."""
        return cast(JSON, self.post(f"/runners/{quote(name, safe='')}/resume"))

    @route("GET", "/maintenance")
    def maintenance(self) -> JSON:
        """``GET /maintenance`` (admin): scheduled jobs and their recent runs."""
        return cast(JSON, self.get("/maintenance"))

    # ---- native API: webhooks -------------------------------------------------------------

    @route("GET", "/webhooks")
    def webhooks(
        self,
        kind: Optional[HookKind] = None,
        target: Optional[int] = None,
        after: Optional[int] = None,
        limit: Optional[int] = None,
    ) -> WebhookPage:
        """``GET /webhooks``: this token's owner's webhooks (an admin's: all) with their
        delivery state, oldest first; ``kind`` and ``target`` together: one target's."""
        params = {"kind": kind, "id": target, "after": after, "limit": limit}
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return cast(WebhookPage, self.get("/webhooks" + (f"?{query}" if query else "")))

    @route("GET", "/webhook-secret")
    def webhook_secret(self) -> str:
        """``GET /webhook-secret``: the secret that signs the webhooks this token asks for
        (check a delivery with ``verify_webhook``)."""
        return cast(WebhookSecret, self.get("/webhook-secret"))["secret"]

    # ---- native API: events -----------------------------------------------------------------

    @staticmethod
    def _events_query(
        since: Optional[int] = None,
        folds: Optional[Iterable[int]] = None,
        timeout: Optional[float] = None,
        limit: Optional[int] = None,
    ) -> str:
        params: Dict[str, Union[int, str]] = {}
        if since is not None:
            params["since"] = int(since)
        if folds is not None:
            ids = sorted({int(f) for f in folds})
            if not ids:
                raise ValueError("folds: give fold ids, or None for every fold you may see")
            params["folds"] = ",".join(map(str, ids))
        if timeout is not None:
            params["timeout"] = f"{max(0.0, float(timeout)):.3f}"
        if limit is not None:
            params["limit"] = int(limit)
        return "/events" + (f"?{urlencode(params, safe=',')}" if params else "")

    @route("GET", "/events")
    def events(
        self,
        since: Optional[int] = None,
        folds: Optional[Iterable[int]] = None,
        timeout: Optional[float] = 30,
        limit: Optional[int] = None,
    ) -> EventPage:
        """``GET /events``: one long poll of the master's event log. Returns ``{"events":
        [...], "seq": N}`` as soon as there are events after ``since`` (``None``: from now, no
        backlog), else when one is committed or after ``timeout`` seconds (at most 60) with
        none; pass ``seq`` as the next ``since`` and no event is missed or repeated. Each event
        has ``seq``, ``at`` (ms since the epoch), ``fold``, ``attempt``, ``kind``, ``detail``,
        and ``state`` (the fold's state after it) when it is the fold's newest event.
        ``folds``: only these fold ids (at most 1000); another owner's show nothing."""
        wait = 30 if timeout is None else float(timeout)
        path = self._events_query(since, folds, wait, limit)
        # The HTTP read timeout outlasts the poll's.
        return cast(EventPage, self._request("GET", path, timeout=max(self.timeout, wait + 30)).json())

    def stream_events(
        self,
        since: Optional[int] = None,
        folds: Optional[Iterable[int]] = None,
        timeout: Optional[float] = None,
        sse: bool = True,
    ) -> Iterator[Event]:
        """Yields the master's events as they are committed, oldest first, each once:
        server-sent events (``Accept: text/event-stream``), reconnecting with
        ``Last-Event-ID`` when a stream ends (the master ends each after 10 minutes) or breaks;
        with ``sse=False``, repeated long polls (``events``). ``since``/``folds`` as in
        ``events``; ends after ``timeout`` seconds (``None``: never; stop it with ``break``)."""
        deadline = None if timeout is None else time.monotonic() + float(timeout)

        def left() -> Optional[float]:
            return None if deadline is None else deadline - time.monotonic()

        def expired() -> bool:
            rest = left()
            return rest is not None and rest <= 0

        if folds is not None:
            folds = list(folds)
        if since is None:
            since = self.events(folds=folds, timeout=0)["seq"]
        failures = 0
        while not expired():
            rest = left()
            if not sse:
                wait = MAX_EVENTS_WAIT if rest is None else min(MAX_EVENTS_WAIT, rest)
                page = self.events(since, folds, timeout=wait)
                yield from page["events"]
                since = page["seq"]
                continue
            # Keep-alives come every 15 s: a read that waits longer is a dead connection.
            read = 20.0 if rest is None else max(0.05, min(20.0, rest))
            try:
                resp = self._request(
                    "GET",
                    self._events_query(folds=folds),
                    headers={"Accept": "text/event-stream", "Last-Event-ID": str(since)},
                    stream=True,
                    timeout=(10, read),
                )
                with resp:
                    for event in _sse_events(resp):
                        failures = 0
                        yield event
                        since = event["seq"]
                        if expired():
                            return
            except (requests.RequestException, Unreachable, ServerError) as e:
                if isinstance(e, ServerError) and e.status != 503:
                    raise
                if expired():
                    return
                failures += 1
                if failures > 1:
                    # The master is away: try again after a pause, not in a tight loop.
                    time.sleep(min(5.0, 0.5 * failures))

    def _wait_stopped(self, fold_ids: Iterable[int], timeout: Optional[float]) -> Dict[int, str]:
        """{id: state} once every queue fold stopped (done, failed, removed, held), following
        their events (long polls, no sleeping). Raises TimeoutError after ``timeout`` seconds
        (``None``: waits as long as it takes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        since = self.events(timeout=0)["seq"]
        states: Dict[int, str] = {int(i): self.fold(i)["fold"]["state"] for i in fold_ids}
        while True:
            going = [i for i, st in states.items() if st not in STOPPED]
            if not going:
                return states
            wait: float = MAX_EVENTS_WAIT
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    raise TimeoutError(f"folds did not end in {timeout} s: {states}")
            watch = going if len(going) <= MAX_EVENT_FOLDS else None
            page = self.events(since, watch, timeout=wait)
            for e in page["events"]:
                fold, state = e.get("fold"), e.get("state")
                if state and fold is not None and fold in states:
                    states[fold] = state
            since = page["seq"]

    def _until(
        self,
        read: Callable[[], Any],
        watch: Callable[[Any], Optional[List[int]]],
        timeout: float,
        describe: Callable[[Any], str],
    ) -> Any:
        """``read()`` until ``watch(value)`` says nothing more to wait for (None); between
        reads, a long poll waits for an event of the queue folds ``watch`` names (no sleeping:
        each read follows a change). Raises TimeoutError(``describe(value)``) after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        since = self.events(timeout=0)["seq"]
        while True:
            value = read()
            folds = watch(value)
            if folds is None:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(describe(value))
            watched = folds if 0 < len(folds) <= MAX_EVENT_FOLDS else None
            since = self.events(since, watched, timeout=min(left, MAX_EVENTS_WAIT))["seq"]

    # ---- native API: datasets, splits, scores -----------------------------------------------

    @route("POST", "/datasets")
    def create_dataset(
        self,
        name: str,
        target_column: Optional[str] = None,
        table: Optional[FileLike] = None,
        workflow_elements: Union[str, Sequence[str]] = (),
        score_types: Sequence[str] = (),
        files: Optional[Files] = None,
        problem: Optional[str] = None,
    ) -> JSON:
        """``POST /datasets``. A CSV dataset: ``table`` is a CSV file's path or its bytes, and
        ``target_column`` names its target. Or a problem dataset: ``files`` (see
        ``create_problem_dataset``) instead of ``table``. Returns the dataset."""
        if files is not None:
            if table is not None:
                raise ValueError("give either table (a CSV dataset) or files (a problem dataset)")
            return self.create_problem_dataset(
                name, files, workflow_elements, score_types, problem, target_column
            )
        if table is None:
            raise ValueError("table: a CSV file's path or bytes (or files= for a problem dataset)")
        if problem is not None:
            raise ValueError("problem names a script among files; a CSV dataset has none")
        if isinstance(workflow_elements, str):
            workflow_elements = _split_names(workflow_elements)
        body = {
            "name": name,
            "target_column": target_column,
            "workflow_elements": list(workflow_elements),
            "score_types": list(score_types),
            "csv": _b64(_read(table)),
        }
        return cast(JSON, self.post("/datasets", body)["dataset"])

    def create_problem_dataset(
        self,
        name: str,
        files: Files,
        workflow_elements: Union[str, Sequence[str]] = (),
        score_types: Sequence[str] = (),
        problem: Optional[str] = None,
        target_column: Optional[str] = None,
    ) -> JSON:
        """``POST /datasets`` with several files and a problem script (the original's
        ``specific.py`` contract). ``files``: a list of paths (named by their base name) or
        {name: path or bytes}; ``problem``: which of them is the script (default: the only
        ``.py``); ``workflow_elements``: the submission's files are ``<element>.py``;
        ``target_column`` is only shown (the script says what the target is). Returns the
        dataset, with ``problem`` and ``files`` ({name: sha256})."""
        if isinstance(workflow_elements, str):
            workflow_elements = _split_names(workflow_elements)
        named = _named_files(files)
        body: JSON = {
            "name": name,
            "files": {n: _b64(_read(content)) for n, content in named.items()},
            "workflow_elements": list(workflow_elements),
            "score_types": list(score_types),
        }
        if problem is not None:
            body["problem"] = problem
        if target_column is not None:
            body["target_column"] = target_column
        return cast(JSON, self.post("/datasets", body)["dataset"])

    @route("GET", "/datasets")
    def datasets(self) -> List[JSON]:
        return self.all_pages("/datasets", "datasets")

    @route("GET", "/datasets/{id}")
    def dataset(self, dataset_id: int) -> JSON:
        """The dataset with its column statistics and its splits."""
        return cast(JSON, self.get(f"/datasets/{int(dataset_id)}"))

    @route("GET", "/datasets/{id}/table")
    def dataset_table(self, dataset_id: int) -> bytes:
        """A CSV dataset's table (a problem dataset answers NotFound: see ``dataset_file``)."""
        return self.get_bytes(f"/datasets/{int(dataset_id)}/table")

    @route("GET", "/datasets/{id}/files/{*name}")
    def dataset_file(self, dataset_id: int, name: str, split_id: Optional[int] = None) -> bytes:
        """``GET /datasets/{id}/files/{name}``: the bytes of one file of a problem dataset, or
        with ``split_id`` of one of its custom split's files (e.g. the ``train.jsonl`` the
        script's ``prepare_data`` wrote)."""
        path = f"/datasets/{int(dataset_id)}/files/{quote(name, safe='')}"
        if split_id is not None:
            path += f"?split={int(split_id)}"
        return self.get_bytes(path)

    @route("DELETE", "/datasets/{id}")
    def delete_dataset(self, dataset_id: int) -> JSON:
        return cast(JSON, self.delete(f"/datasets/{int(dataset_id)}"))

    @route("POST", "/datasets/{id}/splits")
    def create_split(
        self,
        dataset_id: int,
        held_out_test: float = 0.2,
        random_state: int = 42,
        stratify: bool = False,
        custom: bool = False,
        priority: Optional[str] = None,
    ) -> JSON:
        """``POST /datasets/{id}/splits``. A CSV dataset's split by ratio → ``{split, train,
        test}`` (row indices). ``custom=True``: a problem dataset's split, its script's
        ``prepare_data`` run as a queue fold (``priority`` as a fold's); the master answers at
        once with ``{split}``, ``state`` ``running`` (see ``wait_split``); the ratio arguments
        are not sent."""
        body: JSON
        if custom:
            body = {"custom": True}
            if priority is not None:
                body["priority"] = priority
            return cast(JSON, self.post(f"/datasets/{int(dataset_id)}/splits", body))
        if priority is not None:
            raise ValueError("priority: only a custom split runs as a fold")
        body = {
            "held_out_test": float(held_out_test),
            "random_state": int(random_state),
            "stratify": bool(stratify),
        }
        return cast(JSON, self.post(f"/datasets/{int(dataset_id)}/splits", body))

    @route("GET", "/datasets/{id}/splits")
    def splits(self, dataset_id: int) -> List[JSON]:
        """``GET /datasets/{id}/splits``: the dataset's splits."""
        return cast(List[JSON], self.get(f"/datasets/{int(dataset_id)}/splits")["splits"])

    @route("GET", "/splits/{id}")
    def split(self, split_id: int) -> JSON:
        """``GET /splits/{id}``: ``{split, train, test}``, or ``{split, fold}`` while a custom
        split runs (``fold``: its queue fold, with why it is pending)."""
        return cast(JSON, self.get(f"/splits/{int(split_id)}"))

    def wait_split(self, split_id: int, timeout: float = 600, poll: Any = None) -> JSON:
        """Waits until a custom split is no longer ``running`` and returns its record
        (``state`` ``done``, with ``files``, ``train_rows``, ``test_rows``, or ``failed`` with
        its ``reason``), reading it again only when its fold changes (the master's events; no
        polling: ``poll`` is ignored). Raises TimeoutError, saying where its fold is, after
        ``timeout``."""

        def running(v: JSON) -> Optional[List[int]]:
            if v["split"].get("state", "done") != "running":
                return None
            fold = (v.get("fold") or {}).get("id")
            return [fold] if fold is not None else []

        def describe(v: JSON) -> str:
            fold = v.get("fold") or {}
            where = f"its fold {fold.get('id')} is {fold.get('state')}"
            if fold.get("reason"):
                where += f" ({fold['reason']})"
            return f"split {split_id} still running after {timeout} s: {where}"

        return cast(JSON, self._until(lambda: self.split(split_id), running, timeout, describe)["split"])

    @route("POST", "/scores")
    def scores(
        self,
        score_types: Sequence[str],
        y_true: Any,
        y_pred: Any = None,
        y_proba: Any = None,
        classes: Optional[Sequence[Any]] = None,
    ) -> JSON:
        """``POST /scores``: scores computed by the master, as scikit-learn."""
        body: JSON = {"score_types": list(score_types), "y_true": np.asarray(y_true).tolist()}
        if y_pred is not None:
            body["y_pred"] = np.asarray(y_pred).tolist()
        if y_proba is not None:
            body["y_proba"] = np.asarray(y_proba, dtype=float).tolist()
        if classes is not None:
            body["classes"] = list(classes)
        return cast(JSON, self.post("/scores", body))

    # ---- native API: submissions, results ---------------------------------------------------

    @route("POST", "/submissions")
    def create_submission(
        self,
        dataset_id: int,
        name: str,
        files: Files,
        split_id: Optional[int] = None,
        folds: Optional[List[JSON]] = None,
        cv: Optional[JSON] = None,
        priority: Optional[str] = None,
        queue: Optional[str] = None,
        resources: Optional[JSON] = None,
        soft_time_limit: Union[None, str, float] = None,
        hard_time_limit: Union[None, str, float] = None,
        max_retries: Optional[int] = None,
        webhook: Optional[str] = None,
    ) -> JSON:
        """``POST /submissions``. ``files``: {name in the submission: path or bytes}, or a list of
        paths (named by their base name). Exactly one of ``folds`` ([{"train_is", "test_is",
        "client_id"?}]) and ``cv`` ({"k", "seed", "stratify"}). ``webhook``: a URL called once
        every fold of the submission has ended. Returns ``{submission, held}``."""
        named = _named_files(files)
        body: JSON = {
            "dataset_id": int(dataset_id),
            "name": name,
            "files": {n: _b64(_read(content)) for n, content in named.items()},
        }
        optional = {
            "split_id": split_id,
            "folds": folds,
            "cv": cv,
            "priority": priority,
            "queue": queue,
            "resources": resources,
            "soft_time_limit": soft_time_limit,
            "hard_time_limit": hard_time_limit,
            "max_retries": max_retries,
            "webhook": webhook,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return cast(JSON, self._request("POST", "/submissions", json=body).json())

    @route("GET", "/submissions")
    def submissions(self, dataset_id: Optional[int] = None) -> List[JSON]:
        """``GET /submissions[?dataset_id=N]``: every submission, light: ``id``,
        ``dataset_id``, ``split_id``, ``name``, ``owner``, ``created_at``, ``states`` (count
        per fold state) and ``folds`` (``id``, ``fold_index``, ``client_id``, ``state``)."""
        path = "/submissions"
        if dataset_id is not None:
            path += f"?dataset_id={int(dataset_id)}"
        return self.all_pages(path, "submissions")

    @route("GET", "/submissions/{id}")
    def submission(self, submission_id: int) -> JSON:
        """The submission with its folds (``GET /submissions/{id}``)."""
        return cast(JSON, self.get(f"/submissions/{int(submission_id)}")["submission"])

    @route("POST", "/submissions/{id}/resubmit")
    def resubmit(
        self,
        submission_id: int,
        force: Optional[str] = None,
        files: Optional[Files] = None,
        folds: Optional[Iterable[int]] = None,
    ) -> JSON:
        """``POST /submissions/{id}/resubmit``: reruns the folds that ended in ERROR (``force``
        ``retrain``: all of them; ``files``: with new files), or only ``folds``."""
        body: JSON = {}
        if force is not None:
            body["force"] = force
        if files is not None:
            body["files"] = {n: _b64(_read(c)) for n, c in _named_files(files).items()}
        if folds is not None:
            body["folds"] = [int(f) for f in folds]
        return cast(JSON, self.post(f"/submissions/{int(submission_id)}/resubmit", body))

    @route("POST", "/submissions/{id}/folds")
    def add_submission_folds(self, submission_id: int, folds: List[JSON]) -> JSON:
        """``POST /submissions/{id}/folds``: more CV folds (``{"train_is", "test_is",
        "client_id"?}``) for a submission → ``{added, submission}``."""
        return cast(JSON, self.post(f"/submissions/{int(submission_id)}/folds", {"folds": folds}))

    @route("GET", "/submission-folds/{id}")
    def submission_fold(self, submission_fold_id: int) -> JSON:
        """``GET /submission-folds/{id}``: the fold, its queue fold, runs, log and traceback."""
        return cast(JSON, self.get(f"/submission-folds/{int(submission_fold_id)}"))

    @route("POST", "/results/new")
    def new_results(self, dataset_id: Optional[int] = None, limit: Optional[int] = None) -> List[JSON]:
        """``POST /results/new``: ended folds not handed out yet, each handed out once."""
        body: JSON = {}
        if dataset_id is not None:
            body["dataset_id"] = int(dataset_id)
        if limit is not None:
            body["limit"] = int(limit)
        return cast(List[JSON], self.post("/results/new", body)["results"])

    @route("POST", "/results/list")
    def list_results(self, ids: Iterable[int]) -> Tuple[List[JSON], List[int]]:
        """``POST /results/list`` → ``(results, missing ids)``; delivery is unchanged."""
        v = self.post("/results/list", {"ids": [int(i) for i in ids]})
        return v["results"], v["missing"]

    @route("GET", "/submission-folds/{id}/predictions/{phase}")
    def predictions(self, submission_fold_id: int, phase: str = "test") -> "npt.NDArray[Any]":
        """A fold's predictions as a numpy array: ``test`` (the test table) or ``train`` (the full
        training table), checked against the ``X-Sha256`` and ``X-Shape`` the master sends."""
        resp = self._request("GET", f"/submission-folds/{int(submission_fold_id)}/predictions/{phase}")
        what = f"submission fold {submission_fold_id} {phase} predictions"
        array = load_npy(resp.content, resp.headers.get("X-Sha256"), what)
        shape = resp.headers.get("X-Shape")
        if shape is not None:
            expected = tuple(int(d) for d in shape.split(",") if d)
            if array.shape != expected:
                raise IntegrityError(f"{what}: shape {array.shape} differs from X-Shape {shape}")
        return array

    def labels(self, result: JSON) -> Optional[List[Any]]:
        """The class labels of a classifier fold's prediction columns (its ``labels.json``
        output), or None when the fold wrote none (regressors, failed folds)."""
        try:
            data = self.fold_output(result["fold_id"], "labels.json")
        except NotFound:
            return None
        return cast(List[Any], json.loads(data))

    @route("GET", "/datasets/{id}/leaderboard")
    def leaderboard(self, dataset_id: int) -> JSON:
        return cast(JSON, self.get(f"/datasets/{int(dataset_id)}/leaderboard"))

    def wait_submission(self, submission_id: int, timeout: float = 600, poll: Any = None) -> JSON:
        """Waits until no fold of the submission is TODO and returns the submission, reading
        it again only when the queue fold of a TODO fold changes (the master's events; no
        polling: ``poll`` is ignored). Raises TimeoutError after ``timeout`` seconds."""

        def todo(sub: JSON) -> Optional[List[int]]:
            folds = [f["fold_id"] for f in sub["folds"] if f["state"] == "TODO"]
            return folds or None

        def describe(sub: JSON) -> str:
            states = {f["id"]: f["state"] for f in sub["folds"]}
            return f"submission {submission_id} still has TODO folds: {states}"

        return cast(JSON, self._until(lambda: self.submission(submission_id), todo, timeout, describe))

    def wait_folds(
        self, fold_ids: Sequence[int], timeout: Optional[float] = 600, poll: Any = None
    ) -> List[JSON]:
        """Waits until each queue fold is done, failed, removed or held, on the master's
        events (long polls that return when a fold changes; ``poll`` is ignored); returns the
        folds. Raises TimeoutError after ``timeout`` seconds."""
        self._wait_stopped(fold_ids, timeout)
        return [self.fold(i)["fold"] for i in fold_ids]

    # ---- the original datarun client's helpers ----------------------------------------------

    def post_data(
        self,
        name: str,
        target_column: Optional[str],
        workflow_elements: Union[str, Sequence[str]],
        data_file: Optional[FileLike],
        score_types: Sequence[str] = (),
        extra_files: Optional[Files] = None,
        problem: Optional[str] = None,
    ) -> JSON:
        """Uploads a dataset (the original ``post_data``); returns it, with its ``id`` (the
        original's raw_data_id). ``workflow_elements``: a list or a comma-separated string.

        ``data_file`` alone: a CSV dataset (path or bytes). With ``extra_files`` (the
        original's list of paths, "such as a specific.py"; or {name: path or bytes}): a
        problem dataset of ``data_file`` and the extra files, one of which is the problem
        script (``problem``, default the only ``.py``; unlike the original's ``/runapp/``, the
        native API keeps its name). Split it with ``custom_post_split``."""
        if isinstance(workflow_elements, str):
            workflow_elements = _split_names(workflow_elements)
        if not extra_files:
            if problem is not None:
                raise ValueError("problem: names a script among extra_files")
            return self.create_dataset(
                name, target_column, data_file, workflow_elements, score_types
            )
        files: Dict[str, FileLike] = {}
        if data_file is not None:
            if isinstance(data_file, (bytes, bytearray)):
                raise ValueError(
                    "data_file: give a path with extra_files (its base name names it), or put "
                    "it in extra_files as {name: bytes}"
                )
            files.update(_named_files([data_file], "data_file"))
        for n, content in _named_files(extra_files, "extra_files").items():
            if n in files:
                raise ValueError(f"extra_files: {n!r} is data_file's name too")
            files[n] = content
        return self.create_problem_dataset(
            name, files, workflow_elements, score_types, problem, target_column
        )

    def post_split(
        self,
        raw_data_id: int,
        held_out_test: float = 0.2,
        random_state: int = 42,
        stratify: bool = False,
    ) -> JSON:
        """Holds out ``held_out_test`` of the rows for test (the original ``post_split``);
        returns ``{split, train, test}`` with the row indices as numpy arrays."""
        v = self.create_split(raw_data_id, held_out_test, random_state, stratify)
        v["train"] = np.asarray(v["train"], dtype=np.int64)
        v["test"] = np.asarray(v["test"], dtype=np.int64)
        return v

    def custom_post_split(
        self,
        raw_data_id: int,
        wait: bool = True,
        timeout: float = 600,
        poll: Any = None,
        priority: Optional[str] = None,
    ) -> JSON:
        """Splits a problem dataset with its script's ``prepare_data`` (the original
        ``custom_post_split``), run by the master as a queue fold of the fold image. With
        ``wait`` (default) waits until it ends (on the master's events) and returns the done split (``id``, ``files``
        the script wrote, ``train_rows``, ``test_rows``), raising :class:`SplitFailed` with the
        reason (and the script's traceback) if it failed, TimeoutError after ``timeout``.
        ``wait=False`` returns the running split at once; submissions on it answer
        :class:`Conflict` (409) until it is done. Pass its ``id`` as ``split_id`` to
        ``post_submission_fold``; the folds' indices are rows of the script's training data."""
        split: JSON = self.create_split(raw_data_id, custom=True, priority=priority)["split"]
        if not wait:
            return split
        split = self.wait_split(split["id"], timeout=timeout)
        if split.get("state") == "failed":
            raise SplitFailed(split)
        return split

    def post_submission_fold(
        self,
        raw_data_id: int,
        submission_name: str,
        submission_files: Files,
        folds: Optional[Iterable[Any]] = None,
        split_id: Optional[int] = None,
        cv: Optional[JSON] = None,
        priority: Optional[str] = "L",
        **options: Any,
    ) -> JSON:
        """Submits a submission with its CV folds (the original ``post_submission_fold``, for
        all of a submission's folds at once, which is how the native API takes them).

        ``folds``: a list of ``(train_is, test_is)`` or ``(train_is, test_is, client_id)`` with
        numpy arrays (or lists) of row indices into the training table (the split's train rows,
        or the whole table without a split; for a problem dataset's custom split, rows of the
        script's ``get_train_data``: ``split["train_rows"]`` of them); ``client_id`` is the platform's own id for the
        submission-on-fold (the original's ``sub_fold_id``). Or ``cv={"k": 5, "seed": 42,
        "stratify": True}`` to let the master make the folds. ``submission_files``: paths
        (named by their base name) or {name: path or bytes}. Other keyword arguments
        (``queue``, ``resources``, ``hard_time_limit``, ...) go to ``create_submission``.
        Returns the submission, whose ``folds`` carry the submission-fold ids."""
        native: Optional[List[JSON]] = None
        if folds is not None:
            native = []
            for i, f in enumerate(folds):
                if isinstance(f, dict):
                    train_is, test_is, client_id = f["train_is"], f.get("test_is", []), f.get("client_id")
                elif len(f) == 3:
                    train_is, test_is, client_id = f
                else:
                    train_is, test_is = f
                    client_id = None
                fold: JSON = {
                    "train_is": _indices(train_is, f"folds[{i}].train_is"),
                    "test_is": _indices(test_is, f"folds[{i}].test_is"),
                }
                if client_id is not None:
                    fold["client_id"] = str(client_id)
                native.append(fold)
        answer = self.create_submission(
            raw_data_id,
            submission_name,
            submission_files,
            split_id=split_id,
            folds=native,
            cv=cv,
            priority=priority,
            **options,
        )
        return cast(JSON, answer["submission"])

    def _with_predictions(self, results: List[JSON]) -> List[JSON]:
        out = []
        for r in results:
            r = dict(r)
            preds: Dict[str, Any] = {}
            for phase, meta in (r.get("predictions") or {}).items():
                if isinstance(meta, dict) and meta.get("sha256"):
                    preds[phase] = self.predictions(r["id"], phase)
            r["y_pred"] = preds
            r["labels"] = self.labels(r) if preds else None
            out.append(r)
        return out

    def get_prediction_new(
        self, raw_data_id: Optional[int] = None, limit: Optional[int] = None
    ) -> List[JSON]:
        """New results, each handed out once (the original ``get_prediction_new``): every ended
        submission fold (TESTED, VALIDATED, ERROR) not handed out before, optionally of one
        dataset. Each result carries ``y_pred`` = {"train": array, "test": array} (numpy,
        checked against the master's sha256; shape (rows, classes) for classifiers, in
        ``labels`` order) and its ``scores``, ``reason`` and ``traceback``."""
        return self._with_predictions(self.new_results(raw_data_id, limit))

    def get_prediction_list(self, list_submission_fold_ids: Iterable[int]) -> List[JSON]:
        """Results of the given submission folds, whatever their state, with their predictions
        as in ``get_prediction_new``; handing out is unchanged. Unknown ids raise NotFound."""
        results, missing = self.list_results(list_submission_fold_ids)
        if missing:
            raise NotFound(f"no submission fold(s) {missing}", status=404, code="not_found")
        return self._with_predictions(results)

    def get_submission_fold_detail(self, submission_fold_id: int) -> JSON:
        """Everything about one submission fold: the fold with its scores and traceback, its
        submission, its queue fold, its runs and its log."""
        return self.submission_fold(submission_fold_id)

    def get_submission_fold_light_detail(self, chunk: int = 1000) -> List[JSON]:
        """Every submission fold, only its main facts: ``id``, ``submission_id``, ``state`` and
        ``new`` (ended with a result not handed out yet), like the original's light listing.

        The master has no list endpoint for submission folds, so this pages through
        ``POST /results/list`` by id (ids are dense: submissions are never deleted) until a
        page finds none."""
        out: List[JSON] = []
        start = 1
        while True:
            results, _ = self.list_results(range(start, start + chunk))
            if not results:
                return out
            out.extend(
                {
                    "id": r["id"],
                    "submission_id": r["submission_id"],
                    "state": r["state"],
                    "new": r["state"] in ENDED and not r["delivered"],
                }
                for r in results
            )
            start += chunk

    # The original's name for it.
    get_submission_fold_light = get_submission_fold_light_detail


def _sse_events(resp: requests.Response) -> Iterator[Event]:
    """The events of a server-sent-events answer (``id:`` and ``data:`` lines, a blank line
    ending each; comments such as ``: keep-alive`` skipped), as dicts."""
    data: List[str] = []
    for raw in resp.iter_lines():
        line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if not line:
            if data:
                yield cast(Event, json.loads("\n".join(data)))
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))

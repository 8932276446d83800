"""The wire format of todod, shared by the daemon and the ``todo`` CLI.

Newline-delimited JSON over a Unix stream socket, UTF-8.  A request is one JSON
object with an ``"op"`` and an optional client-chosen ``"id"`` that the response
echoes; a response has ``"ok": true`` and a ``"result"``, or ``"ok": false`` and
an ``"error": {"code": ..., "message": ...}``.  docs/PROTOCOL.md has a literal
line for every op and every error code.

This module imports only the standard library: every ``todo`` start pays for
what it imports (attrs costs about 40 ms, trio about 130 ms on a small machine).
Not even :mod:`typing` (with what it imports, about 3 ms, a tenth of a fast
``todo`` run): its names are for the type checker only, and the two named
tuples are made with :func:`collections.namedtuple` at run time.
"""

from __future__ import annotations

import collections
import json

# typing.TYPE_CHECKING without importing typing; mypy reads it the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final, NamedTuple

PROTOCOL_VERSION: Final = 1

#: The longest request line, its newline not counted.  One MiB holds any sane
#: request (a title is at most 1,000 characters) while bounding what one
#: connection can make the daemon buffer.
MAX_LINE: Final = 1 << 20

#: The longest response line the daemon sends; a longer one is replaced by
#: a ``too_large`` error.  An ``entries`` answer never comes near it: it is
#: one page, at most MAX_PAGE_BYTES of entries.
MAX_RESPONSE: Final = 64 << 20

#: The most entries one ``entries`` page holds (its ``limit`` is 1 to this),
#: and the most bytes of entries' JSON it holds, whichever comes first.
#: 10,000 entries of short titles are about 0.7 MB and 15 ms of the daemon's
#: time, spent in chunks; a MiB of text keeps eight pages within one
#: connection's default byte budget (docs/PROTOCOL.md, "Byte budgets").
MAX_PAGE_ENTRIES: Final = 10_000
MAX_PAGE_BYTES: Final = 1 << 20
#: An ``entries`` page when the request names no ``limit`` but a cursor.
DEFAULT_PAGE_ENTRIES: Final = 1_000

#: The most rows in one ``import_rows`` request: 2,000 rows of short titles
#: are about 100 KB of JSON, so a CLI can pipeline several within one
#: connection's byte budget, and the daemon validates one batch in a few ms.
MAX_IMPORT_ROWS: Final = 2_000

#: Entry ids and other integers must fit SQLite's signed 64-bit INTEGER.
MAX_INT: Final = (1 << 63) - 1


class ErrorCode:
    """The stable error codes of the protocol (strings on the wire)."""

    BAD_REQUEST: Final = "bad_request"  # not JSON, not an object, unknown op, wrong field type
    INVALID: Final = "invalid"  # a well-formed field whose value is not allowed
    NOT_FOUND: Final = "not_found"  # no entry with that id in that list
    UNAVAILABLE: Final = "unavailable"  # quarantined list, failing store, shutting down, busy
    TIMEOUT: Final = "timeout"  # the daemon did not finish the request in time
    TOO_LARGE: Final = "too_large"  # a request line over MAX_LINE
    INTERNAL: Final = "internal"  # the list server crashed on this request; nothing was applied
    FORBIDDEN: Final = "forbidden"  # the peer's uid is neither the daemon's nor root
    CONFLICT: Final = "conflict"  # an expected version, or the state an undo or redo needs, does not hold
    COMPACTED: Final = "compacted"  # the events asked for were dropped by compaction
    EXPIRED: Final = "expired"  # the snapshot a paging cursor names is gone; read again from the start

    ALL: Final = frozenset(
        {
            BAD_REQUEST,
            INVALID,
            NOT_FOUND,
            UNAVAILABLE,
            TIMEOUT,
            TOO_LARGE,
            INTERNAL,
            FORBIDDEN,
            CONFLICT,
            COMPACTED,
            EXPIRED,
        }
    )


class TodoError(Exception):
    """An error with a stable protocol code; the base of every todod error.

    Args:
        message: one line for a human.
        code: one of :class:`ErrorCode`; subclasses fix it.
    """

    code: str = ErrorCode.INTERNAL

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code

    def to_wire(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class BadRequest(TodoError):
    code = ErrorCode.BAD_REQUEST


class Invalid(TodoError):
    code = ErrorCode.INVALID


class NotFound(TodoError):
    code = ErrorCode.NOT_FOUND


class Unavailable(TodoError):
    code = ErrorCode.UNAVAILABLE


class Timeout(TodoError):
    code = ErrorCode.TIMEOUT


class TooLarge(TodoError):
    code = ErrorCode.TOO_LARGE


class Internal(TodoError):
    code = ErrorCode.INTERNAL


class Forbidden(TodoError):
    code = ErrorCode.FORBIDDEN


class Conflict(TodoError):
    code = ErrorCode.CONFLICT


class Compacted(TodoError):
    code = ErrorCode.COMPACTED


class Expired(TodoError):
    code = ErrorCode.EXPIRED


_BY_CODE: dict[str, type[TodoError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        Invalid,
        NotFound,
        Unavailable,
        Timeout,
        TooLarge,
        Internal,
        Forbidden,
        Conflict,
        Compacted,
        Expired,
    )
}


def error_from_wire(error: object) -> TodoError:
    """Build the matching :class:`TodoError` from a response's ``"error"`` object."""
    if not isinstance(error, dict):
        return BadRequest(f"malformed error object in response: {error!r}")
    code = error.get("code")
    message = error.get("message")
    cls = _BY_CODE.get(code) if isinstance(code, str) else None
    text = message if isinstance(message, str) else str(code)
    if cls is None:
        return TodoError(text, code if isinstance(code, str) else ErrorCode.INTERNAL)
    return cls(text)


# --- requests ---------------------------------------------------------------

#: For each op, its fields: name → (type, required).  ``int`` never accepts a
#: bool (JSON ``true`` is not an entry id); ``list`` is an array of strings,
#: ``tuple`` any array (its items are checked by the daemon).
OPS: Final[dict[str, dict[str, tuple[type, bool]]]] = {
    "hello": {},
    "add": {"list": (str, True), "title": (str, True), "date": (str, False), "tags": (list, False)},
    "entries": {
        "list": (str, True),
        "date": (str, False),
        "limit": (int, False),
        "after": (str, False),
        "form": (str, False),
    },
    "lists": {},
    "update": {
        "list": (str, True),
        "entry": (int, True),
        "title": (str, False),
        "date": (str, False),
        "done": (bool, False),
        "tag": (list, False),
        "untag": (list, False),
        "if_version": (int, False),
    },
    "delete": {"list": (str, True), "entry": (int, True), "if_version": (int, False)},
    "status": {},
    "find": {
        "lists": (list, False),
        "from": (str, False),
        "to": (str, False),
        "done": (bool, False),
        "tags": (list, False),
        "search": (str, False),
        "limit": (int, False),
        "after": (str, False),
        "form": (str, False),
    },
    "stop": {},
    "history": {"list": (str, True), "limit": (int, False), "after": (int, False)},
    "undo": {"list": (str, True), "steps": (int, False), "if_seq": (int, False)},
    "redo": {"list": (str, True), "steps": (int, False), "if_seq": (int, False)},
    "watch": {"list": (str, False), "since": (int, False)},
    "compact": {"keep_days": (int, False)},
    "move": {
        "list": (str, True),
        "entry": (int, True),
        "to_list": (str, True),
        "to_socket": (str, False),
        "if_version": (int, False),
    },
    "move_in": {
        "list": (str, True),
        "key": (str, True),
        "date": (str, True),
        "title": (str, True),
        "done": (bool, True),
        "tags": (list, True),
    },
    "move_cancel": {"key": (str, True)},
    "import_begin": {"list": (str, True)},
    # rows: an array of [line, date, title, done, tags], checked by the daemon.
    "import_rows": {"import": (str, True), "start": (int, True), "rows": (tuple, True)},
    "import_commit": {"import": (str, True), "count": (int, True)},
    "import_abort": {"import": (str, True)},
}

#: At most this many entries in one ``find`` answer (its ``limit`` defaults to
#: it): 10,000 entries of the longest titles stay well under MAX_RESPONSE,
#: and a terminal or a script wants a narrower query long before that.
MAX_FIND: Final = 10_000


if TYPE_CHECKING:

    class Request(NamedTuple):
        """A parsed request: its op, the id to echo, and its checked fields."""

        op: str
        id: Any
        args: dict[str, Any]

else:
    Request = collections.namedtuple("Request", ["op", "id", "args"])
    Request.__doc__ = "A parsed request: its op, the id to echo, and its checked fields."


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


#: One decoder for every line: ``json.loads`` with any keyword builds a new
#: JSONDecoder per call, which was half of its cost (2.5 of 5 us a request).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _loads(data: bytes | str) -> Any:
    # Exactly what json.loads does with its input, then the shared decoder.
    if isinstance(data, str):
        if data.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", data, 0)
    elif data[:1] == b"{" and data[1:2] != b"\x00":
        # What detect_encoding answers for every such line (no BOM starts
        # with "{", and a second byte of zero would be UTF-16-LE), without
        # its five prefix tests: a request line almost always starts so.
        data = data.decode("utf-8", "surrogatepass")
    else:
        data = data.decode(json.detect_encoding(data), "surrogatepass")
    return _DECODER.decode(data)


def parse_request(line: bytes) -> Request:
    """Parse and type-check one request line (without or with its newline).

    Returns:
        The request, with the fields of its op checked for presence and type.
        Values (dates, titles, list names) are checked by the daemon's model.

    Raises:
        BadRequest: the line is not UTF-8 JSON, not an object, names no known
            op, or has a missing, unknown or mistyped field.  ``exc.request_id``
            holds the id to echo when it could be read.
    """
    try:
        obj = _loads(line)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and ints over the digit limit.
        raise _bad(None, f"not a JSON line: {_short(exc)}") from None
    if not isinstance(obj, dict):
        raise _bad(None, "a request must be a JSON object")
    request_id = obj.get("id")
    if not _valid_id(request_id):
        raise _bad(None, "'id' must be a string of at most 256 characters, an integer of 64 bits or null")
    op = obj.get("op")
    if not isinstance(op, str):
        raise _bad(request_id, "a request needs an 'op' string")
    fields = OPS.get(op)
    if fields is None:
        raise _bad(request_id, f"unknown op {_short(op)!r}; known: {', '.join(OPS)}")
    args: dict[str, Any] = {}
    for key, value in obj.items():
        if key in ("op", "id"):
            continue
        spec = fields.get(key)
        if spec is None:
            raise _bad(request_id, f"op {op!r} has no field {_short(key)!r}")
        kind, _required = spec
        if value is None and not _required:
            continue
        if not _is(value, kind):
            raise _bad(request_id, f"field {key!r} must be {_KIND_NAMES[kind]}")
        args[key] = value
    missing = [name for name, (_k, required) in fields.items() if required and name not in args]
    if missing:
        raise _bad(request_id, f"op {op!r} needs field {missing[0]!r}")
    return Request(op, request_id, args)


_KIND_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer from 0 to 2^63-1",
    bool: "true or false",
    list: "an array of strings",
    tuple: "an array",
}


def _is(value: object, kind: type) -> bool:
    if kind is list:
        return type(value) is list and all(type(item) is str for item in value)
    if kind is tuple:
        return type(value) is list
    if kind is int:
        return type(value) is int and 0 <= value <= MAX_INT  # type: ignore[operator]
    return type(value) is kind


def _valid_id(value: object) -> bool:
    if value is None or type(value) is str:
        return value is None or len(value) <= 256  # type: ignore[arg-type]
    return type(value) is int and -MAX_INT - 1 <= value <= MAX_INT  # type: ignore[operator]


def _short(value: object, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _bad(request_id: Any, message: str) -> BadRequest:
    exc = BadRequest(message)
    exc.request_id = request_id  # type: ignore[attr-defined]
    return exc


def encode_request(op: str, request_id: Any = None, **fields: Any) -> bytes:
    """Encode one request line, newline included; ``None`` fields are left out."""
    obj: dict[str, Any] = {"op": op}
    if request_id is not None:
        obj["id"] = request_id
    obj.update((k, v) for k, v in fields.items() if v is not None)
    return _dumps(obj)


# --- responses --------------------------------------------------------------


#: One encoder for every line, as for decoding: ``json.dumps`` with any
#: keyword builds a new JSONEncoder per call (1.4 of 5.2 us a response).
#: ensure_ascii (its default) keeps every line pure ASCII, so a response can
#: never carry a raw control or escape character to a terminal or a log.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _dumps(obj: Any) -> bytes:
    return _ENCODER.encode(obj).encode("ascii") + b"\n"


if TYPE_CHECKING:

    class RawResult(NamedTuple):
        """A result already encoded as JSON text (ASCII), put in the response line as it is."""

        json: str

else:
    RawResult = collections.namedtuple("RawResult", ["json"])
    RawResult.__doc__ = "A result already encoded as JSON text (ASCII), put in the response line as it is."


def encode_ok(request_id: Any, result: Any) -> bytes:
    """Encode a success response line (``result`` may be a :class:`RawResult`)."""
    if type(result) is RawResult:
        head = '{"ok":true,"result":' if request_id is None else f'{{"id":{json.dumps(request_id)},"ok":true,"result":'
        return (head + result.json + "}\n").encode("ascii")
    obj: dict[str, Any] = {"ok": True, "result": result}
    if request_id is not None:
        obj = {"id": request_id, **obj}
    return _dumps(obj)


def encode_event(request_id: Any, event: Any) -> bytes:
    """Encode one event line of a ``watch`` subscription (``{"id": ..., "event": {...}}``)."""
    obj: dict[str, Any] = {"event": event}
    if request_id is not None:
        obj = {"id": request_id, **obj}
    return _dumps(obj)


def encode_error(request_id: Any, error: TodoError) -> bytes:
    """Encode an error response line."""
    obj: dict[str, Any] = {"ok": False, "error": error.to_wire()}
    if request_id is not None:
        obj = {"id": request_id, **obj}
    return _dumps(obj)


if TYPE_CHECKING:

    class Response(NamedTuple):
        """A decoded response: the echoed id and the result (errors are raised)."""

        id: Any
        result: Any

else:
    Response = collections.namedtuple("Response", ["id", "result"])
    Response.__doc__ = "A decoded response: the echoed id and the result (errors are raised)."


def parse_line(line: bytes) -> dict[str, Any]:
    """Decode one line of a subscription: an event (``{"event": ...}``) is returned, an error raised.

    Raises:
        TodoError: the line is an error response, or not a well-formed line.
    """
    try:
        obj = _loads(line)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(f"malformed line from the daemon: {_short(exc)}") from None
    if not isinstance(obj, dict):
        raise BadRequest("malformed line from the daemon")
    if obj.get("ok") is False:
        raise error_from_wire(obj.get("error"))
    return obj


def parse_response(line: bytes) -> Response:
    """Decode one response line.

    Raises:
        TodoError: the response is an error (its own subclass by code), or the
            line is not a well-formed response (:class:`BadRequest`).
    """
    try:
        obj = _loads(line)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(f"malformed response from the daemon: {_short(exc)}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("ok"), bool):
        raise BadRequest("malformed response from the daemon")
    if obj["ok"]:
        return Response(obj.get("id"), obj.get("result"))
    raise error_from_wire(obj.get("error"))

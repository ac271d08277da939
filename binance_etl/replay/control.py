"""What a connection is subscribed to, and Binance's JSON control messages that change it:
SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET_PROPERTY/GET_PROPERTY ("combined")."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import orjson

METHODS = "SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET_PROPERTY, GET_PROPERTY"


@dataclass(frozen=True)
class StreamRequest:
    """What the client asked for in its handshake URL."""

    streams: list[str]
    envelope: bool  # combined-stream payloads ({"stream","data"})
    micro: bool  # timeUnit=MICROSECOND


def parse_stream_path(target: str, max_streams: int) -> StreamRequest | None:
    """`/ws/<stream>[/<stream>...]`, `/ws`, `/stream?streams=a/b` -> what to send; else None."""
    parts = urlsplit(target)
    path = parts.path.rstrip("/")
    query = parse_qs(parts.query)
    micro = query.get("timeUnit", [""])[0].upper() == "MICROSECOND"
    if path == "/ws" or path.startswith("/ws/"):
        streams = [s for s in path[len("/ws"):].split("/") if s]
        envelope = False
    elif path == "/stream":
        streams = [s for s in query.get("streams", [""])[0].split("/") if s]
        envelope = True
    else:
        return None
    if len(streams) > max_streams:
        raise ValueError(f"too many streams: {len(streams)} > {max_streams}")
    return StreamRequest(streams=list(dict.fromkeys(streams)), envelope=envelope, micro=micro)


class ControlError(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


@dataclass
class Subscription:
    """A connection's streams (in subscription order) and payload format."""

    max_streams: int
    streams: dict[str, None] = field(default_factory=dict)
    envelope: bool = False
    micro: bool = False

    @classmethod
    def from_request(cls, request: StreamRequest, max_streams: int) -> Subscription:
        return cls(max_streams, dict.fromkeys(request.streams), request.envelope, request.micro)

    def handle(self, payload: bytes) -> dict[str, object]:
        """Apply one control message; the reply, `{"result":..,"id":..}` or Binance's error
        `{"code":..,"msg":..,"id":..}`."""
        request_id: object = None
        try:
            try:
                message = orjson.loads(payload)
            except orjson.JSONDecodeError as error:
                raise ControlError(3, f"Invalid JSON: {error}") from None
            if not isinstance(message, dict):
                raise ControlError(2, "Invalid request: expected an object")
            request_id = message.get("id")
            if "id" in message and not (isinstance(request_id, int) and request_id >= 0
                                        and not isinstance(request_id, bool)):
                request_id = None
                raise ControlError(2, "Invalid request: request ID must be an unsigned integer")
            result = self._method(message)
        except ControlError as error:
            return {"code": error.code, "msg": error.msg, "id": request_id}
        return {"result": result, "id": request_id}

    def _method(self, message: dict[str, object]) -> object:
        method = message.get("method")
        if method is None:
            raise ControlError(2, "Invalid request: missing field `method`")
        params = message.get("params", [])
        if not isinstance(params, list):
            raise ControlError(2, "Invalid request: params must be an array")
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not all(isinstance(stream, str) for stream in params):
                raise ControlError(2, "Invalid request: stream names must be strings")
            if method == "UNSUBSCRIBE":
                for stream in params:
                    self.streams.pop(stream, None)
                return None
            added = [stream for stream in params if stream not in self.streams]
            if len(self.streams) + len(added) > self.max_streams:
                raise ControlError(2, f"Invalid request: too many streams, at most "
                                      f"{self.max_streams} per connection")
            self.streams.update(dict.fromkeys(added))
            return None
        if method == "LIST_SUBSCRIPTIONS":
            return list(self.streams)
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            return self._property(method, params)
        raise ControlError(2, f"Invalid request: unknown variant `{method}`, expected one of "
                              f"{METHODS}")

    def _property(self, method: str, params: list[object]) -> object:
        if not params or not isinstance(params[0], str):
            raise ControlError(2, "Invalid request: property name must be a string")
        if params[0] != "combined":
            raise ControlError(0, "Unknown property")
        if method == "GET_PROPERTY":
            return self.envelope
        if len(params) != 2 or not isinstance(params[1], bool):
            raise ControlError(1, "Invalid value type: expected Boolean")
        self.envelope = params[1]
        return None

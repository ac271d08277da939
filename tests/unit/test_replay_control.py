"""Control messages on a subscription: Binance's replies and errors, without a network."""

from __future__ import annotations

import orjson
import pytest

from binance_etl.replay.control import Subscription


def _send(sub: Subscription, message: object) -> object:
    return sub.handle(message if isinstance(message, bytes) else orjson.dumps(message))


def test_subscribe_list_unsubscribe() -> None:
    sub = Subscription(max_streams=1024)
    assert _send(sub, {"method": "SUBSCRIBE", "params": ["btcusdt@trade", "ethusdt@trade"],
                       "id": 1}) == {"result": None, "id": 1}
    assert _send(sub, {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 2}) == {
        "result": None, "id": 2}
    assert _send(sub, {"method": "LIST_SUBSCRIPTIONS", "id": 3}) == {
        "result": ["btcusdt@trade", "ethusdt@trade"], "id": 3}
    assert _send(sub, {"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 4}) == {
        "result": None, "id": 4}
    assert list(sub.streams) == ["ethusdt@trade"]


def test_combined_property() -> None:
    sub = Subscription(max_streams=10)
    assert _send(sub, {"method": "GET_PROPERTY", "params": ["combined"], "id": 1})[
        "result"] is False  # type: ignore[index]
    assert _send(sub, {"method": "SET_PROPERTY", "params": ["combined", True], "id": 2}) == {
        "result": None, "id": 2}
    assert sub.envelope


@pytest.mark.parametrize(("message", "code", "request_id"), [
    (b"{nope", 3, None),
    (b"[1, 2]", 2, None),
    ({"method": "SUBSCRIBE", "params": ["a@trade"], "id": "x"}, 2, None),
    ({"method": "SUBSCRIBE", "params": ["a@trade"], "id": -3}, 2, None),
    ({"params": [], "id": 5}, 2, 5),
    ({"method": "FETCH", "id": 6}, 2, 6),
    ({"method": "SUBSCRIBE", "params": "a@trade", "id": 7}, 2, 7),
    ({"method": "SUBSCRIBE", "params": [1], "id": 8}, 2, 8),
    ({"method": "GET_PROPERTY", "params": ["colour"], "id": 9}, 0, 9),
    ({"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 10}, 1, 10),
    ({"method": "SET_PROPERTY", "params": [3], "id": 11}, 2, 11),
])
def test_errors(message: object, code: int, request_id: int | None) -> None:
    sub = Subscription(max_streams=10)
    reply = _send(sub, message)
    assert isinstance(reply, dict)
    assert (reply["code"], reply["id"]) == (code, request_id)
    assert isinstance(reply["msg"], str)
    assert reply["msg"]
    assert sub.streams == {}


def test_stream_cap() -> None:
    sub = Subscription(max_streams=2, streams={"a@trade": None})
    reply = _send(sub, {"method": "SUBSCRIBE", "params": ["b@trade", "c@trade"], "id": 1})
    assert reply == {"code": 2, "id": 1,
                     "msg": "Invalid request: too many streams, at most 2 per connection"}
    assert list(sub.streams) == ["a@trade"]

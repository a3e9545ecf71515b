"""Server-sent events, decoded line by line as the WHATWG HTML standard says (event-stream interpretation)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None  # the stream's last event id when this event was dispatched
    retry: int | None  # the reconnection time the server asked for, in milliseconds, if it did


class SSEDecoder:
    """Feed it the stream's lines (without their line ends); it returns an event at each blank line that ends
    one. Comment lines (`: ping` heartbeats) and unknown fields are ignored; an event without data is dropped."""

    def __init__(self, last_event_id: str | None = None) -> None:
        self.last_event_id = last_event_id
        self.retry: int | None = None
        self._event = ""
        self._data: list[str] = []

    def decode(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\x00" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = ServerSentEvent(self._event or "message", "\n".join(self._data), self.last_event_id, self.retry)
        self._event, self._data = "", []
        return event

from __future__ import annotations

import httpx
from mockapi import PING
from svdiff_client._sse import ServerSentEvent, SSEDecoder


def decode(raw: bytes, last_event_id: str | None = None) -> tuple[list[ServerSentEvent], SSEDecoder]:
    """Lines split as the clients split them (httpx's line decoder: LF, CRLF and CR)."""
    response = httpx.Response(200, content=raw)
    decoder = SSEDecoder(last_event_id)
    events = [e for e in (decoder.decode(line) for line in response.iter_lines()) if e is not None]
    return events, decoder


def test_events_heartbeats_and_ids() -> None:
    raw = PING + b'id: 1\nevent: job\ndata: {"a": 1}\n\n' + PING + b": another comment\n\nevent: job\ndata: x\n\n"
    events, decoder = decode(raw)
    assert events == [ServerSentEvent("job", '{"a": 1}', "1", None), ServerSentEvent("job", "x", "1", None)]
    assert decoder.last_event_id == "1"  # kept until the stream sets another


def test_multi_line_data_crlf_and_no_space_after_colon() -> None:
    raw = b"id:7\r\nevent:job\r\ndata:first\r\ndata: second\r\n\r\ndata\r\n\r\n"
    events, _ = decode(raw)
    assert events[0] == ServerSentEvent("job", "first\nsecond", "7", None)
    assert events[1] == ServerSentEvent("message", "", "7", None)  # a bare `data` field is an empty line of data


def test_retry_unknown_fields_and_events_without_data() -> None:
    raw = b"retry: 2500\nfoo: bar\nevent: job\n\nid: 9\nretry: soon\ndata: d\n\n"
    events, decoder = decode(raw)
    assert events == [ServerSentEvent("message", "d", "9", 2500)]  # the dataless event is dropped, its type too
    assert decoder.retry == 2500


def test_an_event_cut_off_by_the_end_of_the_stream_is_not_dispatched() -> None:
    events, decoder = decode(b"id: 1\ndata: whole\n\nid: 2\ndata: cut")
    assert [e.data for e in events] == ["whole"]
    assert decoder.last_event_id == "2"


def test_an_empty_id_resets_it_and_nul_is_ignored() -> None:
    events, _ = decode(b"id: 5\ndata: a\n\nid\ndata: b\n\nid: x\x00y\ndata: c\n\n", last_event_id="0")
    assert [e.id for e in events] == ["5", "", ""]

"""Messages waiting in the broker, per queue: the reconciler compares them with the jobs queued in the database,
and `/metrics` serves them to autoscalers. Read over one connection that gives up at once when the broker does not
answer (a scrape must not wait out kombu's reconnection loop)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from core.runtime import Runtime

log = logging.getLogger(__name__)


def queue_lengths(runtime: Runtime, queues: Iterable[str], timeout: float = 3.0) -> dict[str, int]:
    """Messages waiting in each queue. A queue the broker cannot count is left out, and a broker that does not
    answer gives an empty answer (both logged): callers never act on the strength of an unknown count."""
    wanted = list(queues)
    lengths: dict[str, int] = {}
    try:
        with runtime.celery.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0.1, interval_step=0.1, timeout=timeout)
            channel = connection.default_channel
            for queue in wanted:
                length = _length(channel, queue)
                if length is not None:
                    lengths[queue] = length
    except Exception as exc:  # kombu and redis raise many types; all mean "the broker did not answer"
        log.warning("the broker did not answer (%s): queue lengths of %s unknown", exc, ", ".join(wanted))
    return lengths


def queue_length(runtime: Runtime, queue: str) -> int | None:
    """Messages waiting in one queue, or None when the broker does not say."""
    return queue_lengths(runtime, [queue]).get(queue)


def _length(channel: Any, queue: str) -> int | None:
    from kombu.exceptions import ChannelError

    try:
        if hasattr(channel, "priority_steps") and hasattr(channel, "client"):
            # Redis: kombu's own count misses the keys under a global_keyprefix, so LLEN each priority's list
            # through the channel's (prefixing) client.
            lists = {channel._q_for_pri(queue, step) for step in channel.priority_steps}
            return sum(int(channel.client.llen(name) or 0) for name in lists)
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except ChannelError as exc:  # no key for an empty list: the broker answered "no such queue"
        if "NOT_FOUND" in str(exc):
            return 0
        log.warning("queue length of %s unknown: %s", queue, exc)
        return None

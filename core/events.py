"""Change notices for the live job event streams: whoever changes a job (a worker's progress, a status change, a job
entering or leaving a queue) announces it after the commit; an API process's streams wait on the notices instead of
polling the database.

- `LocalHub`: in one process (the embedded mode, where the worker is a thread of the API process), and the fan-out
  inside every API process: each stream waits on an asyncio event, set thread-safely by `publish`.
- `RedisHub`: across processes, when the broker is Redis. Every notice is one PUBLISH on one channel (under the
  broker's key prefix); each API process keeps one subscription to it and fans the notices out to its streams
  through its own `LocalHub`. So a process holds one Redis connection for all its streams, whatever their number.

Notices carry no state, only which job or queue changed: a stream re-reads its job from the database. They are at
most once (a Redis restart drops some), so streams also re-read now and then: a lost notice costs a delay, never a
stuck stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)
REDIS_CHANNEL = "svdiff:job-events"


def job_channel(job_id: str) -> str:
    return f"job:{job_id}"


def queue_channel(queue: str) -> str:
    return f"queue:{queue}"


@dataclass(eq=False)
class Waiter:
    """One stream's wake-up: set from any thread, awaited in the stream's event loop."""

    loop: asyncio.AbstractEventLoop
    event: asyncio.Event = field(default_factory=asyncio.Event)
    channels: frozenset[str] = frozenset()

    def wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the stream's loop has closed: nobody to wake
            self.loop.call_soon_threadsafe(self.event.set)

    async def wait(self, timeout: float) -> bool:
        """True when woken within `timeout` seconds (and ready for the next wake-up)."""
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
        except TimeoutError:
            return False
        self.event.clear()
        return True


class Hub(Protocol):
    def publish(self, *channels: str) -> None: ...

    def subscribe(self, channels: Iterable[str]) -> contextlib.AbstractAsyncContextManager[Waiter]: ...


class LocalHub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Waiter]] = {}

    def publish(self, *channels: str) -> None:
        with self._lock:
            woken = {waiter for channel in channels for waiter in self._waiters.get(channel, ())}
        for waiter in woken:
            waiter.wake()

    def wake_all(self) -> None:
        with self._lock:
            woken = {waiter for waiters in self._waiters.values() for waiter in waiters}
        for waiter in woken:
            waiter.wake()

    @contextlib.asynccontextmanager
    async def subscribe(self, channels: Iterable[str]) -> AsyncIterator[Waiter]:
        waiter = Waiter(asyncio.get_running_loop(), channels=frozenset(channels))
        with self._lock:
            for channel in waiter.channels:
                self._waiters.setdefault(channel, set()).add(waiter)
        try:
            yield waiter
        finally:
            with self._lock:
                for channel in waiter.channels:
                    waiters = self._waiters.get(channel)
                    if waiters is not None:
                        waiters.discard(waiter)
                        if not waiters:
                            del self._waiters[channel]


class RedisHub:
    """Publishes with a short-timeout client (a notice is never worth holding up a worker); listens with one
    asyncio subscription per process, started by the first stream and reconnected when Redis comes back."""

    def __init__(self, url: str, prefix: str = "") -> None:
        import redis

        self.url, self.channel = url, prefix + REDIS_CHANNEL
        self._client: Any = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        self.local = LocalHub()
        self._listener: asyncio.Task[None] | None = None

    def publish(self, *channels: str) -> None:
        try:
            for channel in channels:
                self._client.publish(self.channel, channel)
        except Exception as exc:  # streams re-read on their own; a worker must not fail for a notice
            log.warning("job event notice not published (%s)", type(exc).__name__)

    @contextlib.asynccontextmanager
    async def subscribe(self, channels: Iterable[str]) -> AsyncIterator[Waiter]:
        self._ensure_listener()
        async with self.local.subscribe(channels) as waiter:
            yield waiter

    def _ensure_listener(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen(), name="job-events")

    async def _listen(self) -> None:
        import redis.asyncio as aioredis

        while True:
            try:
                client = aioredis.Redis.from_url(self.url)
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    self.local.wake_all()  # notices may have been missed while (re)connecting: re-read
                    async for message in pubsub.listen():
                        data = message.get("data")
                        if isinstance(data, bytes):
                            self.local.publish(data.decode())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("job event subscription lost (%s); reconnecting in 1 s", type(exc).__name__)
                await asyncio.sleep(1.0)


def make_hub(broker_url: str, transport_options: dict[str, Any]) -> Hub:
    if broker_url.startswith(("redis://", "rediss://")):
        return RedisHub(broker_url, str(transport_options.get("global_keyprefix", "")))
    return LocalHub()

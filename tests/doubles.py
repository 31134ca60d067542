"""A scripted Channel beside the seam (relay/channels/base.py), for tests of what the dispatcher does with outcomes.

Like httpx's MockTransport: the dispatcher, store, runtime and rate limiter stay real, only the provider call is
replaced by a script of outcomes (delivered, a DeliveryError, an unexpected exception, a send held open until
released), and every call is recorded in order so a test asserts what the provider would have seen.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from relay.alerts import Notification, WebhookMessage
from relay.channels.threads import Threads
from relay.runtime import Receiver, Runtime
from relay.store.base import Candidate
from tests.helpers import TEMPLATES

DELIVERED: Literal["delivered"] = "delivered"


class Hold:
    """A send that blocks until `release()` (then does `then`), so a test can act while it is in flight."""

    def __init__(self, then: Step = DELIVERED) -> None:
        self.then = then
        self.entered = asyncio.Event()
        self._released = asyncio.Event()

    def release(self) -> None:
        self._released.set()

    async def wait(self) -> None:
        await self._released.wait()


Step = Literal["delivered"] | BaseException | Hold


@dataclass
class Call:
    """One send as the provider would have seen it, and what the script made of it."""

    notification_id: int
    receiver: str
    status: str
    alertnames: tuple[str, ...]
    attempts_before: int  # the notification's counted attempts when this send started
    result: str = "in flight"  # delivered | raised <Type> | cancelled


@dataclass
class ScriptedChannel:
    """A Channel whose sends follow a script: the next step per call, `default` once the script is used up.

    `per_alertname` gives a notification (named by its first alert) its own steps, taken before the shared
    script, for tests where lanes race and the order of calls across lanes is not fixed.
    """

    script: Iterable[Step] = ()
    default: Step = DELIVERED
    integration: str = "slack"
    destination: str = "scripted:0"
    per_alertname: Mapping[str, Iterable[Step]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    closed: bool = False

    def __post_init__(self) -> None:
        self._steps: deque[Step] = deque(self.script)
        self._own: dict[str, deque[Step]] = {name: deque(steps) for name, steps in self.per_alertname.items()}
        self._changed = asyncio.Condition()

    async def send(self, notification: Notification, threads: Threads | None = None) -> None:
        names = tuple(a.labels.get("alertname", "") for a in notification.alerts)
        own = self._own.get(names[0]) if names else None
        step = own.popleft() if own else (self._steps.popleft() if self._steps else self.default)
        call = Call(notification.id, notification.receiver, notification.status, names, notification.attempts)
        await self._record(lambda: self.calls.append(call))
        try:
            if isinstance(step, Hold):
                step.entered.set()
                await step.wait()
                step = step.then
            if isinstance(step, BaseException):
                raise step.with_traceback(None)  # one script entry may be raised many times: no growing traceback
        except asyncio.CancelledError:
            await self._record(lambda: setattr(call, "result", "cancelled"))
            raise
        except BaseException as exc:
            raised = f"raised {type(exc).__name__}"
            await self._record(lambda: setattr(call, "result", raised))
            raise
        await self._record(lambda: setattr(call, "result", DELIVERED))

    async def close(self) -> None:
        self.closed = True

    @property
    def delivered(self) -> list[tuple[str, ...]]:
        """The alert names of each notification the provider accepted, in the order it accepted them."""
        return [c.alertnames for c in self.calls if c.result == DELIVERED]

    async def wait_for(self, predicate: Callable[[ScriptedChannel], bool], timeout: float = 10.0) -> None:
        """Await a condition on the calls (no polling, no sleeps); TimeoutError says what was called."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: predicate(self))
        except TimeoutError:
            raise TimeoutError(f"condition not met within {timeout}s; calls: {self.calls}") from None

    async def _record(self, change: Callable[[], object]) -> None:
        async with self._changed:
            change()
            self._changed.notify_all()


class NoReceivers:
    """Receivers (relay.runtime.Receivers) with none configured: for what the dispatcher decides before
    any send, such as the slots it offers to enqueues."""

    def receiver(self, name: str) -> Receiver | None:
        return None

    def receiver_names(self) -> Collection[str]:
        return ()


async def scripted_runtime(routes: Path, channels: Mapping[str, ScriptedChannel]) -> Runtime:
    """A started Runtime on a real routes.yaml whose named receivers send through the given doubles.

    Each double takes the real channel's destination (so receivers sharing a webhook URL share a rate-limit
    bucket, as in production) and integration; receivers not named keep their real channel.
    """
    runtime = Runtime(routes, TEMPLATES)
    await runtime.start()
    swap(runtime, channels)
    return runtime


def swap(runtime: Runtime, channels: Mapping[str, ScriptedChannel]) -> None:
    """Put the doubles in place of the runtime's channels of those receivers (again after a reload)."""
    for name, double in channels.items():
        real = runtime.channels[name]
        double.destination, double.integration = real.destination, real.integration
        runtime.channels[name] = double


def group(group_key: str, *alertnames: str, status: str = "firing", severity: str = "warning") -> WebhookMessage:
    """An Alertmanager group (groupKey gives the lane) with one alert per name, all of one status and severity."""
    alerts: list[dict[str, Any]] = []
    for name in alertnames:
        labels = {"alertname": name, "severity": severity, "namespace": "ojeomneo"}
        alerts.append({"status": status, "labels": labels, "annotations": {"summary": f"{name} summary"},
                       "startsAt": "2026-11-26T07:40:12Z",
                       "endsAt": "2026-11-26T07:45:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
                       "generatorURL": "http://prometheus:9090/graph", "fingerprint": f"fp-{name}"})
    return WebhookMessage.model_validate({
        "receiver": "relay", "status": status, "alerts": alerts, "groupLabels": {}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": "http://am:9093", "version": "4", "groupKey": group_key,
        "truncatedAlerts": 0})


def candidate(receiver: str, message: WebhookMessage, integration: str = "slack",
              give_up_after: timedelta = timedelta(hours=24)) -> Candidate:
    """One receiver's share of a group, as the webhook would enqueue it (repeat interval of an hour)."""
    return Candidate(receiver, integration, message, tuple(timedelta(hours=1) for _ in message.alerts), give_up_after)

"""Steady load like a busy Alertmanager, and a ledger of what each provider received.

Each alert has its own group (its own lane): a firing webhook, and for most
alerts a resolved one a little later. The generator resends a webhook until
relay answers 200, as Alertmanager does, and remembers which were accepted:
those are the ones relay promised to deliver.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from relay.alerts import Alert
from relay.alerts.fingerprint import fingerprint
from relay.channels.pagerduty import dedup_key
from tests.reliability.conftest import Stack

STARTS_AT = "2026-11-26T07:40:12.571836967Z"
NAME = re.compile(r"\bRel[0-9a-z]*x\d{5}\b")
MAX_CONCURRENT_POSTS = 64


def destinations(i: int) -> tuple[str, ...]:
    """A mix like the monitoring plan's: every alert to Slack, half also by email, a quarter also paged."""
    return (("slack", "email", "pagerduty"), ("slack", "email"), ("slack",), ("slack",))[i % 4]


def alert(name: str, to: Iterable[str], status: str) -> dict[str, Any]:
    labels = {"alertname": name, "severity": "critical", "to": ",".join(to), "service": "server"}
    return {"status": status, "labels": labels, "annotations": {"summary": f"{name} summary"},
            "startsAt": STARTS_AT,
            "endsAt": "2026-11-26T07:45:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph", "fingerprint": fingerprint(labels)}


def webhook(name: str, to: Iterable[str], status: str = "firing") -> dict[str, Any]:
    one = alert(name, to, status)
    return {"receiver": "relay", "status": status, "alerts": [one], "groupLabels": {"alertname": name},
            "commonLabels": one["labels"], "commonAnnotations": one["annotations"], "externalURL": "http://am:9093",
            "version": "4", "groupKey": f'{{}}:{{alertname="{name}"}}', "truncatedAlerts": 0}


@dataclass
class Load:
    """Offers `rate` alerts a second to relay at `url`; each accepted webhook is recorded in `accepted`."""

    url: str
    token: str
    rate: float
    prefix: str = "Rel"
    mirrors: tuple[str, ...] = ()  # also post every webhook here, as the other half of an HA Alertmanager pair
    resolve_every: int = 4  # alerts whose index is a multiple of this stay firing
    accepted: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # name -> {"firing", ...}
    to: dict[str, tuple[str, ...]] = field(default_factory=dict)
    answers: Counter[str] = field(default_factory=Counter)  # "200", "503", "ConnectError", ...
    error_bodies: list[str] = field(default_factory=list)
    sent: int = 0
    # What each sender had accepted: one Alertmanager sends a group's notifications in order, so a sender's resolve
    # waits for its own firing (the other half of an HA pair may be later: that is what mirrors test).
    _accepted_from: set[tuple[str, str, str]] = field(default_factory=set)  # (sender's URL, name, status)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def name(self, i: int) -> str:
        return f"{self.prefix}x{i:05d}"

    async def run(self, seconds: float) -> None:
        """Offer load for `seconds` (or until `stop()`), then wait until every webhook offered was accepted."""
        limit = asyncio.Semaphore(MAX_CONCURRENT_POSTS)
        headers = {"Authorization": f"Bearer {self.token}"}
        async with contextlib.AsyncExitStack() as clients:
            # Idle connections are dropped before the server's 5 s keep-alive ends, as Alertmanager's Go client in
            # effect does (it retries a request on a connection the server closed while idle): else a post can race
            # the server's close and end in ReadError, which says nothing about relay.
            keepalive = httpx.Limits(keepalive_expiry=2.0)
            targets = [await clients.enter_async_context(httpx.AsyncClient(base_url=url, timeout=10, headers=headers,
                                                                           limits=keepalive))
                       for url in (self.url, *self.mirrors)]
            start = time.monotonic()
            i = 0
            while not self._stop.is_set() and time.monotonic() - start < seconds:
                name = self.name(i)
                self.to[name] = destinations(i)
                for client in targets:
                    self._spawn(self._deliver(client, limit, name, "firing", 0.0))
                    if i % self.resolve_every:
                        self._spawn(self._deliver(client, limit, name, "resolved", 1.0))
                i += 1
                delay = start + i / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            while self._tasks:
                await asyncio.gather(*list(self._tasks))

    def stop(self) -> None:
        self._stop.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, client: httpx.AsyncClient, limit: asyncio.Semaphore, name: str, status: str,
                       after: float) -> None:
        """POST until 200, backing off like Alertmanager; a resolve waits until its sender's firing was accepted."""
        await asyncio.sleep(after)
        sender = str(client.base_url)
        while status == "resolved" and (sender, name, "firing") not in self._accepted_from:
            await asyncio.sleep(0.05)
        body = webhook(name, self.to[name], status)
        backoff = 0.1
        while True:
            async with limit:
                self.sent += 1
                try:
                    answer = await client.post("/webhook", json=body)
                except httpx.HTTPError as exc:
                    self.answers[type(exc).__name__] += 1
                else:
                    self.answers[str(answer.status_code)] += 1
                    if answer.status_code == 200:
                        self.accepted[name].add(status)
                        self._accepted_from.add((sender, name, status))
                        return
                    self.error_bodies.append(answer.text)
                    assert answer.status_code >= 500, f"relay refused a valid webhook: {answer.text}"
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    @property
    def accepted_count(self) -> int:
        return sum(len(kinds) for kinds in self.accepted.values())


# -- what arrived -----------------------------------------------------------------------------------------------

Arrival = tuple[float, str]  # (time.time(), "firing" | "resolved")


def arrivals(stack: Stack, names: Iterable[str]) -> dict[tuple[str, str], list[Arrival]]:
    """(integration, alert name) -> every message that provider accepted for it, in arrival order."""
    out: dict[tuple[str, str], list[Arrival]] = defaultdict(list)
    for at, _, message in stack.slack.received:
        text = str(message)
        kind = "resolved" if "[RESOLVED]" in text else "firing"
        for name in set(NAME.findall(text)):
            out[("slack", name)].append((at, kind))
    for mail in stack.smtp.messages:
        subject = str(mail.message["Subject"])
        kind = "resolved" if subject.startswith("[RESOLVED]") else "firing"
        for name in set(NAME.findall(subject)):
            out[("email", name)].append((mail.at, kind))
    keys = {}
    for name in names:
        model = Alert.model_validate(alert(name, ("slack", "email", "pagerduty"), "firing"))
        keys[dedup_key(model)] = name
    for request in stack.pagerduty.requests:
        if request.status == 202 and isinstance(request.body, dict) and request.body.get("dedup_key") in keys:
            kind = "resolved" if request.body.get("event_action") == "resolve" else "firing"
            out[("pagerduty", keys[request.body["dedup_key"]])].append((request.at, kind))
    return out


@dataclass
class Outcome:
    expected: int  # messages relay promised (accepted webhooks x their destinations)
    delivered: int  # distinct messages that arrived
    lost: list[tuple[str, str, str]]  # (integration, name, kind) accepted but never arrived
    duplicates: list[tuple[str, str, str, list[float]]]  # (integration, name, kind, arrival times)
    out_of_order: list[tuple[str, str]]  # a firing arrived after its resolve, or the last message is not the last state
    # An HA pair's late firing that arrived after the resolve was shown: paged again, then resolved again (issue 20:
    # a firing after a shown resolve is a new episode, delivered). Only with mirrors; alone it is a duplicate.
    refired: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {"messages_expected": self.expected, "delivered": self.delivered, "lost": len(self.lost),
                "duplicates": sum(len(times) - 1 for *_, times in self.duplicates),
                "out_of_order": len(self.out_of_order), "refired_after_resolve": len(self.refired)}


def runs(seen: list[Arrival]) -> list[tuple[str, list[float]]]:
    """Arrivals in time order, grouped into runs of the same kind: [("firing", [t1, t2]), ("resolved", [t3])]."""
    out: list[tuple[str, list[float]]] = []
    for at, kind in sorted(seen):
        if out and out[-1][0] == kind:
            out[-1][1].append(at)
        else:
            out.append((kind, [at]))
    return out


def outcome(load: Load, stack: Stack) -> Outcome:
    """Compare what relay accepted with what the providers received.

    A duplicate is the same message twice in a row. With mirrors (an HA pair), a firing may arrive again after its
    resolve was shown, when the other half's retried firing comes after the resolve: relay delivers it as a new
    episode (when in doubt, deliver), and that half's resolve then closes it: counted in `refired`, and the last
    message must still be the resolve. Without mirrors nothing can send a firing after its resolve was accepted.
    """
    got = arrivals(stack, load.to)
    lost, duplicates, disorder, refired = [], [], [], []
    expected = delivered = 0
    for name, kinds in load.accepted.items():
        # PagerDuty hears a firing alert's dedup key only once per episode, Slack and email each time it is sent.
        for integration in load.to[name]:
            seen = got.get((integration, name), [])
            for kind in sorted(kinds):
                expected += 1
                if not any(k == kind for _, k in seen):
                    lost.append((integration, name, kind))
                    continue
                delivered += 1
            grouped = runs(seen)
            duplicates.extend((integration, name, kind, times) for kind, times in grouped if len(times) > 1)
            order = [kind for kind, _ in grouped]
            if order.count("firing") > 1:
                if load.mirrors:
                    refired.append((integration, name))
                else:
                    duplicates.append((integration, name, "firing", [at for at, k in sorted(seen) if k == "firing"]))
            if order and (order[0] == "resolved" or ("resolved" in kinds and order[-1] != "resolved")
                          or (not load.mirrors and order.count("firing") > 1)):
                disorder.append((integration, name))
    return Outcome(expected, delivered, lost, duplicates, disorder, refired)


async def settled(stack: Stack, load: Load, timeout: float) -> Outcome:
    """Wait until every accepted message arrived (or `timeout`), then give the outcome.

    The full comparison reads every message received so far, and relay may share this event loop: it runs only
    once the providers have taken at least as many messages as were promised (a cheap count), so the waiting
    does not slow down the delivery it waits for.
    """
    deadline = time.monotonic() + timeout
    promised = sum(len(load.to[name]) * len(kinds) for name, kinds in load.accepted.items())
    while True:
        taken = (len(stack.slack.received) + len(stack.smtp.messages)
                 + sum(1 for r in stack.pagerduty.requests if r.status == 202))
        if taken >= promised or time.monotonic() > deadline:
            result = outcome(load, stack)
            if not result.lost or time.monotonic() > deadline:
                return result
        await asyncio.sleep(0.2)

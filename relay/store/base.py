"""The Store seam: everything relay keeps durable goes through this protocol.

Enqueue applies dedup and writes notifications in one transaction and returns
only once it is durable; claims hand out the head of each lane under a lease,
so a lane is strictly ordered and a dead worker's work is picked up again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, Protocol

from relay.actions.model import ActionRow
from relay.alerts import Alert, Escalation, Notification, WebhookMessage, key_part
from relay.alerts.priority import DEFAULT, Priority
from relay.pacing.ratelimit import Budget, Grant
from relay.store.records import (
    DueTimer,
    Ended,
    Episode,
    EscalationEnd,
    Fold,
    Folded,
    HistoryFilter,
    MaintenanceWindow,
    Resolved,
    StepRecord,
    StormState,
    StormView,
    Timer,
    Watch,
)


@dataclass(frozen=True)
class Candidate:
    """One receiver's share of one incoming group, before dedup.

    `repeat_intervals[i]` belongs to `group.alerts[i]`: the interval of the
    route that sent that alert to this receiver. `priority` ranks the alerts
    that survive dedup (relay.alerts.priority).
    """

    receiver: str
    integration: str
    group: WebhookMessage
    repeat_intervals: tuple[timedelta, ...]
    give_up_after: timedelta
    priority: Priority = DEFAULT

    @property
    def lane(self) -> str:
        return f"{self.receiver}\x1f{key_part(self.group.groupKey)}"


# What a replay did: put back; no such dead letter; nothing left to send (resolved, or too old to know).
Replay = Literal["replayed", "missing", "resolved", "too_old"]
# What a cancel did: taken out of its lane; no pending notification of that id; being sent right now.
Cancel = Literal["cancelled", "missing", "in_flight"]


@dataclass(frozen=True)
class Claimed:
    notification: Notification
    give_up_at: float
    lease_until: float


@dataclass(frozen=True)
class Enqueued:
    """What enqueue did for one candidate: the notification written (if any alert survived) and counts.

    `claimed` is set when the notification was leased to the handoff's owner in the same transaction.
    """

    receiver: str
    notification_id: int | None
    alerts_enqueued: int
    alerts_deduplicated: int
    claimed: Claimed | None = None


@dataclass(frozen=True)
class Acted:
    """What writing a click's rows did: `refused` names the mark that already existed (a replayed request or a second
    click: nothing was written), else the rows written."""

    refused: str | None
    enqueued: list[Enqueued] = field(default_factory=list)


@dataclass(frozen=True)
class Handoff:
    """A dispatcher's offer to take new notifications straight from enqueue: no claim round trip, no poll.

    Only a notification at the head of its lane is handed off (order holds), at most `limit` of them and at
    most `room[receiver]` for a named receiver.
    """

    owner: str
    lease: float
    limit: int
    room: Mapping[str, int] = field(default_factory=dict)
    # Run on the event loop once the enqueue's rows are written, while their commit is on its way to disk (SQLite:
    # just before COMMIT, whose fsync leaves the loop free; PostgreSQL: while the statement is at the server): the
    # handed-off sends' own preparation (relay.outbox.put), so they start sending as soon as the commit returns.
    prepare: Callable[[], None] | None = field(default=None, compare=False)

    def take(self, taken: dict[str, int], receiver: str) -> bool:
        """Count one more for `receiver` if the offer allows it."""
        if sum(taken.values()) >= self.limit or taken.get(receiver, 0) >= self.room.get(receiver, self.limit):
            return False
        taken[receiver] = taken.get(receiver, 0) + 1
        return True


@dataclass(frozen=True)
class Claim:
    """Notifications handed to this worker, and when the next not-yet-due one becomes due (epoch seconds).

    `waits` names each destination whose bucket is out of tokens (its due lane heads, if any, stay unclaimed and
    untouched) with the seconds until its next token.
    """

    claimed: list[Claimed]
    next_due: float | None
    waits: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Attempt:
    started_at: float
    duration: float
    outcome: str  # delivered | retry | dead | deferred
    reason: str = ""
    detail: str = ""


@dataclass(frozen=True)
class OutboxStats:
    pending: dict[str, int] = field(default_factory=dict)
    oldest_pending_received_at: float | None = None
    dead: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class HeartbeatState:
    """What the store knows of one heartbeat (epoch seconds): relay's clock when it last arrived (None: never),
    since when it is watched (first watched, or watched again after no relay checked it for longer than its
    max_silence), since when it is missing (None: it is not), and, while missing, when it was last heard of before
    (its last arrival, or when relay began watching if none ever came)."""

    name: str
    last_seen: float | None
    watched_since: float
    missing_since: float | None
    heard_at: float | None = None


class Store(Protocol):
    async def open(self) -> None:
        """Connect and apply migrations."""

    async def close(self) -> None: ...

    async def release_leases(self) -> None:
        """Free leases a crashed process left behind (called by `relay serve` at start)."""

    async def ping(self) -> None:
        """Raise StoreUnavailable if the store cannot answer."""

    async def ready(self) -> None:
        """Raise StoreUnavailable if a webhook could not be accepted now: the store does not answer, or its last
        durable write failed (a full disk) and a write probe fails too. A store that answers reads but cannot
        commit must not look ready, or every webhook gets 503 while /readyz says 200."""

    async def enqueue(self, candidates: list[Candidate], received_at: float,
                      handoff: Handoff | None = None) -> list[Enqueued]:
        """Dedup and write notifications in one durable transaction (or raise StoreUnavailable, writing nothing;
        StoreRejected when the data itself cannot be stored); with a handoff, lease the new lane heads to its
        owner in that transaction."""

    async def claim(self, owner: str, limit: int, now: float, lease: float,
                    room: Mapping[str, int] | None = None, budgets: Mapping[str, Budget] | None = None) -> Claim:
        """Lease up to `limit` due lane heads, most severe first, then oldest; `room` caps how many more each named
        receiver may get. A receiver named in `budgets` gets one only with a token of its destination's bucket,
        taken in the same claim (so the most severe heads of a saturated destination get its tokens)."""

    async def spend(self, wanted: Mapping[Budget, int]) -> dict[str, Grant]:
        """Take up to `wanted[b]` tokens of each destination's bucket, for notifications an enqueue handed off;
        one bucket per destination for every process on this store."""

    async def release(self, owner: str, notification_ids: Sequence[int]) -> None:
        """Give leased notifications back to their lanes as they were (no attempt recorded): handed off, then no
        token for them."""

    async def complete(self, notification_id: int, owner: str, attempt: Attempt) -> None: ...

    async def retry_later(self, notification_id: int, owner: str, attempt: Attempt, next_attempt_at: float,
                          count_attempt: bool = True) -> None: ...

    async def dead_letter(self, notification_id: int, owner: str, attempt: Attempt) -> None: ...

    async def retry_now(self, receiver: str, now: float) -> int:
        """Make the receiver's backed-off retries due now (it answers again), except those waiting out a rate
        limit (its Retry-After or a token); returns how many."""

    async def replay(self, notification_id: int, now: float, forgotten_before: float = 0.0) -> Replay:
        """Put a dead letter back in its lane, minus firing alerts that must not be re-opened: those whose
        resolve was already notified, and all of them if it was received before `forgotten_before` (the
        retention horizon, past which relay no longer knows whether they resolved)."""

    async def stats(self, now: float) -> OutboxStats: ...

    async def history(self, query: HistoryFilter) -> list[dict[str, Any]]: ...

    async def detail(self, notification_id: int) -> dict[str, Any] | None:
        """One notification as history shows it, plus its alerts and every attempt; None if there is none."""

    async def cancel(self, notification_id: int, now: float, attempt: Attempt) -> Cancel:
        """Take a pending notification that is not being sent out of its lane for good (state `cancelled`, the
        attempt recorded); the lane's next one becomes due. Pruned like a delivered one."""

    async def purge(self, notification_id: int) -> bool:
        """Delete one dead letter and its attempts for good; False if there is no such dead letter."""

    async def prune(self, finished_before: float, marks_before: float) -> int:
        """Forget delivered and cancelled notifications (with their attempts) finished before `finished_before`,
        and dedup marks and message references older than `marks_before`; dead letters stay until replayed.
        Returns the number of notifications forgotten."""

    async def find_refs(self, receiver: str, keys: Sequence[str]) -> dict[str, str]:
        """The message references remembered for these alert keys (relay.channels.threads); unknown keys are absent."""

    async def remember_refs(self, receiver: str, keys: Sequence[str], ref: str) -> None:
        """Durably remember `ref` for each alert key; a later call for the same key replaces it."""

    async def storm_backlog(self, due_by: float) -> dict[str, int]:
        """Per receiver, how many pending notifications (not summaries) are due by `due_by`."""

    async def storms(self) -> list[StormState]:
        """Every open storm."""

    async def fold(self, plan: Fold) -> Folded | None:
        """In one transaction: open the storm (or check that `fold.storm` was not folded since), mark what waits and
        may be folded (relay.storms.fold.choose) delivered in a new summary notification, and write that summary;
        None when there is nothing to fold or another replica opened or folded the storm meanwhile."""

    async def storm_end(self, storm_id: int, folded_at: float, now: float, redraw: bool = False) -> Ended | None:
        """End the storm if it was not folded since `folded_at` (else another replica folded: None); with `redraw`,
        enqueue in the same transaction a copy of its last summary that redraws its message as over."""

    async def storm_view(self, summary_id: int, lane: str) -> StormView | None:
        """The storm of summary `summary_id` (in `lane`) and its alerts so far; None if the storm is forgotten."""

    async def storm_remember(self, storm_id: int, ref: str) -> None:
        """Durably remember where the storm's summary message is."""

    async def heartbeat_seen(self, names: Sequence[str], now: float) -> None:
        """A firing heartbeat alert arrived: its last-seen time becomes `now` (never goes back)."""

    async def heartbeats(self, watch: Mapping[str, float], now: float) -> list[HeartbeatState]:
        """Every stored heartbeat, after checking those in `watch` (name -> its max_silence in seconds) at `now`:
        one not stored yet is watched from `now`; one that no relay checked for longer than its max_silence (none
        was running to hear it) is watched again from `now`; each is marked checked at `now`. The clock is in the
        store, so a restart or a crash loop does not restart it (issue 20 #9). An empty `watch` only reads."""

    async def heartbeat_missing(self, name: str, silent_since: float, now: float,
                                notice: list[Candidate]) -> list[Enqueued] | None:
        """If the heartbeat is not missing and neither arrived nor was watched since `silent_since`, mark it missing
        since `now` (keeping when it was last heard of) and enqueue `notice` in the same transaction; None when it
        arrived meanwhile or another replica already did it (only one replica's notice is written)."""

    async def heartbeat_recovered(self, name: str, missing_since: float, now: float,
                                  notice: list[Candidate]) -> list[Enqueued] | None:
        """If the heartbeat is missing since `missing_since` and arrived after that, mark it no longer missing and
        enqueue `notice` in the same transaction; None when that is not so (or another replica did it)."""

    async def act(self, marks: Sequence[str], rows: Sequence[ActionRow], now: float,
                  handoff: Handoff | None = None) -> Acted:
        """Write each mark, then the rows (integration `action`, due now), in one transaction; a mark that exists
        already stops there (relay.actions.model: a replay or a double click). With a handoff, rows are leased to it."""

    async def watch_silence(self, watch: Watch, next_check: float) -> None:
        """Watch a silence from `next_check` on (a later call for the same silence replaces it)."""

    async def unwatch_silence(self, receiver: str, silence_id: str) -> None: ...

    async def watch_absent(self, receiver: str, silence_id: str, absent_since: float | None) -> None:
        """Remember since when the watched alert has been absent from an Alertmanager up long enough for that to
        count (None: it was seen, or the absence does not count)."""

    async def watches_due(self, now: float, next_check: float, limit: int) -> list[Watch]:
        """Forget watches whose silence ended by `now`; take up to `limit` due ones, each next asked at `next_check`
        (so one replica asks, not each)."""
    # -- escalation (relay.stages.escalation) -------------------------------------------------------

    async def arm_escalations(self, timers: Sequence[Timer], resolved: Sequence[Alert],
                              now: float) -> Resolved:
        """What a webhook means for escalations, in one durable transaction: arm `timers` (each unless that step of
        that episode is armed already, so a re-sent alert keeps its first clock and an acknowledged one stays
        acknowledged; but armed anew when the episode's resolve came since: firing again, it is a new page), and
        end what is left of the escalation of the `resolved` alerts (reason `resolved`)."""

    async def cancel_escalations(self, fingerprints: Sequence[str], reason: EscalationEnd, now: float) -> int:
        """Cancel every pending escalation step of the alerts with these fingerprints (Alertmanager's, as in the
        webhook), for `reason`, at `now`; returns how many steps were cancelled (0: nothing was left, e.g. already
        sent, cancelled or never armed). Steps already sent stay sent. The ones a later firing episode of the same
        alert arms are not affected. Idempotent: a second acknowledge cancels nothing more. Callers should go
        through relay.stages.escalation.cancel, which also logs and counts."""

    async def due_escalations(self, now: float, limit: int) -> list[DueTimer]:
        """Pending steps due at `now`, the earliest first."""

    async def escalate(self, ids: Sequence[int], now: float, notice: list[Candidate],
                       escalation: Escalation | None) -> list[Enqueued] | None:
        """If every step of `ids` is still pending, mark them sent and enqueue `notice` (its notifications marked as
        `escalation`; None for a mute's hold, relay.stages.mute) in one durable transaction; None when any of them
        is not pending any more (another replica sent it, or it was cancelled meanwhile): then nothing is written."""

    async def add_maintenance(self, matchers: Sequence[str], starts_at: float, ends_at: float, comment: str,
                              created_by: str, now: float, time_interval: str = "") -> MaintenanceWindow:
        """Store a maintenance window (durable when it returns; every replica reads it); with `time_interval`, one
        that mutes only while routes.yaml's interval of that name holds."""

    async def maintenance(self, now: float, everything: bool = False) -> list[MaintenanceWindow]:
        """The windows not over at `now` (every one ever made with `everything`), by start."""

    async def end_maintenance(self, window: int, now: float) -> MaintenanceWindow | None:
        """End a window now and make what it holds due (None: no such window, or it is over already)."""

    async def postpone_escalations(self, ids: Sequence[int], due_at: float) -> None:
        """Make pending steps (or a mute's holds) due at `due_at` instead: they came due while still muted, and
        are looked at again then, not on every beat (where they would crowd the steps that can go)."""

    async def told(self, pairs: Sequence[tuple[str, Episode]]) -> set[tuple[str, Episode]]:
        """Which (receiver, episode) pairs the dedup marks show were told the episode fired (relay.stages.mute: a
        resolve goes to a receiver whose firing was held only if it heard of the firing before)."""

    async def escalations_of(self, fingerprints: Sequence[str]) -> list[StepRecord]:
        """Every stored step of these alerts' escalations (any episode, any state), in the order they were armed."""

"""Who follows a room live: how many followers, and the display names they gave.

    Broker.subscribe / unsubscribe (event loop) --join / leave--> Presence (thread-safe)
    GET /rooms, GET /rooms/{room} (worker threads)  <--roster---  Presence
    PostgreSQL: PgListener shares this replica's rosters with the other replicas
                (NOTIFY chat_presence) and feeds theirs in (``receive``); a replica's entries
                expire unless it repeats them, so a replica that died stops being counted.

A follower may give a display name (validated against :data:`NAME_PATTERN`); one without is
counted, not named. A roster shows at most :data:`NAMES_SHOWN` distinct names.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

NAME_MAX = 32
NAMES_SHOWN = 20
# What a display name may hold: no control, format (zero-width, bidi) or separator
# characters anywhere, no white space at either end. The OpenAPI document holds the same
# pattern (chat/openapi.yaml, components.parameters.FollowerName); a test keeps them equal.
_HIDDEN = r"\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff"
NAME_PATTERN = rf"^[^\s{_HIDDEN}](?:[^{_HIDDEN}]*[^\s{_HIDDEN}])?$"
_NAME = re.compile(NAME_PATTERN)


def valid_name(name: str) -> bool:
    return len(name) <= NAME_MAX and _NAME.match(name) is not None


@dataclass(frozen=True)
class Roster:
    """A room's live followers: how many, and the distinct names they gave (sorted)."""

    count: int = 0
    names: tuple[str, ...] = ()

    def json(self) -> dict[str, Any]:
        return {"count": self.count, "names": list(self.names)}


EMPTY = Roster()


def _shown(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(names), key=lambda name: (name.casefold(), name))[:NAMES_SHOWN])


@dataclass
class _Followers:
    count: int = 0
    names: Counter[str] = field(default_factory=Counter)

    def roster(self) -> Roster:
        return Roster(self.count, _shown(self.names))


class Presence:
    """This replica's followers of each room plus what the other replicas reported."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.replica = uuid.uuid4().hex
        self.clock = clock
        self._lock = threading.Lock()
        self._local: dict[str, _Followers] = {}
        # replica -> room -> (its roster, when it expires unless repeated)
        self._remote: dict[str, dict[str, tuple[Roster, float]]] = {}
        self._changed_here: set[str] = set()
        self._on_change_here: list[Callable[[], None]] = []

    # -- this replica's followers (called on the event loop) -----------------------------------

    def join(self, room: str, name: str | None) -> None:
        with self._lock:
            followers = self._local.setdefault(room, _Followers())
            followers.count += 1
            if name:
                followers.names[name] += 1
            self._changed_here.add(room)
        self._tell_sharers()

    def leave(self, room: str, name: str | None) -> None:
        with self._lock:
            followers = self._local.get(room)
            if followers is None:
                return
            followers.count -= 1
            if name:
                followers.names[name] -= 1
                if followers.names[name] <= 0:
                    del followers.names[name]
            if followers.count <= 0:
                del self._local[room]
            self._changed_here.add(room)
        self._tell_sharers()

    # -- reading (any thread) -------------------------------------------------------------------

    def roster(self, room: str) -> Roster:
        return self.rosters([room])[room]

    def rosters(self, rooms: Iterable[str]) -> dict[str, Roster]:
        """Every replica's followers of each room (only those that have not expired)."""
        now = self.clock()
        with self._lock:
            answer = {}
            for room in rooms:
                count, names = 0, set()
                here = self._local.get(room)
                if here is not None:
                    count, names = here.count, set(here.names)
                for rooms_there in self._remote.values():
                    there = rooms_there.get(room)
                    if there is not None and there[1] > now:
                        count += there[0].count
                        names.update(there[0].names)
                answer[room] = Roster(count, _shown(names)) if count else EMPTY
            return answer

    # -- sharing with other replicas (the listener thread) --------------------------------------

    def on_change_here(self, callback: Callable[[], None]) -> None:
        """``callback()`` runs (on the caller's thread) whenever a local roster changes."""
        self._on_change_here.append(callback)

    def take_changed_here(self) -> dict[str, Roster]:
        """The local rosters that changed since the last call (EMPTY: nobody left here)."""
        with self._lock:
            changed, self._changed_here = self._changed_here, set()
            return {room: self._local_roster(room) for room in sorted(changed)}

    def here(self) -> dict[str, Roster]:
        with self._lock:
            return {room: followers.roster() for room, followers in self._local.items()}

    def receive(self, replica: str, rosters: Mapping[str, Roster], *, ttl: float) -> set[str]:
        """Takes another replica's rosters of some rooms; returns the rooms whose count or
        names changed."""
        if replica == self.replica:
            return set()
        expires = self.clock() + ttl
        changed = set()
        with self._lock:
            there = self._remote.setdefault(replica, {})
            for room, roster in rosters.items():
                before = there.get(room)
                if not roster.count:
                    there.pop(room, None)
                else:
                    there[room] = (roster, expires)
                if (before[0] if before else EMPTY) != roster:
                    changed.add(room)
            if not there:
                del self._remote[replica]
        return changed

    def forget(self, replica: str) -> set[str]:
        """A replica that left: its followers are no longer counted."""
        with self._lock:
            return set(self._remote.pop(replica, {}))

    def expire(self) -> set[str]:
        """Drops what replicas stopped repeating; returns the rooms that changed."""
        now = self.clock()
        changed = set()
        with self._lock:
            for replica, there in list(self._remote.items()):
                for room, (_, expires) in list(there.items()):
                    if expires <= now:
                        del there[room]
                        changed.add(room)
                if not there:
                    del self._remote[replica]
        return changed

    def _local_roster(self, room: str) -> Roster:
        followers = self._local.get(room)
        return followers.roster() if followers else EMPTY

    def _tell_sharers(self) -> None:
        for callback in self._on_change_here:
            callback()


# -- what replicas tell each other ----------------------------------------------------------------

NOTICE_BYTES = 7000  # PostgreSQL refuses NOTIFY payloads of 8000 bytes and more


@dataclass(frozen=True)
class PresenceNotice:
    """One replica's rosters of some rooms (``ttl``: how long they count unless repeated), a
    request to repeat them all at once (``hello``: a replica (re)started listening), or its
    goodbye (``bye``)."""

    replica: str
    rosters: Mapping[str, Roster] = field(default_factory=dict)
    ttl: float = 0.0
    hello: bool = False
    bye: bool = False


def encode_notices(replica: str, rosters: Mapping[str, Roster], *, ttl: float) -> Iterator[str]:
    """The rosters as payloads of at most NOTICE_BYTES each (a room's roster is never split)."""
    batch: dict[str, list[Any]] = {}
    size = 0
    for room, roster in rosters.items():
        entry = [roster.count, list(roster.names)]
        entry_size = len(orjson.dumps({room: entry}))
        if batch and size + entry_size > NOTICE_BYTES - 100:
            yield _payload({"replica": replica, "ttl": ttl, "rooms": batch})
            batch, size = {}, 0
        batch[room] = entry
        size += entry_size
    if batch:
        yield _payload({"replica": replica, "ttl": ttl, "rooms": batch})


def hello_notice(replica: str) -> str:
    return _payload({"replica": replica, "hello": True})


def bye_notice(replica: str) -> str:
    return _payload({"replica": replica, "bye": True})


def decode_notice(payload: str) -> PresenceNotice | None:
    """The notice, or None when the payload is not one (never raises)."""
    try:
        body = orjson.loads(payload)
        replica = body["replica"]
        if not isinstance(replica, str) or not replica:
            return None
        if body.get("hello") is True:
            return PresenceNotice(replica, hello=True)
        if body.get("bye") is True:
            return PresenceNotice(replica, bye=True)
        ttl = float(body["ttl"])
        rosters = {
            room: _roster(entry) for room, entry in body["rooms"].items() if isinstance(room, str)
        }
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None
    return PresenceNotice(replica, rosters, ttl=min(max(ttl, 0.0), 3600.0))


def _roster(entry: Any) -> Roster:
    count, names = entry
    if not isinstance(count, int) or count < 0 or not isinstance(names, list):
        raise ValueError("not a roster")
    return Roster(count, _shown(n for n in names if isinstance(n, str) and valid_name(n)))


def _payload(body: dict[str, Any]) -> str:
    return orjson.dumps(body).decode()

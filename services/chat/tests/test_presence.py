"""Who is live in a room: the roster's arithmetic, what replicas tell each other, and the
broker telling presence followers when a roster changes."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import yaml

from chat import presence as presence_module
from chat.live import PRESENCE, Broker, Follower
from chat.presence import (
    EMPTY,
    NAME_PATTERN,
    NAMES_SHOWN,
    NOTICE_BYTES,
    Presence,
    PresenceNotice,
    Roster,
    bye_notice,
    decode_notice,
    encode_notices,
    hello_notice,
    valid_name,
)
from chat.settings import SERVICE_DIR


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_roster_counts_every_follower_and_names_each_name_once() -> None:
    presence = Presence()
    for name in ("bob", "ann", None, "bob", "Carl"):
        presence.join("lobby", name)

    assert presence.roster("lobby") == Roster(5, ("ann", "bob", "Carl"))
    assert presence.roster("cellar") == EMPTY


def test_a_follower_leaving_is_no_longer_counted_or_named() -> None:
    presence = Presence()
    presence.join("lobby", "ann")
    presence.join("lobby", "bob")
    presence.join("lobby", "bob")

    presence.leave("lobby", "bob")
    assert presence.roster("lobby") == Roster(2, ("ann", "bob"))  # the other bob is still here
    presence.leave("lobby", "bob")
    assert presence.roster("lobby") == Roster(1, ("ann",))
    presence.leave("lobby", "ann")
    assert presence.roster("lobby") == EMPTY
    assert presence.here() == {}  # nothing kept for an empty room

    presence.leave("lobby", "ann")  # leaving twice changes nothing
    assert presence.roster("lobby") == EMPTY


def test_a_roster_names_a_bounded_number() -> None:
    presence = Presence()
    for n in range(NAMES_SHOWN + 15):
        presence.join("lobby", f"reader {n:02}")

    roster = presence.roster("lobby")

    assert roster.count == NAMES_SHOWN + 15
    assert roster.names == tuple(f"reader {n:02}" for n in range(NAMES_SHOWN))


def test_other_replicas_followers_count_until_they_expire() -> None:
    clock = Clock()
    presence = Presence(clock=clock)
    presence.join("lobby", "ann")

    changed = presence.receive("other", {"lobby": Roster(2, ("bob",))}, ttl=30)

    assert changed == {"lobby"}
    assert presence.roster("lobby") == Roster(3, ("ann", "bob"))
    assert presence.receive("other", {"lobby": Roster(2, ("bob",))}, ttl=30) == set()
    clock.now += 29
    assert presence.rosters(["lobby"])["lobby"].count == 3
    clock.now += 2  # not repeated in time: that replica is gone
    assert presence.roster("lobby") == Roster(1, ("ann",))
    assert presence.expire() == {"lobby"}


def test_a_replica_reporting_nobody_or_saying_goodbye_is_no_longer_counted() -> None:
    presence = Presence()
    presence.receive("a", {"lobby": Roster(1, ("ann",)), "den": Roster(1, ())}, ttl=30)
    presence.receive("b", {"lobby": Roster(1, ("bob",))}, ttl=30)

    assert presence.receive("a", {"lobby": EMPTY}, ttl=30) == {"lobby"}
    assert presence.roster("lobby") == Roster(1, ("bob",))
    assert presence.forget("a") == {"den"}
    assert presence.roster("den") == EMPTY
    assert presence.receive(presence.replica, {"den": Roster(5, ())}, ttl=30) == set()  # itself
    assert presence.roster("den") == EMPTY


def test_changes_here_are_handed_to_the_sharer_once() -> None:
    presence = Presence()
    told: list[int] = []
    presence.on_change_here(lambda: told.append(1))
    presence.join("lobby", "ann")
    presence.join("den", None)
    presence.leave("den", None)

    assert presence.take_changed_here() == {"den": EMPTY, "lobby": Roster(1, ("ann",))}
    assert presence.take_changed_here() == {}
    assert len(told) == 3


# -- notices between replicas -------------------------------------------------------------------


def test_rosters_travel_in_notices_postgresql_accepts() -> None:
    rosters = {
        f"room-{n}": Roster(n + 1, tuple(f"{'é' * 30}{m:02}" for m in range(NAMES_SHOWN)))
        for n in range(40)
    }

    payloads = list(encode_notices("replica-a", rosters, ttl=30))

    assert len(payloads) > 1
    assert all(len(payload.encode()) < NOTICE_BYTES for payload in payloads)
    received: dict[str, Roster] = {}
    for payload in payloads:
        notice = decode_notice(payload)
        assert notice is not None
        assert (notice.replica, notice.ttl) == ("replica-a", 30)
        received.update(notice.rosters)
    assert received == rosters


def test_hello_and_goodbye_notices() -> None:
    assert decode_notice(hello_notice("a")) == PresenceNotice("a", hello=True)
    assert decode_notice(bye_notice("a")) == PresenceNotice("a", bye=True)


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "[]",
        '{"replica": 7, "ttl": 1, "rooms": {}}',
        '{"replica": "a", "rooms": {}}',
        '{"replica": "a", "ttl": 1, "rooms": {"lobby": [-1, []]}}',
        '{"replica": "a", "ttl": 1, "rooms": {"lobby": ["2", []]}}',
        '{"replica": "a", "ttl": 1, "rooms": {"lobby": [2]}}',
    ],
)
def test_a_notice_that_is_not_one_is_ignored(payload: str) -> None:
    assert decode_notice(payload) is None


def test_names_in_a_notice_are_checked_like_names_given_here() -> None:
    payload = orjson.dumps(
        {"replica": "a", "ttl": 9999, "rooms": {"lobby": [3, ["ann", "x" * 33, "a\u202eb"]]}}
    ).decode()

    notice = decode_notice(payload)

    assert notice is not None
    assert notice.rosters == {"lobby": Roster(3, ("ann",))}
    assert notice.ttl == 3600  # bounded too


# -- display names ------------------------------------------------------------------------------


def test_the_api_document_holds_the_name_rule_the_code_applies() -> None:
    document = yaml.safe_load((SERVICE_DIR / "openapi.yaml").read_text(encoding="utf-8"))
    schema = document["components"]["parameters"]["FollowerName"]["schema"]

    assert schema["pattern"] == NAME_PATTERN
    assert schema["maxLength"] == presence_module.NAME_MAX


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("ann", True),
        ("Ann-Marie O'Neil", True),
        ("Zoë 李", True),
        ("a", True),
        ("x" * 32, True),
        ("x" * 33, False),
        ("", False),
        (" ann", False),
        ("ann ", False),
        ("\u00a0ann", False),  # no-break space
        ("a\nb", False),
        ("a\tb", False),
        ("a\u202eb", False),  # right-to-left override
        ("a\u200bb", False),  # zero-width space
        ("a\u2028b", False),  # line separator
        ("a\x85b", False),  # next line (C1)
        ("\ufeffann", False),
    ],
)
def test_a_display_name_is_bounded_and_plain(name: str, valid: bool) -> None:
    assert valid_name(name) is valid


# -- the broker tells presence followers --------------------------------------------------------


def queued(follower: Follower) -> list[Any]:
    items = []
    while not follower.queue.empty():
        item = follower.queue.get_nowait()
        items.append("PRESENCE" if item is PRESENCE else item["id"])
    return items


def test_followers_that_asked_are_told_once_per_burst_of_changes() -> None:
    async def scenario() -> dict[str, Any]:
        broker = Broker(buffer=8, max_followers=8)
        broker.bind(asyncio.get_running_loop())
        watcher = broker.subscribe("lobby", after=0, name="ann", wants_presence=True)
        quiet = broker.subscribe("lobby", after=0)
        elsewhere = broker.subscribe("den", after=0, wants_presence=True)
        await asyncio.sleep(0.3)
        for follower in (watcher, elsewhere):
            queued(follower)  # what their own joining caused
            follower.presence_due = False

        joined = [broker.subscribe("lobby", after=0, name=f"n{n}") for n in range(3)]
        broker.unsubscribe(joined[0])
        await asyncio.sleep(0.3)
        return {
            "watcher": queued(watcher),
            "quiet": queued(quiet),
            "elsewhere": queued(elsewhere),
            "roster": broker.presence.roster("lobby"),
        }

    assert asyncio.run(scenario()) == {
        "watcher": ["PRESENCE"],
        "quiet": [],
        "elsewhere": [],
        "roster": Roster(4, ("ann", "n1", "n2")),
    }


def test_a_follower_whose_queue_is_full_is_still_told_after_its_next_message() -> None:
    async def scenario() -> tuple[list[Any], bool, bool]:
        broker = Broker(buffer=1, max_followers=8)
        broker.bind(asyncio.get_running_loop())
        watcher = broker.subscribe("lobby", after=0, wants_presence=True)
        await asyncio.sleep(0.3)
        queued(watcher)
        watcher.presence_due = False
        broker.publish({"id": 1, "room": "lobby"})  # fills its queue
        await asyncio.sleep(0)
        broker.subscribe("lobby", after=0)
        await asyncio.sleep(0.3)
        return queued(watcher), watcher.presence_due, watcher.cut_off

    # The stream sends the roster after that message (chat.handlers._events).
    assert asyncio.run(scenario()) == ([1], True, False)


def test_cut_off_and_closed_followers_leave_the_roster() -> None:
    async def scenario() -> tuple[Roster, Roster]:
        broker = Broker(buffer=1, max_followers=8)
        broker.bind(asyncio.get_running_loop())
        broker.subscribe("lobby", after=0, name="slow")
        broker.subscribe("den", after=0, name="ann")
        broker.publish({"id": 1, "room": "lobby"})
        broker.publish({"id": 2, "room": "lobby"})  # more than its buffer: cut off
        await asyncio.sleep(0)
        after_cut_off = broker.presence.roster("lobby")
        broker.close()
        await asyncio.sleep(0)
        return after_cut_off, broker.presence.roster("den")

    assert asyncio.run(scenario()) == (EMPTY, EMPTY)

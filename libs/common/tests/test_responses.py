from datetime import UTC, datetime, timedelta, timezone

from chassis.responses import offset_page, rfc3339


def test_rfc3339_is_utc_with_z_and_treats_naive_values_as_utc() -> None:
    assert rfc3339(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    assert rfc3339(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05Z"
    paris = timezone(timedelta(hours=1))
    assert rfc3339(datetime(2026, 1, 2, 4, 4, 5, tzinfo=paris)) == "2026-01-02T03:04:05Z"


def test_offset_page_points_at_the_next_page_until_the_last() -> None:
    first = offset_page([1, 2], total=5, limit=2, offset=0)
    last = offset_page([5], total=5, limit=2, offset=4)
    assert first == {"items": [1, 2], "total": 5, "limit": 2, "offset": 0, "next_offset": 2}
    assert last["next_offset"] is None
    assert offset_page([], total=0, limit=20, offset=0)["next_offset"] is None

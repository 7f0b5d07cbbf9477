"""The consumption-bounded trim point of a stream (gateway/stream_trim.py)."""

import pytest

from gateway.stream_trim import format_id, parse_id, trim_point


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        pytest.param([], None, id="no-group-no-trim"),
        pytest.param([{"last_delivered": (50, 3), "oldest_pending": None}], (50, 4),
                     id="all-acked-trims-through-last-delivered"),
        pytest.param([{"last_delivered": (50, 3), "oldest_pending": (40, 0)}], (40, 0),
                     id="oldest-pending-is-kept"),
        pytest.param([{"last_delivered": (0, 0), "oldest_pending": None}], (0, 1),
                     id="nothing-read-trims-nothing"),
        pytest.param([{"last_delivered": (90, 0), "oldest_pending": None},
                      {"last_delivered": (20, 5), "oldest_pending": None}], (20, 6),
                     id="slowest-group-bounds-it"),
        pytest.param([{"last_delivered": (90, 0), "oldest_pending": (10, 1)},
                      {"last_delivered": (20, 5), "oldest_pending": None}], (10, 1),
                     id="pending-of-any-group-bounds-it"),
    ],
)
def test_trim_point(groups: list[dict[str, object]], expected: tuple[int, int] | None) -> None:
    assert trim_point(groups) == expected  # type: ignore[arg-type]


def test_ids_round_trip_and_order_numerically() -> None:
    assert parse_id(b"1700000000000-12") == (1700000000000, 12)
    assert format_id(parse_id("5-0")) == "5-0"
    assert parse_id("10-0") > parse_id("9-99")  # not string order

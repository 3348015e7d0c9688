"""The tests' polling helper: sync and async predicates, the value returned, and a failure that says what and saw."""

from __future__ import annotations

import pytest

from tests.support.polling import until


async def test_a_sync_predicate_is_polled_until_truthy_and_its_value_returned() -> None:
    calls = []

    def third_time() -> str:
        calls.append(1)
        return "ready" if len(calls) >= 3 else ""

    assert await until(third_time, "the third call", pause_s=0) == "ready"
    assert len(calls) == 3


async def test_an_async_predicate_is_awaited() -> None:
    calls = []

    async def second_time() -> bool:
        calls.append(1)
        return len(calls) >= 2

    assert await until(second_time, pause_s=0) is True


async def test_a_wait_that_never_ends_fails_with_what_it_waited_for_and_the_last_value() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"waited 0.05s for the answer; last value seen: 0"):
        await until(lambda: 0, "the answer", limit_s=0.05)


async def test_without_a_description_the_failure_names_the_predicate_source() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"lambda: \[\] == \[1\]"):
        await until(lambda: [] == [1], limit_s=0.05)

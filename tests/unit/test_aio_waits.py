"""Waiting with a limit must never swallow a cancellation (a watch whose reader hung for good on 3.11).

With ``asyncio.wait_for`` in place of the helpers, the first two tests fail on Python 3.11.
"""

from __future__ import annotations

import asyncio

import pytest

from db._aio import keep_cancellation, wait_event, wait_future


async def test_a_cancel_that_lands_as_the_event_is_set_still_cancels() -> None:
    event = asyncio.Event()
    waiter = asyncio.create_task(wait_event(event, 3600))
    await asyncio.sleep(0)  # the waiter is parked on the event
    event.set()
    waiter.cancel()  # same loop turn: asyncio.wait_for on 3.11 returned normally here
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_a_cancel_that_lands_as_the_future_resolves_still_cancels() -> None:
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    waiter = asyncio.create_task(wait_future(future, 3600))
    await asyncio.sleep(0)
    future.set_result("approved")
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert future.result() == "approved"  # the answer itself is kept for whoever asks next


async def test_the_limit_runs_out_without_touching_the_event_or_future() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    assert await wait_future(future, 0.01) is False
    assert not future.cancelled()
    event.set()
    future.set_result(1)
    assert await wait_event(event, 0.01) is True
    assert await wait_future(future, 0.01) is True


async def test_a_cancellation_a_library_lost_is_raised_again() -> None:
    reply: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def library_call() -> str:  # waits as the SurrealDB ws SDK waits for a reply
        return await asyncio.wait_for(reply, 30)

    caller = asyncio.create_task(keep_cancellation(library_call()))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    reply.set_result("rows")
    caller.cancel()  # lands as the reply arrives: wait_for (3.11) returns "rows" and forgets the cancel
    with pytest.raises(asyncio.CancelledError):
        await caller


async def test_a_call_made_while_already_cancelling_is_left_alone() -> None:
    # Clean-up after a cancellation (a watch killing its live query) still gets its answer.
    async def cleanup() -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return await keep_cancellation(asyncio.sleep(0, "killed"))
        return "not cancelled"

    task = asyncio.create_task(cleanup())
    await asyncio.sleep(0)
    task.cancel()
    assert await task == "killed"

from __future__ import annotations

import sys
import threading
import time

from helpers import wait_until

from memento.gate import RequestGate


def test_reload_waits_for_open_responses_of_other_threads():
    gate = RequestGate()
    entered, release = threading.Event(), threading.Event()
    order = []

    def request():
        token = gate.enter()
        entered.set()
        release.wait(5)
        order.append("response closed")
        gate.leave(token)

    thread = threading.Thread(target=request)
    thread.start()
    entered.wait(5)
    reloader = threading.Thread(target=lambda: _reload(gate, order))
    reloader.start()
    time.sleep(0.05)
    assert order == []
    release.set()
    thread.join(5)
    reloader.join(5)
    assert order == ["response closed", "reloaded"]


def _reload(gate, order, timeout=5.0):
    with gate.exclusive(timeout):
        order.append("reloaded")


def test_new_requests_wait_until_the_reload_is_done():
    gate = RequestGate()
    in_reload, finish = threading.Event(), threading.Event()
    order = []

    def reload():
        with gate.exclusive(5):
            in_reload.set()
            finish.wait(5)
            order.append("reloaded")

    reloader = threading.Thread(target=reload)
    reloader.start()
    in_reload.wait(5)
    requester = threading.Thread(target=lambda: (gate.leave(gate.enter()), order.append("request")))
    requester.start()
    time.sleep(0.05)
    assert order == []
    finish.set()
    reloader.join(5)
    requester.join(5)
    assert order == ["reloaded", "request"]


def test_own_open_responses_are_not_waited_for():
    gate = RequestGate()
    token = gate.enter()
    started = time.monotonic()
    with gate.exclusive(5):
        pass
    assert time.monotonic() - started < 1
    gate.leave(token)


def test_drain_timeout_bounds_the_wait(caplog):
    gate = RequestGate()
    opened = threading.Event()
    done = threading.Event()

    def stuck():
        token = gate.enter()
        opened.set()
        done.wait(5)
        gate.leave(token)

    thread = threading.Thread(target=stuck)
    thread.start()
    opened.wait(5)
    started = time.monotonic()
    with gate.exclusive(0.2):
        waited = time.monotonic() - started
    done.set()
    thread.join(5)
    assert 0.15 < waited < 2
    assert "still open" in caplog.text


def test_response_closed_in_another_thread_counts_out():
    gate = RequestGate()
    token = gate.enter()
    closer = threading.Thread(target=gate.leave, args=(token,))
    closer.start()
    closer.join(5)
    wait_until(lambda: gate.open_responses == 0, what="the response to count out")
    with gate.exclusive(0.5):
        pass


def _close_at_once(threads: int) -> tuple[int, list[BaseException], int]:
    """Close one response from ``threads`` threads released together; returns
    how often the application's close() ran, the errors, the responses left open."""
    from memento.base import closing

    gate = RequestGate()
    token = gate.enter()
    closes: list[int] = []
    errors: list[BaseException] = []

    class Body(list):
        def close(self) -> None:
            closes.append(1)

    response = closing(Body([b"x"]), lambda: gate.leave(token))
    start = threading.Barrier(threads)

    def close() -> None:
        start.wait(5)
        try:
            response.close()
        except BaseException as exc:  # leaving the gate twice raises
            errors.append(exc)

    workers = [threading.Thread(target=close) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(5)
    return len(closes), errors, gate.open_responses


def test_response_closed_by_several_threads_at_once_is_closed_once():
    # switch threads as often as possible, so that a race would show
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(200):
            assert _close_at_once(8) == (1, [], 0)
    finally:
        sys.setswitchinterval(previous)


def test_an_idle_reload_claims_the_gate_once_the_last_response_closes():
    gate = RequestGate()
    token = gate.enter()  # a response left open
    claimed: list[bool] = []

    def reload_ahead() -> None:
        with gate.exclusive(5, idle=True) as holds:
            claimed.append(holds and gate._open == 0)

    reloader = threading.Thread(target=reload_ahead)
    reloader.start()
    wait_until(lambda: gate._idle_waiters == 1, what="the reload to wait for the gate")
    gate.leave(gate.enter())  # requests go on while it waits
    assert claimed == []
    gate.leave(token)
    reloader.join(5)
    assert claimed == [True]


def test_an_idle_reload_gives_up_when_a_response_stays_open():
    gate = RequestGate()
    opened: list[int] = []
    other = threading.Thread(target=lambda: opened.append(gate.enter()))
    other.start()
    other.join(5)
    with gate.exclusive(0.1, idle=True) as holds:
        assert holds is False
        gate.leave(gate.enter())  # not held: requests are not kept out
    gate.leave(opened[0])

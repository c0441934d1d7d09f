"""backend_hooks.pusher.handoff.SerialQueue on a real thread pool: order kept per queue, one task
per queue at a time, no item lost to the race between a put and a task's end."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from backend_hooks.pusher.handoff import SerialQueue


def test_items_are_processed_in_order_by_one_task_at_a_time() -> None:
    seen: list[int] = []
    running = 0
    overlap = []
    guard = threading.Lock()

    def process(batch: list[int]) -> None:
        nonlocal running
        with guard:
            running += 1
            overlap.append(running)
        time.sleep(0.0005)
        seen.extend(batch)
        with guard:
            running -= 1

    with ThreadPoolExecutor(4) as pool:
        queue: SerialQueue[int] = SerialQueue(pool, process)
        for i in range(2000):
            queue.put(i)
            if i % 97 == 0:
                time.sleep(0.001)  # let tasks end and restart between puts
        deadline = time.monotonic() + 60
        while len(seen) < 2000 and time.monotonic() < deadline:
            time.sleep(0.005)
    assert seen == list(range(2000))
    assert max(overlap) == 1


def test_puts_from_many_threads_lose_nothing() -> None:
    seen: list[tuple[int, int]] = []

    def process(batch: list[tuple[int, int]]) -> None:
        seen.extend(batch)

    with ThreadPoolExecutor(2) as pool:
        queue: SerialQueue[tuple[int, int]] = SerialQueue(pool, process)

        def producer(k: int) -> None:
            for i in range(3000):
                queue.put((k, i))

        threads = [threading.Thread(target=producer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        deadline = time.monotonic() + 60
        while len(seen) < 12000 and time.monotonic() < deadline:
            time.sleep(0.005)
    assert len(seen) == 12000
    for k in range(4):  # each producer's items in its own order
        assert [i for kk, i in seen if kk == k] == list(range(3000))
    assert queue.depth == 0

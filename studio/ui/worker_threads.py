"""The threads the app's thread workers run on: daemon threads, which quitting does not wait for.

Textual runs a thread worker on its event loop's default executor, and when the app ends `asyncio.run`
joins that executor's threads. A worker blocked in a read (a dataset on a network mount that hangs, a
FIFO, a big file still being read) or a chat answer still generating then held the terminal after `q`:
the screen cleared, and the shell came back only when the read ended. Everything such a worker does is
for the screen, which has gone; what must not be lost (an export, a training run) runs in its own process.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable


class WorkerThreads(ThreadPoolExecutor):
    """Each task on a daemon thread of its own; shutting down does not wait for them. (A ThreadPoolExecutor
    by type, which asyncio requires of a default executor; none of its pool is used.)"""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as e:  # handed to whoever awaits the future, as the pool would
                future.set_exception(e)
            else:
                future.set_result(result)

        threading.Thread(target=run, name="studio-worker", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to wait for: the threads are daemons, ended with the process."""

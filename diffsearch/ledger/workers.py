"""``--workers N``: N processes on this machine evaluate trials; this one is the N-th.

Every job means the same by it: N - 1 spawned processes join the study (as ``diffsearch worker`` would
from another machine) while this process searches and evaluates too. Each gets an even share of the
cores' threads.
"""

from __future__ import annotations

import multiprocessing
from typing import Callable


def start_workers(workers: int, target: Callable, args: tuple) -> list:
    """Start ``workers - 1`` processes running ``target(*args, threads)``."""
    if workers <= 1:
        return []
    import torch

    threads = max(1, torch.get_num_threads() // workers)
    torch.set_num_threads(threads)
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools and locks
    processes = [context.Process(target=target, args=(*args, threads), daemon=True) for _ in range(workers - 1)]
    for process in processes:
        process.start()
    return processes


def stop_workers(processes: list, grace: float = 30) -> None:
    """Wait ``grace`` seconds for workers to leave on their own (the job is over), then end them."""
    for process in processes:
        process.join(timeout=grace)
        if process.is_alive():
            process.terminate()
            process.join()

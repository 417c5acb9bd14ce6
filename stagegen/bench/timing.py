"""Interleaved timing: every contender timed in turn in each round, medians over rounds.

Interleaving spreads the machine's background noise (other processes, frequency changes)
over all contenders alike; the ratio of two contenders is taken within each round and the
median of those ratios is reported, which is steadier than a ratio of medians on a busy
machine.
"""

from __future__ import annotations

import statistics
import time
import timeit
from dataclasses import dataclass, field


@dataclass
class Contender:
    name: str
    fn: object  # the callable
    args: tuple  # its positional arguments, passed as written (no unpacking in the loop)

    def timer(self) -> timeit.Timer:
        names = [f"a{i}" for i in range(len(self.args))]
        namespace = {"fn": self.fn, **dict(zip(names, self.args))}
        return timeit.Timer(f"fn({', '.join(names)})", globals=namespace)


@dataclass
class Timings:
    """Seconds per call: every round's figure for every contender."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    number: dict[str, int] = field(default_factory=dict)  # calls per batch
    # The same batches on this process's CPU clock: unlike the wall clock, it does not count
    # the time other work on the machine took the processor away.
    cpu_samples: dict[str, list[float]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def cpu_median(self, name: str) -> float:
        return statistics.median(self.cpu_samples[name])

    def ratio(self, name: str, reference: str) -> float:
        """Median over rounds of (name's time / reference's time) in the same round."""
        pairs = zip(self.samples[name], self.samples[reference])
        return statistics.median(a / b for a, b in pairs)


def calibrate(timer: timeit.Timer, batch: float) -> int:
    """Calls per batch so that one batch takes about ``batch`` seconds (at least one call)."""
    number = 1
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= batch / 4 or number >= 10**7:
            break
        number *= 10 if elapsed < batch / 40 else 2
    return max(1, int(number * batch / max(elapsed, 1e-9)))


def interleaved(contenders: list[Contender], rounds: int, batch: float) -> Timings:
    """Time every contender ``rounds`` times, in a rotating order, ``batch`` seconds a turn."""
    timers = {c.name: c.timer() for c in contenders}
    result = Timings()
    for c in contenders:
        timers[c.name].timeit(1)  # warm up: first-call costs (caches, lazy imports)
        result.number[c.name] = calibrate(timers[c.name], batch)
        result.samples[c.name] = []
        result.cpu_samples[c.name] = []
    names = [c.name for c in contenders]
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            n = result.number[name]
            cpu = time.process_time()
            result.samples[name].append(timers[name].timeit(n) / n)
            result.cpu_samples[name].append((time.process_time() - cpu) / n)
    return result


def once(fn, *args, repeat: int = 1):
    """(median seconds, last result) of ``repeat`` calls of fn(*args)."""
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times), value

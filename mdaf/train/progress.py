"""A small progress bar on stderr: step count, samples per second and a running mean of the loss.

Redraws at most every ``interval`` seconds. On a terminal it rewrites one line; elsewhere (logs,
CI) it prints a plain line at most every ``log_interval`` seconds so logs stay short.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    def __init__(
        self,
        total: int,
        desc: str = "",
        *,
        stream: TextIO | None = None,
        enabled: bool = True,
        interval: float = 0.2,
        log_interval: float = 15.0,
        width: int = 24,
    ) -> None:
        self.total = max(int(total), 0)
        self.desc = desc
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if self.tty else log_interval
        self.width = width
        self.count = 0
        self.samples = 0
        self.loss_ema: float | None = None
        self.start = time.perf_counter()
        self._last_draw = float("-inf")
        self._drawn_count = -1

    def update(self, steps: int = 1, *, samples: int = 0, loss: float | None = None) -> None:
        self.count += steps
        self.samples += samples
        if loss is not None:
            # a running mean, exponentially weighted over ~50 steps: readable, still reacts within an epoch
            self.loss_ema = loss if self.loss_ema is None else 0.98 * self.loss_ema + 0.02 * loss
        now = time.perf_counter()
        if self.enabled and (now - self._last_draw >= self.interval or self.count >= self.total):
            self._last_draw = now
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.perf_counter()) - self.start, 1e-9)
        rate = self.samples / elapsed
        frac = self.count / self.total if self.total else 1.0
        filled = int(round(frac * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        eta = (self.total - self.count) * elapsed / self.count if self.count else 0.0
        loss = f" loss (running mean) {self.loss_ema:.4f}" if self.loss_ema is not None else ""
        return (
            f"{self.desc} [{bar}] {self.count}/{self.total} {rate:,.0f} samples/s{loss}"
            f" {elapsed:.0f}s<{eta:.0f}s"
        )

    def _draw(self, now: float) -> None:
        text = self.line(now)
        self._drawn_count = self.count
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Draw the final state once (if not already on screen) and end the line."""
        if not self.enabled:
            return
        if self._drawn_count != self.count:
            self._draw(time.perf_counter())
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

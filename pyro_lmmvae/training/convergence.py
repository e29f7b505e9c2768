"""When a fit has converged: no real improvement of the objective over a window of steps.

``fit()`` without ``max_epochs`` trains until the monitored objective (the validation objective
when validation rows are given, the training objective otherwise) stops improving. The rule
compares the mean objective over the last window of epochs with the window before it:

* the improvement, in nats over the whole monitored data (the per-row objective times the
  number of rows), must exceed ``tol`` (default 0.1 nats: a tenth of the log-likelihood
  difference that a likelihood-ratio test would notice);
* and it must exceed twice its Monte Carlo standard error, estimated from the spread of the
  objective within the windows (a noisy objective that has stopped improving only wanders).

A window holds at least ``min_steps`` optimizer steps (and 5 epochs), so that a fit of few
batches per epoch is judged over as many parameter updates as one of many. The fit stops at the
first window without improvement, or at the cap (``max_epochs``), which the history records
and a warning reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Convergence"]


@dataclass
class Convergence:
    """A windowed stopping rule on a per-row objective (lower is better).

    Parameters
    ----------
    n_rows : int
        Rows of the monitored data; the per-row objective times ``n_rows`` is in total nats.
    steps_per_epoch : int
        Optimizer steps per epoch.
    tol : float, default 0.1
        Smallest improvement (total nats) of a window's mean that counts.
    min_steps : int, default 200
        Smallest number of optimizer steps in a window.
    """

    n_rows: int
    steps_per_epoch: int
    tol: float = 0.1
    min_steps: int = 200

    @property
    def window(self) -> int:
        """Epochs per window."""
        return max(5, math.ceil(self.min_steps / max(1, self.steps_per_epoch)))

    def converged(self, objective: list[float]) -> bool:
        """Whether the objective's last window improved on the one before by too little."""
        w = self.window
        if len(objective) < 2 * w:
            return False
        before, last = objective[-2 * w : -w], objective[-w:]
        if not all(math.isfinite(v) for v in before + last):
            return False
        improvement = (_mean(before) - _mean(last)) * self.n_rows
        noise = math.sqrt((_var(before) + _var(last)) / w) * self.n_rows
        return improvement < max(self.tol, 2.0 * noise)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _var(values: list[float]) -> float:
    """Spread around a straight line (a steady trend within a window is not noise)."""
    n = len(values)
    if n < 3:
        return 0.0
    xs = range(n)
    mx, my = (n - 1) / 2, _mean(values)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, values, strict=True)) / sxx
    residuals = [y - my - slope * (x - mx) for x, y in zip(xs, values, strict=True)]
    return sum(r * r for r in residuals) / (n - 2)

"""Progress display for long work (rich), switched off with ``--quiet``.

Training epochs and sweep rows each get a bar. Inside :class:`PlanProgress` (``robench run``)
they join one shared display under the plan's overall bar, instead of opening a second live
display (rich allows one at a time).
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

console = Console(stderr=True)
_shared: Progress | None = None  # the plan's display while a PlanProgress is open


def _progress(transient: bool, counted: bool = True) -> Progress:
    """A display of bars; ``counted``: show done/total (images, batches), else a percentage (a plan's weighted cost)."""
    amount = MofNCompleteColumn() if counted else TaskProgressColumn()
    return Progress(TextColumn("{task.description}"), BarColumn(), amount, TextColumn("{task.fields[detail]}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=transient)


class _Bars:
    """Shows one task at a time (the previous one is hidden), with images/s."""

    def __init__(self, enabled: bool, transient: bool):
        self.enabled = enabled
        self._owns = enabled and _shared is None
        self._progress = (_progress(transient) if self._owns else _shared) if enabled else None
        self._task = None
        self._images, self._t0 = 0, time.perf_counter()

    def __enter__(self):
        if self._owns:
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._owns:
            self._progress.__exit__(*exc)
        elif self._progress is not None and self._task is not None:
            self._progress.remove_task(self._task)

    def _start(self, description: str, total: int) -> None:
        self._images, self._t0 = 0, time.perf_counter()
        if self._progress is not None:
            if self._task is not None:
                if self._owns:
                    self._progress.update(self._task, visible=False)
                else:
                    self._progress.remove_task(self._task)
            self._task = self._progress.add_task(description, total=total, detail=self._detail("…"))

    def _advance(self, steps: int, images: int) -> None:
        self._images += images
        if self._progress is not None:
            rate = f"{self._images / max(time.perf_counter() - self._t0, 1e-9):,.0f}"
            self._progress.update(self._task, advance=steps, detail=self._detail(rate))

    def _detail(self, rate: str) -> str:
        return f"{rate} img/s"


class EpochProgress(_Bars):
    """One bar per training epoch (batches, running loss and train accuracy, images/s), then a summary line."""

    def __init__(self, enabled: bool = True):
        super().__init__(enabled, transient=True)
        self._loss, self._acc = "…", "…"

    def start(self, description: str, total: int) -> None:
        self._description = description
        self._loss, self._acc = "…", "…"
        self._start(description, total)

    def advance(self, images: int, loss: float | None = None, accuracy: float | None = None) -> None:
        if loss is not None:
            self._loss = f"{loss:.4g}"
        if accuracy is not None:
            self._acc = f"{accuracy:.3f}"
        self._advance(1, images)

    def _detail(self, rate: str) -> str:
        return f"loss {self._loss}  acc {self._acc}  {rate} img/s"

    def finish(self, record: dict) -> None:
        if self.enabled:
            console.print(
                f"{self._description}: loss {record['loss']:.4g}  train acc {record['train_accuracy']:.4f}  "
                f"test acc {record['test_accuracy']:.4f}  lr {record['lr']:.3g}  {record['seconds']:.1f} s")


class SweepProgress(_Bars):
    """One bar per CSV row of an attack sweep: checkpoint · attack/backend · ε, images and images/s; the bars go
    when the sweep ends (``robench attack`` then prints its accuracy table)."""

    def __init__(self, enabled: bool = True):
        super().__init__(enabled, transient=True)

    def start(self, description: str, total: int) -> None:
        self._start(description, total)

    def advance(self, images: int) -> None:
        self._advance(images, images)

    def _detail(self, rate: str) -> str:
        return f"images  {rate} img/s"


class PlanProgress:
    """The overall bar of ``robench run``: each job advances it by its estimated cost, so the ETA weighs jobs by
    their work (:mod:`robench.pipeline.costs`); job bars appear beneath it."""

    def __init__(self, total: float, enabled: bool = True):
        self.enabled = enabled
        self._progress = _progress(transient=False, counted=False) if enabled else None
        self._total = total

    def __enter__(self):
        global _shared
        if self._progress is not None:
            self._progress.__enter__()
            self._task = self._progress.add_task("plan", total=self._total, detail="")
            _shared = self._progress
        return self

    def __exit__(self, *exc) -> None:
        global _shared
        if self._progress is not None:
            _shared = None
            self._progress.__exit__(*exc)

    def job(self, description: str) -> None:
        """Show which job runs now."""
        if self._progress is not None:
            self._progress.update(self._task, detail=description)

    def done(self, steps: float = 1) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=steps)

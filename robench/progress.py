"""Progress display for long work (rich), switched off with ``--quiet``."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


class _Bars:
    """A rich Progress that shows one task at a time (the previous one is hidden), and images/s."""

    def __init__(self, enabled: bool, columns: list, transient: bool):
        self.enabled = enabled
        self._progress = Progress(*columns, TextColumn("{task.fields[rate]} img/s"), TimeElapsedColumn(),
                                  TimeRemainingColumn(), console=console, transient=transient) if enabled else None
        self._task = None
        self._images, self._t0 = 0, time.perf_counter()

    def __enter__(self):
        if self._progress is not None:
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def _start(self, description: str, total: int, **fields) -> None:
        self._images, self._t0 = 0, time.perf_counter()
        if self._progress is not None:
            if self._task is not None:
                self._progress.update(self._task, visible=False)
            self._task = self._progress.add_task(description, total=total, rate="…", **fields)

    def _advance(self, steps: int, images: int, **fields) -> None:
        self._images += images
        if self._progress is not None:
            rate = f"{self._images / max(time.perf_counter() - self._t0, 1e-9):,.0f}"
            self._progress.update(self._task, advance=steps, rate=rate, **fields)


class EpochProgress(_Bars):
    """One bar per training epoch (batches, running loss and train accuracy, images/s), then a summary line."""

    def __init__(self, enabled: bool = True):
        super().__init__(enabled, [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                   TextColumn("loss {task.fields[loss]}"), TextColumn("acc {task.fields[acc]}")],
                         transient=True)

    def start(self, description: str, total: int) -> None:
        self._description = description
        self._start(description, total, loss="…", acc="…")

    def advance(self, images: int, loss: float | None = None, accuracy: float | None = None) -> None:
        fields = {}
        if loss is not None:
            fields["loss"] = f"{loss:.4g}"
        if accuracy is not None:
            fields["acc"] = f"{accuracy:.3f}"
        self._advance(1, images, **fields)

    def finish(self, record: dict) -> None:
        if self.enabled:
            console.print(
                f"{self._description}: loss {record['loss']:.4g}  train acc {record['train_accuracy']:.4f}  "
                f"test acc {record['test_accuracy']:.4f}  lr {record['lr']:.3g}  {record['seconds']:.1f} s")


class SweepProgress(_Bars):
    """One bar per CSV row of an attack sweep: checkpoint · attack/backend · ε, images and images/s."""

    def __init__(self, enabled: bool = True):
        super().__init__(enabled, [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                   TextColumn("images")], transient=False)

    def start(self, description: str, total: int) -> None:
        self._start(description, total)

    def advance(self, images: int) -> None:
        self._advance(images, images)

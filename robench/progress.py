"""Progress display for long work (rich), switched off with ``--quiet``."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


class EpochProgress:
    """One bar per training epoch (batches, running loss and train accuracy, images/s), then a summary line."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> "EpochProgress":
        if self.enabled:
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"), TextColumn("acc {task.fields[acc]}"),
                TextColumn("{task.fields[rate]} img/s"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True)
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def start(self, description: str, total: int) -> None:
        self._images = 0
        self._t0 = time.perf_counter()
        self._description = description
        if self._progress is not None:
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(description, total=total, loss="…", acc="…", rate="…")

    def advance(self, images: int, loss: float | None = None, accuracy: float | None = None) -> None:
        self._images += images
        if self._progress is None:
            return
        fields = {"rate": f"{self._images / max(time.perf_counter() - self._t0, 1e-9):,.0f}"}
        if loss is not None:
            fields["loss"] = f"{loss:.4g}"
        if accuracy is not None:
            fields["acc"] = f"{accuracy:.3f}"
        self._progress.update(self._task, advance=1, **fields)

    def finish(self, record: dict) -> None:
        if self.enabled:
            console.print(
                f"{self._description}: loss {record['loss']:.4g}  train acc {record['train_accuracy']:.4f}  "
                f"test acc {record['test_accuracy']:.4f}  lr {record['lr']:.3g}  {record['seconds']:.1f} s")


class SweepProgress:
    """One bar per CSV row of an attack sweep: checkpoint · attack/backend · ε, images and images/s."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> "SweepProgress":
        if self.enabled:
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("images"),
                TextColumn("{task.fields[rate]} img/s"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=console)
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def start(self, description: str, total: int) -> None:
        self._images, self._t0 = 0, time.perf_counter()
        if self._progress is not None:
            if self._task is not None:
                self._progress.update(self._task, visible=False)
            self._task = self._progress.add_task(description, total=total, rate="…")

    def advance(self, images: int) -> None:
        self._images += images
        if self._progress is not None:
            rate = f"{self._images / max(time.perf_counter() - self._t0, 1e-9):,.0f}"
            self._progress.update(self._task, advance=images, rate=rate)

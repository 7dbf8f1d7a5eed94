"""What a run prints: one line per stage start and end, a live bar per long step, a summary.

By default Ray's own output (driver loggers, worker stdout/stderr, Ray Data progress bars,
deprecation and library warnings) goes to `RUN/logs/` and the console holds only mmcurate's
lines; `-v` (or `MMCURATE_VERBOSE=1`) brings Ray's output back to the console. Bars are
rich progress bars fed by a thread that polls what the step has written so far (shard files,
metrics lines): the work runs in Ray workers, so the driver measures progress from the run
directory rather than from callbacks inside other processes.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = [
    "CONSOLE",
    "advise",
    "RAY_LOGGERS",
    "live_bar",
    "quiet_ray_logging",
    "say",
    "set_verbose",
    "verbose",
]

# a log file or pipe gets 120 columns (rich's default there is 80, which folds the summary)
CONSOLE = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)
RAY_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune", "ray.air", "ray.serve")
_HANDLERS: dict[str, logging.Handler] = {}
_ADVISED: set[str] = set()


def set_verbose(on: bool) -> None:
    """Turn Ray's console output on or off for this process and the stage commands it starts."""
    os.environ["MMCURATE_VERBOSE"] = "1" if on else "0"
    if not on:  # inherited by Ray workers: no Ray Data / Hugging Face tqdm bars
        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        if "transformers" in sys.modules:  # imported before: it read the variable already
            sys.modules["transformers"].utils.logging.disable_progress_bar()


def verbose() -> bool:
    """Ray's output on the console: the default of a library call; `mmcurate run` and `mmcurate
    demo` turn it off unless given -v."""
    return os.environ.get("MMCURATE_VERBOSE", "1") == "1"


def advise(key: str, text: str) -> None:
    """A warning the user must act on, in our words, shown once per process."""
    if key not in _ADVISED:
        _ADVISED.add(key)
        CONSOLE.print(f"[mmcurate] note: {text}", markup=False)


def say(text: str) -> None:
    """One mmcurate line on the console (never hidden by quiet mode)."""
    CONSOLE.print(f"[mmcurate] {text}", markup=False)


def quiet_ray_logging(logs_dir: str | None) -> str | None:
    """Unless verbose: Ray's loggers and Python warnings to `logs_dir/driver.log`.

    Call before `ray.init` (so its start-up lines go to the file) and again after it (it
    reinstalls the `ray` logger's console handler). Returns the log file (None: verbose).
    """
    if verbose() or not logs_dir or "://" in logs_dir:
        return None
    import ray.data  # installs the `ray.data` logger's console handler, removed below

    ray.data.DataContext.get_current().enable_progress_bars = False
    os.makedirs(logs_dir, exist_ok=True)
    path = os.path.join(logs_dir, "driver.log")
    if path not in _HANDLERS:
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        _HANDLERS[path] = handler
    handler = _HANDLERS[path]
    for name in RAY_LOGGERS + ("py.warnings", "transformers", "torch"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if type(old) is not logging.FileHandler and isinstance(old, logging.StreamHandler):
                logger.removeHandler(old)
        if handler not in logger.handlers:
            logger.addHandler(handler)
        logger.propagate = False
    logging.captureWarnings(True)
    warnings.simplefilter("default")  # each warning once per place, into the log file
    return path


def _progress() -> Progress:
    return Progress(
        TextColumn("[mmcurate] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=CONSOLE,
        transient=False,
    )


@contextmanager
def live_bar(description: str, total: int | None, unit: str, poll: Callable[[], int], every=0.5):
    """A live bar for one long step: `poll()` says how much is done (read from the run's files).

    The bar is drawn while the block runs and once more when it ends. `total` None: a step
    that cannot say how far it is (elapsed time only). A poll that raises (a file half
    written) counts as no progress for that tick.
    """
    stop = threading.Event()
    with _progress() as progress:
        task = progress.add_task(description, total=total, unit=unit, rate="")
        started = time.time()

        def update():
            try:
                done = int(poll())
            except Exception:  # noqa: BLE001 - a half-written file: try again next tick
                return
            if total is None:
                return
            rate = done / max(time.time() - started, 1e-9)
            progress.update(task, completed=min(done, total), rate=f"{rate:.1f} {unit}/s")

        def loop():
            while not stop.wait(every):
                update()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            update()
            if total is None:
                progress.update(task, total=1, completed=1)

"""A progress bar over the stages of a long command; shown on a terminal only."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm


@contextmanager
def stages(total: int) -> Iterator:
    """Yield ``step(name)``: call it as each stage starts; the bar closes when done."""
    with tqdm(total=total, disable=None, leave=False, unit="stage", bar_format=BAR) as bar:
        started = False

        def step(name: str) -> None:
            nonlocal started
            if started:
                bar.update()
            started = True
            bar.set_description_str(name)

        yield step
        bar.update()


BAR = "{desc:<28} {bar} {n_fmt}/{total_fmt} [{elapsed}]"

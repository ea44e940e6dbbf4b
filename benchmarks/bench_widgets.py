"""How long each notebook widget takes to answer: every control, moved to each of a few values.

    python benchmarks/bench_widgets.py [--notebooks 1-2,4-11] [--repeat]

Runs each notebook top to bottom in a fresh kernel (nbclient, the zoo cache warm) with
``ipywidgets.interact`` wrapped so every widget the notebook builds is recorded. Then, in
the same kernel, each control is moved from the notebook's default to each test value
(every option of a dropdown or toggle, the two ends of a slider), one at a time, and the
callback is timed with its output (figures included) drawn into an unseen
``ipywidgets.Output``, as JupyterLab would draw it. Each value is the first time that
setting is asked for, so compiling a new shape counts, as it does for a learner moving a
slider. Without ``--settle`` the moves start right after the last cell, while the
notebook's background work (``viz.Cached.prefetch``: notebook 10's t-SNE maps) still
runs: the worst case, a learner who moves a control
at once. ``--settle`` first waits for that work (and prints how long), as for a learner
who reads the notebook before touching the widgets. ``--repeat`` times every move a second
time as well.

Prints one row per (notebook, widget, control, value) and a summary against the issue's
targets: a status line for anything over about 1 s, nothing over 5 s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scriptlab.workshop import parse_notebooks  # noqa: E402

RECORD = r"""
import ipywidgets as _w

_WIDGETS = []
_interact = _w.interact


def _recording_interact(_fn=None, **controls):
    if _fn is None:  # @widgets.interact(name=control, ...)
        return lambda fn: _recording_interact(fn, **controls)
    _WIDGETS.append((_fn, controls))
    return _interact(_fn, **controls)


_w.interact = _recording_interact
"""

MEASURE = r"""
import json as _json
import threading as _threading
import time as _time

import ipywidgets as _w
import matplotlib.pyplot as _plt


def _values(widget):
    if hasattr(widget, "_options_values"):  # Dropdown, ToggleButtons, SelectionSlider, ...
        return list(widget._options_values)
    if isinstance(widget, _w.FloatLogSlider):
        return [widget.base ** widget.min, widget.base ** widget.max]
    if hasattr(widget, "min") and hasattr(widget, "max"):
        return [widget.min, widget.max]
    return []


_t = _time.perf_counter()
if __SETTLE__:
    for _thread in _threading.enumerate():
        if _thread.name == "scriptlab-prefetch":
            _thread.join()
print("BENCH_SETTLED", round(_time.perf_counter() - _t, 2))
_rows = []
for _k, (_fn, _controls) in enumerate(_WIDGETS):
    _ui = _w.interactive(_fn, **_controls)
    _default = {_c._kwarg: _c.value for _c in _ui.kwargs_widgets}
    for _c in _ui.kwargs_widgets:
        for _v in _values(_c):
            if _v == _default[_c._kwarg]:
                continue
            for _rep in range(__REPEAT__):
                _out = _w.Output()
                _t = _time.perf_counter()
                with _out:
                    _fn(**{**_default, _c._kwarg: _v})
                    _plt.close("all")
                _rows.append(
                    (_k, _fn.__name__, _c._kwarg, repr(_v), _rep, _time.perf_counter() - _t)
                )
print("BENCH_WIDGETS", _json.dumps(_rows))
"""


def measure(path: Path, repeat: int, settle: bool) -> tuple[list[tuple], float]:
    """Every move's seconds, and how long the background work was waited for."""
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(RECORD))
    code = MEASURE.replace("__REPEAT__", str(repeat)).replace("__SETTLE__", str(settle))
    nb.cells.append(nbformat.v4.new_code_cell(code))
    NotebookClient(nb, timeout=1200, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()  # fmt: skip
    waited = None
    for out in nb.cells[-1].outputs:
        for line in out.get("text", "").splitlines():
            if line.startswith("BENCH_SETTLED "):
                waited = float(line.split()[1])
            if line.startswith("BENCH_WIDGETS "):
                return json.loads(line.removeprefix("BENCH_WIDGETS ")), waited
    raise RuntimeError(f"{path.name}: the measuring cell printed nothing")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--notebooks", default="all", help="e.g. '1-2,4-11' (default all)")
    ap.add_argument("--repeat", action="store_true", help="time every move a second time too")
    ap.add_argument("--settle", action="store_true", help="wait for background work first")
    args = ap.parse_args()
    chosen = parse_notebooks(args.notebooks)
    repeat = 2 if args.repeat else 1
    rows = []
    for nb in chosen:
        (path,) = (ROOT / "notebooks").glob(f"{nb}_*.ipynb")
        t = time.perf_counter()
        found, waited = measure(path, repeat, args.settle)
        print(f"{path.name}: {len(found)} moves timed ({time.perf_counter() - t:.0f} s with the run"
              + (f"; waited {waited:.1f} s for its background work)" if args.settle else ")"),
              flush=True)  # fmt: skip
        rows += [(nb, *r) for r in found]
    print()
    print(f"{'nb':<3} {'widget':<20} {'control':<12} {'value':<24} {'call':>4} {'s':>7}")
    for nb, _k, fn, control, value, rep, sec in rows:
        print(f"{nb:<3} {fn[:20]:<20} {control[:12]:<12} {value[:24]:<24} {rep + 1:>4} {sec:>7.2f}")
    first = [r for r in rows if r[5] == 0]
    slow = [r for r in first if r[6] > 1.0]
    over = [r for r in first if r[6] > 5.0]
    worst = max(first, key=lambda r: r[6]) if first else None
    print()
    print(f"moves timed: {len(first)}; over 1 s: {len(slow)}; over 5 s: {len(over)}")
    if worst:
        print(f"slowest: notebook {worst[0]} {worst[2]}({worst[3]}={worst[4]}) {worst[6]:.2f} s")
    for nb in chosen:
        mine = [r[6] for r in first if r[0] == nb]
        if mine:
            print(f"notebook {nb}: {len(mine)} moves, max {max(mine):.2f} s, "
                  f"median {sorted(mine)[len(mine) // 2]:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()

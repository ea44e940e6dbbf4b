"""Each notebook, run in a real JupyterLab in headless Chromium (issue 16.5).

For every notebook: all cells run without an error output, every widget renders
(no "Error displaying widget", none left "Loading widget..."), and moving one
control of an ``interact`` changes the figure under it. nbval cannot see any of
this: it never renders a widget.

Run with the zoo cache warm (``scriptlab prepare``); ``pytest tests_browser`` is not
part of the default ``pytest tests notebooks`` run.
"""

import json
import time
from typing import NamedTuple

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout


class Control(NamedTuple):
    """The control to move: the n-th ``interact`` of the notebook, its n-th slider, a key, and
    the status line (``viz.busy``) that must show while the move computes, if any."""

    interact: int
    slider: int
    key: str
    status: str = ""


CASES = {
    "01_dataset.ipynb": Control(0, 0, "ArrowRight"),  # seed 0 -> 1
    "05_saliency.ipynb": Control(0, 0, "ArrowRight", "computing the saliency maps"),  # crop 0 -> 1
    "09_occlusion.ipynb": Control(0, 0, "ArrowRight", "occluding every window position"),  # crop
    "10_embeddings.ipynb": Control(1, 0, "ArrowLeft"),  # t-SNE step: last -> one before
}
# records every text the element shows while a move computes (a status line lasts ~1 s)
_WATCH = """el => {
    window._seen = [];
    new MutationObserver(() => window._seen.push(el.innerText))
        .observe(el, {childList: true, subtree: true, characterData: true});
}"""
RUN_TIMEOUT_S = 600
WIDGET_TIMEOUT_S = 60

_PROMPTS = "() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]" \
    ".map(e => e.textContent.trim())"  # fmt: skip


# the figures under an element, as one string (their PNG data)
_IMAGES = "(el) => [...el.querySelectorAll('img')].map(i => i.src).join(' ')"


def _command(page, menu: str, command: str) -> None:
    """Click a main-menu entry by its JupyterLab command id."""
    page.get_by_role("menuitem", name=menu, exact=True).click()
    page.click(f".lm-Menu li[data-command='{command}']")


def _accept_dialog(page, wait_s: float = 3.0) -> None:
    """Accept a dialog (such as "Select Kernel") if one opens within ``wait_s``."""
    button = page.locator(".jp-Dialog .jp-mod-accept")
    try:
        button.wait_for(state="visible", timeout=wait_s * 1000)
    except PlaywrightTimeout:
        return
    button.click()


def _run_all(page) -> None:
    """Clear every output, run all cells, and wait until none is queued or running."""
    _command(page, "Edit", "editmenu:clear-all")
    page.wait_for_function(f"() => ({_PROMPTS})().every(p => p === '[ ]:')")
    _command(page, "Run", "runmenu:run-all")
    # run-all queues every cell at once ([*]); a cell that raises leaves the rest at [ ]
    page.wait_for_function(
        f"""() => {{
            const p = ({_PROMPTS})();
            return p.some(x => /^\\[\\d+\\]:$/.test(x)) && !p.some(x => x.includes('*'));
        }}""",
        timeout=RUN_TIMEOUT_S * 1000,
    )


def _errors(path) -> list[str]:
    """The error outputs of a saved notebook, one line each."""
    nb = json.loads(path.read_text())
    return [
        f"cell {i}: {out['ename']}: {out['evalue']}"
        for i, cell in enumerate(nb["cells"])
        for out in cell.get("outputs", [])
        if out["output_type"] == "error"
    ]


def _widget_views(path) -> int:
    """How many widget views a saved notebook's cells display at top level."""
    nb = json.loads(path.read_text())
    return sum(
        "application/vnd.jupyter.widget-view+json" in out.get("data", {})
        for cell in nb["cells"]
        for out in cell.get("outputs", [])
    )


# top-level cell outputs that hold a rendered widget
_RENDERED = (
    "() => [...document.querySelectorAll("
    "'.jp-Cell-outputArea > .jp-OutputArea-child > .jp-OutputArea-output')]"
    ".filter(o => o.querySelector('.jupyter-widgets')).length"
)


# what the outputs that should hold widgets show instead (their first 120 characters)
_WIDGET_TEXT = (
    "() => [...document.querySelectorAll('.jp-OutputArea-output')]"
    ".filter(o => !o.getAttribute('data-mime-type'))"
    ".map(o => o.innerText.slice(0, 120))"
)


def _save(page, path) -> None:
    before = path.stat().st_mtime_ns
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 60
    while path.stat().st_mtime_ns == before:
        assert time.monotonic() < deadline, f"{path.name} was not saved"
        time.sleep(0.2)
    time.sleep(0.5)  # let the write finish


@pytest.mark.parametrize("notebook", list(CASES))
def test_notebook_runs_and_its_widgets_respond(lab, browser, notebook):
    control = CASES[notebook]
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        t0 = time.monotonic()
        lab.start_kernel(notebook)
        page.goto(lab.url(notebook))
        page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=120_000)
        _accept_dialog(page)  # in case JupyterLab still asks for a kernel
        page.wait_for_selector(
            ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000
        )
        _run_all(page)
        ran = time.monotonic() - t0

        prompts = page.evaluate(_PROMPTS)
        _save(page, lab.root / notebook)
        assert _errors(lab.root / notebook) == []
        assert all(p[1:-2].isdigit() for p in prompts), f"cells not run: {prompts}"

        # widgets: every widget view the kernel sent is rendered, none failed
        views = _widget_views(lab.root / notebook)
        assert views > 0, "the notebook displayed no widget"
        try:
            page.wait_for_function(
                f"n => ({_RENDERED})() >= n", arg=views, timeout=WIDGET_TIMEOUT_S * 1000
            )
        except PlaywrightTimeout:
            shot = lab.root.parent / f"{notebook}.png"
            page.screenshot(path=shot, full_page=True)
            pytest.fail(
                f"{page.evaluate(_RENDERED)} of {views} widget views rendered after "
                f"{WIDGET_TIMEOUT_S} s; the widget outputs read {page.evaluate(_WIDGET_TEXT)}; "
                f"screenshot {shot}"
            )
        assert page.evaluate(_RENDERED) == views
        page.wait_for_function(
            "() => !document.body.innerText.includes('Loading widget')",
            timeout=WIDGET_TIMEOUT_S * 1000,
        )
        text = page.evaluate("() => document.body.innerText")
        assert "Error displaying widget" not in text
        assert "Model not found" not in text
        n_interact = page.locator(".widget-interact").count()
        assert n_interact > control.interact, f"{n_interact} interact widgets"

        # one control moves, and the figure under it changes
        box = page.locator(".widget-interact").nth(control.interact)
        output = box.locator(".widget-output").last
        before = output.evaluate(_IMAGES)
        assert before, "the interact's output has no figure"
        handle = box.locator(".widget-slider .noUi-handle").nth(control.slider)
        readout = box.locator(".widget-slider .widget-readout").nth(control.slider)
        value = readout.inner_text()
        output.evaluate(_WATCH)
        handle.focus()
        page.keyboard.press(control.key)
        page.wait_for_function(
            "([el, v]) => el.textContent.trim() !== v", arg=[readout.element_handle(), value]
        )
        t1 = time.monotonic()
        page.wait_for_function(
            f"([el, old]) => {{ const now = ({_IMAGES})(el); return now && now !== old; }}",
            arg=[output.element_handle(), before],
            timeout=WIDGET_TIMEOUT_S * 1000,
        )
        if control.status:  # shown while it computed, and replaced by the figure
            seen = page.evaluate("() => window._seen")
            assert any(control.status in t for t in seen), seen[:5]
            assert control.status not in output.inner_text()
        print(
            f"{notebook}: ran in {ran:.0f} s; {n_interact} interact widgets; "
            f"{readout.inner_text()} after {value}: figure redrawn in {time.monotonic() - t1:.1f} s"
        )
    finally:
        page.close()
        lab.shutdown_kernels()

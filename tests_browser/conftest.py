"""A JupyterLab server on localhost and a headless Chromium driven by Playwright.

The notebooks are copied into a temporary folder first, so nothing the browser does
(running, saving) touches the repository's copies. Chromium is Debian's
(``apt-get install chromium``, at ``$CHROMIUM`` or /usr/bin/chromium): Playwright is
used only as a driver and never downloads a browser.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# the flags that work on a machine with no outside network (see tests_browser/README.md)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# JupyterLab settings: every cell in the DOM, no autosave, no news or update checks
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A running JupyterLab: its URL with token, its notebook folder and its log."""

    def __init__(self, root: Path, port: int, token: str, log: Path):
        self.root, self.port, self.token, self.log = root, port, token, log

    def url(self, notebook: str) -> str:
        """The notebook alone in a fresh workspace (no tab of an earlier test restored)."""
        stem = Path(notebook).stem
        return (
            f"http://127.0.0.1:{self.port}/lab/workspaces/{stem}/tree/{notebook}"
            f"?reset&token={self.token}"
        )

    def _api(self, path: str, method: str = "GET", body: dict | None = None):
        url = f"http://127.0.0.1:{self.port}/api/{path}?token={self.token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        with urllib.request.urlopen(request) as r:
            answer = r.read()
        return json.loads(answer) if answer else None

    def start_kernel(self, notebook: str) -> None:
        """Start the notebook's session on the server first: JupyterLab then attaches to it
        instead of asking which kernel to start (a dialog seen on a loaded machine)."""
        self._api(
            "sessions",
            "POST",
            {"path": notebook, "type": "notebook", "name": notebook, "kernel": {"name": "python3"}},
        )

    def shutdown_kernels(self) -> None:
        """Stop every kernel, so one notebook's models do not hold memory during the next."""
        for kernel in self._api("kernels"):
            self._api(f"kernels/{kernel['id']}", "DELETE")


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    for nb in NOTEBOOKS.glob("*.ipynb"):
        shutil.copy(nb, root / nb.name)
    settings = tmp_path_factory.mktemp("settings")
    for name, values in SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    port, token = _free_port(), os.urandom(16).hex()
    log = root.parent / "jupyterlab.log"
    env = {
        **os.environ,
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path_factory.mktemp("workspaces")),
    }
    argv = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
            f"--port={port}", f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}", "--allow-root"]  # fmt: skip
    with open(log, "w") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer in 120 s:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield Lab(root, port, token, log)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium, or set $CHROMIUM")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # launch() starts Chromium with a fresh, temporary user-data-dir of its own
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()

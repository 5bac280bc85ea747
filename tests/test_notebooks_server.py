"""The notebooks as their users meet them: paired with their jupytext sources, executed, and served by JupyterLab.

Each ``notebooks/<name>.ipynb`` is generated from ``notebooks/<name>.py`` (jupytext percent format) and executed by
``make sync-notebooks``; the first tests check that the two cannot drift and that the committed notebooks carry their
outputs. The last starts ``jupyter lab`` headless on localhost, as ``make notebooks`` does (without a browser), opens
every notebook through the server's REST API and runs a cell in a kernel started for it, over the kernel's websocket.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import jupytext
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SOURCES = sorted(NOTEBOOK_DIR.glob("[0-9]*.py"))


def cells(path: Path) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in jupytext.read(path).cells]


def test_every_notebook_has_its_jupytext_source():
    assert len(NOTEBOOKS) >= 4
    assert [p.stem for p in NOTEBOOKS] == [p.stem for p in SOURCES]
    assert not (NOTEBOOK_DIR / "make_notebooks.py").exists()
    assert 'formats = "ipynb,py:percent"' in (NOTEBOOK_DIR / "jupytext.toml").read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_cells_equal_its_py(path: Path):
    """The .ipynb's cells are its .py's, cell for cell (`make sync-notebooks` regenerates the .ipynb)."""
    ipynb, py = cells(path), cells(path.with_suffix(".py"))
    assert [src for kind, src in ipynb if kind == "code"] == [src for kind, src in py if kind == "code"], (
        f"{path.name} differs from {path.with_suffix('.py').name}: run `make sync-notebooks`")
    assert ipynb == py, f"{path.name}: markdown differs from {path.with_suffix('.py').name}: run `make sync-notebooks`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_is_executed(path: Path):
    """Every code cell ran, top to bottom, without an error, and the notebook shows what it made."""
    code = [cell for cell in jupytext.read(path).cells if cell.cell_type == "code"]
    assert [cell.get("execution_count") for cell in code] == list(range(1, len(code) + 1))
    outputs = [o for cell in code for o in cell.get("outputs", [])]
    assert outputs and not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)


# The server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """REST calls to a running Jupyter server, authenticated with its token."""

    def __init__(self, port: int, token: str):
        self.base, self.token = f"http://127.0.0.1:{port}", token

    def call(self, method: str, path: str, body: dict | None = None, timeout: float = 10):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Authorization": f"token {self.token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read()
        return json.loads(text) if text else None


def wait_until_up(server: Server, proc: subprocess.Popen, log: Path, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"jupyter lab exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            return server.call("GET", "/api/status", timeout=2)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.25)
    raise AssertionError(f"jupyter lab did not answer /api/status in {timeout} s:\n{log.read_text()[-3000:]}")


def replies(server: Server, kernel_id: str, msg_type: str, content: dict, timeout: float = 30):
    """Send one shell request to the kernel over its websocket channels, as JupyterLab does, and yield the messages
    answering it (its msg_id as parent), until the caller stops or ``timeout`` seconds pass (an assertion error)."""
    import websocket

    ws = websocket.create_connection(
        f"ws://127.0.0.1:{server.base.rsplit(':', 1)[1]}/api/kernels/{kernel_id}/channels",
        header=[f"Authorization: token {server.token}"], timeout=timeout, suppress_origin=True)
    try:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": msg_type, "username": "test",
                       "session": uuid.uuid4().hex, "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "buffers": [], "channel": "shell", "content": content}))
        deadline = time.monotonic() + timeout
        while True:
            assert time.monotonic() < deadline, f"no complete answer to {msg_type} in {timeout} s"
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                yield msg
    finally:
        ws.close()


def execute(server: Server, kernel_id: str, code: str, timeout: float = 30) -> tuple[str, dict]:
    """Run ``code`` in the kernel; returns (stdout, execute_reply content)."""
    stdout, reply, idle = [], None, False
    for msg in replies(server, kernel_id, "execute_request",
                       {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}, timeout):
        kind = msg["header"]["msg_type"]
        if kind == "stream" and msg["content"]["name"] == "stdout":
            stdout.append(msg["content"]["text"])
        elif kind == "execute_reply":
            reply = msg["content"]
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            idle = True
        if reply is not None and idle:
            return "".join(stdout), reply
    raise AssertionError("the kernel's answers stopped")  # replies() only ends by its timeout assertion


@contextlib.contextmanager
def jupyter_lab(tmp_path: Path, *options: str):
    """``jupyter lab`` headless on localhost, as ``make notebooks`` starts it; yields (Server, process, log).

    Jupyter's and IPython's own state (runtime files, trust database, settings, history) lives in tmp_path, not
    $HOME. On leaving, a server still running is stopped."""
    port, token = free_port(), secrets.token_hex(24)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_DATA_DIR": str(tmp_path / "data"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"), "IPYTHONDIR": str(tmp_path / "ipython"),
           "MPLBACKEND": "Agg"}
    log = tmp_path / "jupyter.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.port_retries=0",
             "--ServerApp.ip=127.0.0.1", f"--ServerApp.token={token}", f"--ServerApp.root_dir={REPO_ROOT}",
             *(["--allow-root"] if os.geteuid() == 0 else []), *options],  # CI and the project's machines run as root
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = Server(port, token)
    try:
        assert "started" in wait_until_up(server, proc, log)
        yield server, proc, log
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kernel_info(server: Server, kernel_id: str, timeout: float = 30) -> dict:
    """The kernel's kernel_info_reply content, asked as JupyterLab asks it when a notebook's kernel starts."""
    return next(msg["content"] for msg in replies(server, kernel_id, "kernel_info_request", {}, timeout)
                if msg["header"]["msg_type"] == "kernel_info_reply")


@pytest.mark.slow
def test_jupyterlab_serves_every_notebook_and_runs_a_cell(tmp_path):
    with jupyter_lab(tmp_path) as (server, proc, log):
        with pytest.raises(urllib.error.HTTPError) as denied:  # the token is required
            Server(int(server.base.rsplit(":", 1)[1]), "wrong").call("GET", "/api/contents/notebooks")
        assert denied.value.code == 403

        # What JupyterLab writes into a notebook's metadata when its kernel starts (NotebookPanel._updateSpec and
        # _updateLanguage): {name, display_name, language} of the kernel's spec, and the kernel_info reply's
        # language_info. It compares them with the stored values (deepEqual) and marks the notebook modified
        # only where they differ, so the committed notebooks must carry exactly these.
        spec = server.call("GET", "/api/kernelspecs")["kernelspecs"]["python3"]["spec"]
        written_spec = {"name": "python3", "display_name": spec["display_name"], "language": spec["language"]}

        listing = server.call("GET", "/api/contents/notebooks")
        assert {p.name for p in NOTEBOOKS} <= {item["name"] for item in listing["content"]}
        for path in NOTEBOOKS:
            rel = path.relative_to(REPO_ROOT).as_posix()
            model = server.call("GET", f"/api/contents/{rel}")
            assert model["type"] == "notebook" and model["format"] == "json", rel
            served = model["content"]["cells"]
            assert [c["source"] for c in served if c["cell_type"] == "code"] == [
                src for kind, src in cells(path) if kind == "code"], rel
            assert any(c.get("outputs") for c in served if c["cell_type"] == "code"), rel
            assert model["content"]["metadata"]["kernelspec"] == written_spec, (
                f"{rel}: JupyterLab would rewrite its kernelspec on opening (edit the .py header)")

            session = server.call("POST", "/api/sessions", {"path": rel, "type": "notebook", "name": path.name,
                                                             "kernel": {"name": "python3"}}, timeout=30)
            try:
                assert session["kernel"]["name"] == "python3"
                stdout, reply = execute(server, session["kernel"]["id"], "import sys\nprint(6*7)\nprint(sys.prefix)")
                assert reply["status"] == "ok", reply
                answer, prefix = stdout.splitlines()
                assert answer == "42"
                assert Path(prefix) == Path(sys.prefix)  # kernel python3 is this environment's Python
                assert model["content"]["metadata"]["language_info"] == kernel_info(
                    server, session["kernel"]["id"])["language_info"], (
                    f"{rel}: JupyterLab would rewrite its language_info on opening: run `make sync-notebooks`")
            finally:
                server.call("DELETE", f"/api/sessions/{session['id']}", timeout=30)
        assert server.call("GET", "/api/sessions") == []
        assert server.call("GET", "/api/kernels") == []
        server.call("POST", "/api/shutdown")
        assert proc.wait(timeout=20) == 0, log.read_text()[-3000:]


# The browser: JupyterLab's own front end in headless Chromium, driven over the DevTools protocol.

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Opens every notebook as a user does (docmanager:open), waits for its kernel to start and report its spec and
# kernel info (the moment JupyterLab rewrites the notebook's metadata), lets the model settle, and reports whether
# the document is modified: the model's dirty flag and the tab's jp-mod-dirty mark the user sees.
OPEN_EVERY_NOTEBOOK = """(async (paths) => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  for (let i = 0; i < 600 && !window.jupyterapp; i++) await sleep(100);
  const app = window.jupyterapp;
  await app.started; await app.restored;
  const out = {};
  for (const path of paths) {
    const w = await app.commands.execute('docmanager:open', {path, factory: 'Notebook'});
    await w.context.ready; await w.sessionContext.ready;
    const kernel = w.sessionContext.session.kernel;
    await kernel.info; await kernel.spec;
    for (let i = 0; i < 300 && kernel.status !== 'idle'; i++) await sleep(100);
    await sleep(1500);
    out[path] = {modified: w.context.model.dirty, marked: w.title.className.includes('jp-mod-dirty'),
                 status: kernel.status, kernelspec: w.context.model.getMetadata('kernelspec')};
    await w.sessionContext.shutdown();
    w.dispose();
  }
  return out;
})(PATHS)"""


def browser_unavailable() -> str | None:
    """Skip without Chromium, except where one is promised (``REQUIRE_BROWSER=1``, set by ``.ci/run``)."""
    problem = None if CHROMIUM else "no chromium on PATH (Debian: apt-get install chromium)"
    if problem and os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"REQUIRE_BROWSER=1 but {problem}")
    return problem


def devtools_evaluate(ws_url: str, expression: str, timeout: float) -> object:
    """Evaluate ``expression`` (a promise) in the page; retried while the page is still loading."""
    import websocket

    ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
    try:
        deadline = time.monotonic() + timeout
        for msg_id in range(1, 10_000):
            ws.send(json.dumps({"id": msg_id, "method": "Runtime.evaluate",
                                "params": {"expression": expression, "awaitPromise": True, "returnByValue": True}}))
            while (msg := json.loads(ws.recv())).get("id") != msg_id:
                pass
            result = msg.get("result", {})
            if "error" not in msg and "exceptionDetails" not in result:
                return result["result"]["value"]
            # "Execution context was destroyed": the page navigated (login redirect) under the call; try again.
            assert time.monotonic() < deadline, f"the page did not answer in {timeout} s: {msg}"
            time.sleep(0.5)
    finally:
        ws.close()


@pytest.mark.slow
def test_opening_a_notebook_in_jupyterlab_does_not_mark_it_modified(tmp_path):
    if problem := browser_unavailable():
        pytest.skip(problem)
    with jupyter_lab(tmp_path, "--LabApp.expose_app_in_browser=True") as (server, _, _):
        cdp_port = free_port()
        # Flags: headless, root-safe, and nothing that reaches for the network (refused on closed machines).
        chrome = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium'}", f"--remote-debugging-port={cdp_port}",
             f"{server.base}/lab?token={server.token}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{cdp_port}/json", timeout=2) as r:
                        pages = [t for t in json.load(r) if t["type"] == "page"]
                    if pages:
                        break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                assert chrome.poll() is None and time.monotonic() < deadline, "chromium did not start"
                time.sleep(0.25)
            paths = [p.relative_to(REPO_ROOT).as_posix() for p in NOTEBOOKS]
            seen = devtools_evaluate(pages[0]["webSocketDebuggerUrl"],
                                     OPEN_EVERY_NOTEBOOK.replace("PATHS", json.dumps(paths)), timeout=240)
        finally:
            stop(chrome)
    assert sorted(seen) == paths
    for path, state in seen.items():
        assert state["status"] == "idle", (path, state)
        assert not state["modified"] and not state["marked"], (
            f"{path} is marked modified the moment it opens (kernelspec now {state['kernelspec']})")

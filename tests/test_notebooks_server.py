"""The notebooks as their users meet them: paired with their jupytext sources, executed, and served by JupyterLab.

Each ``notebooks/<name>.ipynb`` is generated from ``notebooks/<name>.py`` (jupytext percent format) and executed by
``make sync-notebooks``; the first tests check that the two cannot drift and that the committed notebooks carry their
outputs. The last starts ``jupyter lab`` headless on localhost, as ``make notebooks`` does (without a browser), opens
every notebook through the server's REST API and runs a cell in a kernel started for it, over the kernel's websocket.
"""

from __future__ import annotations

import json
import os
import secrets
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


def execute(server: Server, kernel_id: str, code: str, timeout: float = 30) -> tuple[str, dict]:
    """Run ``code`` in the kernel through its websocket channels; returns (stdout, execute_reply content)."""
    import websocket

    ws = websocket.create_connection(
        f"ws://127.0.0.1:{server.base.rsplit(':', 1)[1]}/api/kernels/{kernel_id}/channels",
        header=[f"Authorization: token {server.token}"], timeout=timeout, suppress_origin=True)
    try:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                       "session": uuid.uuid4().hex, "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "buffers": [], "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
        }))
        stdout, reply, idle = [], None, False
        deadline = time.monotonic() + timeout
        while not (reply is not None and idle):
            assert time.monotonic() < deadline, f"no reply to {code!r} in {timeout} s"
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream" and msg["content"]["name"] == "stdout":
                stdout.append(msg["content"]["text"])
            elif kind == "execute_reply":
                reply = msg["content"]
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
        return "".join(stdout), reply
    finally:
        ws.close()


@pytest.mark.slow
def test_jupyterlab_serves_every_notebook_and_runs_a_cell(tmp_path):
    port, token = free_port(), secrets.token_hex(24)
    # Jupyter's and IPython's own state (runtime files, trust database, settings, history) in tmp_path, not $HOME.
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_DATA_DIR": str(tmp_path / "data"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"), "IPYTHONDIR": str(tmp_path / "ipython"),
           "MPLBACKEND": "Agg"}
    log = tmp_path / "jupyter.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.port_retries=0",
             "--ServerApp.ip=127.0.0.1", f"--ServerApp.token={token}", f"--ServerApp.root_dir={REPO_ROOT}",
             *(["--allow-root"] if os.geteuid() == 0 else [])],  # CI and the project's machines run as root
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = Server(port, token)
    try:
        status = wait_until_up(server, proc, log)
        assert "started" in status
        with pytest.raises(urllib.error.HTTPError) as denied:  # the token is required
            Server(port, "wrong").call("GET", "/api/contents/notebooks")
        assert denied.value.code == 403

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

            session = server.call("POST", "/api/sessions", {"path": rel, "type": "notebook", "name": path.name,
                                                             "kernel": {"name": "python3"}}, timeout=30)
            try:
                assert session["kernel"]["name"] == "python3"
                stdout, reply = execute(server, session["kernel"]["id"], "import sys\nprint(6*7)\nprint(sys.prefix)")
                assert reply["status"] == "ok", reply
                answer, prefix = stdout.splitlines()
                assert answer == "42"
                assert Path(prefix) == Path(sys.prefix)  # kernel python3 is this environment's Python
            finally:
                server.call("DELETE", f"/api/sessions/{session['id']}", timeout=30)
        assert server.call("GET", "/api/sessions") == []
        assert server.call("GET", "/api/kernels") == []
        server.call("POST", "/api/shutdown")
        assert proc.wait(timeout=20) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

"""What test_slack_sdk.py runs against: the real `latchkey serve` with a
`[slack]` table, `latchkey sim` as Entra, and a fake Slack Web API.

The fake Web API is plain http.server on loopback. It records every call
(method, parameters, bearer token) and answers `users.info` from a table of
Slack users, `conversations.open` with `D<user id>`, and `chat.postMessage`,
`chat.update` and `auth.test` with what Slack would answer.

`Serve`, what starts `latchkey serve` with one channel, is shared with
teams_harness.py; `SlackServe` adds the web chat and the `[slack]` table.

Every process started here is stopped by the `close()` of what started it,
and every port is chosen by the operating system.
"""

import http.server
import json
import os
import pathlib
import queue
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Where `latchkey policy build` puts the default module: the directory the
# Rust tests build it in (tests/src/lib.rs, host/tests/cli), so that after
# `cargo test --workspace` the build here is a no-op.
MODULE_TARGET_DIR = ROOT / "target" / "test-modules"


def binary():
    """The latchkey binary: LATCHKEY_BIN, else target/debug/latchkey."""
    return os.environ.get("LATCHKEY_BIN", str(ROOT / "target" / "debug" / "latchkey"))


def free_port():
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process, timeout=10):
    """SIGTERM, then SIGKILL if it does not stop within `timeout` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


class Lines:
    """A process's stdout read line by line on a thread (so that it never
    blocks on a full pipe), with a wait for a line of a given start."""

    def __init__(self, stream):
        self.seen = []
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream):
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, prefix, timeout):
        """The first line starting with `prefix`; None if the stream ends or
        `timeout` seconds pass first."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                return None
            self.seen.append(line)
            if line.startswith(prefix):
                return line


class Sim:
    """`latchkey sim` on a free port with the demo tenant (Contoso)."""

    def __init__(self):
        self.process = subprocess.Popen(
            [binary(), "sim", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            first = self.process.stdout.readline().strip()
            assert first.startswith("latchkey sim listening on "), f"latchkey sim did not start: {first!r}"
            self.credentials = json.loads(self.process.stdout.readline())
        except BaseException:
            self.close()
            raise

    def control(self, method, path, body=None):
        """Calls one of the emulator's /_sim/ control endpoints."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.credentials["authority"] + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
            return json.loads(text) if text else None

    def close(self):
        stop(self.process)


class FakeServer:
    """Plain http.server on a free loopback port (`port`), serving on a
    thread, shared by both channels' fakes: each GET and POST (and PUT when
    `put`) goes to the subclass's `_answer(handler, body)`, which records
    it in `_calls` under `_lock` and replies with `_reply`."""

    def __init__(self, put=False):
        self._calls = []
        self._lock = threading.Lock()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                fake._answer(self, b"")

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                fake._answer(self, self.rfile.read(length))

            def log_message(self, *args):
                pass

        if put:
            Handler.do_PUT = Handler.do_POST
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.port = self._server.server_address[1]

    @staticmethod
    def _reply(handler, status, answer):
        """Sends `answer` as JSON with `status`."""
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def close(self):
        self._server.shutdown()
        self._server.server_close()


class FakeSlackApi(FakeServer):
    """A fake Slack Web API on a free loopback port; `url` ends in `/api`."""

    def __init__(self, users):
        self.users = users
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}/api"

    def calls(self, method=None):
        """Every call so far, oldest first, as dicts with `method`,
        `params` and `token`; only those of `method` when given."""
        with self._lock:
            return [c for c in self._calls if method is None or c["method"] == method]

    def posts(self, channel=None):
        """The chat.postMessage calls' parameters, to `channel` when given."""
        return [
            c["params"]
            for c in self.calls("chat.postMessage")
            if channel is None or c["params"].get("channel") == channel
        ]

    def wait_for_post(self, channel, matching=lambda post: True, timeout=10.0):
        """The first post to `channel` that `matching` accepts; fails after
        `timeout` seconds with every post so far in the message."""
        deadline = time.monotonic() + timeout
        while True:
            found = [p for p in self.posts(channel) if matching(p)]
            if found:
                return found[0]
            assert time.monotonic() < deadline, (
                f"the bot posted nothing matching to {channel} within {timeout} s; "
                f"every call: {json.dumps(self.calls(), indent=1)}"
            )
            time.sleep(0.05)

    def _answer(self, handler, body):
        parsed = urllib.parse.urlsplit(handler.path)
        method = parsed.path.rsplit("/", 1)[-1]
        params = dict(urllib.parse.parse_qsl(parsed.query))
        content_type = handler.headers.get("Content-Type", "")
        if body and content_type.startswith("application/json"):
            params.update(json.loads(body))
        elif body:
            params.update(urllib.parse.parse_qsl(body.decode()))
        authorization = handler.headers.get("Authorization", "")
        token = authorization[len("Bearer ") :] if authorization.startswith("Bearer ") else None
        with self._lock:
            self._calls.append({"method": method, "params": params, "token": token})
        if token is None:
            answer = {"ok": False, "error": "not_authed"}
        elif method == "auth.test":
            answer = {
                "ok": True,
                "url": "https://contoso.slack.com/",
                "team": "Contoso",
                "user": "latchkey",
                "team_id": "T0CONTOSO",
                "user_id": "U0LATCHKEY",
                "bot_id": "B0LATCHKEY",
                "is_enterprise_install": False,
            }
        elif method == "users.info":
            user = self.users.get(params.get("user", ""))
            answer = {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}
        elif method == "conversations.open":
            users = params.get("users", "")
            answer = {"ok": True, "channel": {"id": f"D{users}"}}
        elif method in ("chat.postMessage", "chat.update"):
            answer = {
                "ok": True,
                "channel": params.get("channel"),
                "ts": f"{time.time():.6f}",
                "message": {"text": params.get("text", "")},
            }
        else:
            answer = {"ok": False, "error": "unknown_method"}
        self._reply(handler, 200, answer)


def run(args, cwd, what):
    """Runs `latchkey args` in `cwd`; its stdout. Fails with its output."""
    result = subprocess.run([binary(), *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{what} failed ({result.returncode}): {result.stdout}{result.stderr}"
    return result.stdout


def default_module(into):
    """Builds policies/default with `latchkey policy build` (reproducible;
    a no-op when the Rust tests built it already) and copies it to `into`;
    returns its sha256."""
    out = run(
        [
            "policy",
            "build",
            str(ROOT / "policies" / "default"),
            "--target-dir",
            str(MODULE_TARGET_DIR),
            "--out",
            str(into),
        ],
        ROOT,
        "latchkey policy build policies/default",
    )
    sha256 = out.strip().split("  ", 1)[0]
    assert len(sha256) == 64, f"latchkey policy build printed {out!r}"
    return sha256


def private_file(path, text):
    """Writes `text` to `path`, readable by its owner alone (secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


class Serve:
    """`latchkey serve` in `directory` with the emulator's tenant (its Graph
    secret in a file) and one channel, whatever both channels' conformance
    tests share: `channel_toml` is the channel's tables (between `[policy]`
    and the tenant's, each ending in a blank line), `tenant_toml` what
    follows the tenant's `graph` table, `env` what the environment adds.
    It waits for "`channel` listening on URL" and hands URL to `started`,
    which sets `url` (a subclass checks or trims it there); a failure up to
    and including `started` stops the process."""

    def __init__(self, directory, sim, channel, channel_toml, env, tenant_toml=""):
        d = pathlib.Path(directory)
        (d / "modules").mkdir()
        sha256 = default_module(d / "modules" / "default.wasm")
        run(["keygen", "--out", "host"], d, "latchkey keygen")
        credentials = sim.credentials
        tenant = credentials["tenant_id"]
        private_file(d / "contoso.secret", credentials["client_secret"])
        (d / "latchkey.toml").write_text(
            "[host]\n"
            'signing_key = "host.pem"\n'
            'database = "latchkey.db"\n\n'
            "[policy]\n"
            'modules_dir = "modules"\n\n'
            + channel_toml
            + f"[tenants.{tenant}]\n"
            'name = "Contoso"\n'
            'module = "default.wasm"\n'
            f'sha256 = "{sha256}"\n\n'
            f"[tenants.{tenant}.graph]\n"
            f'client_id = "{credentials["client_id"]}"\n'
            'client_secret_file = "contoso.secret"\n'
            f'authority = "{credentials["authority"]}"\n'
            f'graph_base_url = "{credentials["graph_base_url"]}"\n'
            + tenant_toml
        )
        environment = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
        environment.update(env)
        self.stderr_path = d / "serve.stderr"
        self._stderr = open(self.stderr_path, "w")
        self.process = subprocess.Popen(
            [binary(), "serve", "--config", "latchkey.toml"],
            cwd=d,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        try:
            self.lines = Lines(self.process.stdout)
            # The module is compiled at start-up: allow for a slow machine.
            listening = self.lines.wait_for(f"{channel} listening on ", timeout=120)
            assert listening, f"latchkey serve did not start {channel}: {self.output()}"
            # "<channel> listening on URL (...)"
            self.started(listening.split()[3], listening)
        except BaseException:
            self.close()
            raise

    def started(self, url, listening):
        """Called with the URL of the line `listening` once it is seen."""
        self.url = url

    def output(self):
        """What it printed so far, for failure messages."""
        self._stderr.flush()
        seen = getattr(getattr(self, "lines", None), "seen", [])
        return f"stdout: {seen}; stderr: {self.stderr_path.read_text()[-4000:]}"

    def close(self):
        stop(self.process)
        self._stderr.close()


class SlackServe(Serve):
    """`Serve` with the web chat (for the MFA step-up's callback) and a
    `[slack]` table whose Web API is `api_base_url`. The signing secret is
    in a file, the bot token in an environment variable, as an
    administrator would set them. `url` is the server's root (its
    `/slack/events` taken off), `web_url` the web chat's."""

    BOT_TOKEN_ENV = "LATCHKEY_CONFORMANCE_SLACK_BOT_TOKEN"

    def __init__(self, directory, sim, signing_secret, bot_token, api_base_url):
        d = pathlib.Path(directory)
        tenant = sim.credentials["tenant_id"]
        private_file(d / "slack-signing.secret", signing_secret + "\n")
        web = f"127.0.0.1:{free_port()}"
        self.web_url = f"http://{web}"
        super().__init__(
            directory,
            sim,
            "Slack",
            "[web]\n"
            f'listen = "{web}"\n'
            f'tenant = "{tenant}"\n\n'
            "[slack]\n"
            'signing_secret_file = "slack-signing.secret"\n'
            f'bot_token_env = "{self.BOT_TOKEN_ENV}"\n'
            f'api_base_url = "{api_base_url}"\n'
            f'tenant = "{tenant}"\n'
            'listen = "127.0.0.1:0"\n\n',
            {self.BOT_TOKEN_ENV: bot_token},
            tenant_toml=f'\n[tenants.{tenant}.sign_in]\nredirect_uri = "http://{web}/callback"\n',
        )

    def started(self, url, listening):
        # "Slack listening on http://127.0.0.1:PORT/slack/events (tenant ...)"
        self.url = url[: -len("/slack/events")]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def fetch(method, url, body=None, headers=None, timeout=10):
    """One HTTP request, redirects not followed; returns (status, headers,
    body bytes) whatever the status."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def post(url, body, headers, timeout=10):
    """POSTs `body` (bytes); returns (status, body bytes, seconds taken),
    whatever the status."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), time.monotonic() - started
    except urllib.error.HTTPError as error:
        return error.code, error.read(), time.monotonic() - started

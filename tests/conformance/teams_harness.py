"""What test_teams_tokens.py runs against: the real `latchkey serve` with a
`[teams]` table, and a fake Bot Framework on loopback standing in for
Microsoft's side of a Teams bot.

The fake Bot Framework is plain http.server on one free loopback port. It
serves, as login.botframework.com does, the OpenID metadata (`/openid`)
naming a JSON Web Key Set (`/keys`) whose keys carry Bot Framework's
`endorsements` (the channel ids a key may sign for); as Entra does, a
client-credentials token endpoint (`/<tenant>/oauth2/v2.0/token`); and, as
a Bot Connector does, `/v3/conversations/...` (an activity's `serviceUrl`
can point here). Every request is recorded.

Its three RSA keys are made for each run: one published and endorsed for
`msteams`, one published and endorsed for another channel only, and one
never published (its signatures verify under no published key).

The generic process helpers (the binary, the policy module, stopping a
process, reading its stdout) are slack_harness's, shared by both channels'
conformance tests.
"""

import base64
import hashlib
import hmac
import http.server
import json
import os
import pathlib
import subprocess
import threading
import urllib.parse
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from slack_harness import Lines, binary, default_module, private_file, run, stop

# Bot Framework's issuer of every channel-to-bot token.
BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
# The key ids the fake publishes (and the one it does not).
TEAMS_KID = "loopback-msteams"
OTHER_CHANNEL_KID = "loopback-webchat-only"
UNPUBLISHED_KID = "loopback-unpublished"


@dataclass
class SigningKey:
    """One RSA key of the fake: its id, endorsements and private half."""

    kid: str
    endorsements: list
    private: rsa.RSAPrivateKey

    def public_pem(self):
        """The public key as PEM bytes (what an HS256 confusion attack
        would use as its HMAC secret)."""
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self):
        """The public key as Bot Framework publishes it."""
        key = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        key.update({"kid": self.kid, "use": "sig", "alg": "RS256", "endorsements": self.endorsements})
        return key


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakeBotFramework:
    """The fake Bot Framework on a free loopback port; `url` has no
    trailing slash."""

    def __init__(self):
        self.keys = {
            TEAMS_KID: SigningKey(TEAMS_KID, ["msteams"], _new_key()),
            OTHER_CHANNEL_KID: SigningKey(OTHER_CHANNEL_KID, ["webchat"], _new_key()),
            UNPUBLISHED_KID: SigningKey(UNPUBLISHED_KID, ["msteams"], _new_key()),
        }
        self.published = [TEAMS_KID, OTHER_CHANNEL_KID]
        self._calls = []
        self._lock = threading.Lock()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                fake._answer(self, b"")

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                fake._answer(self, self.rfile.read(length))

            def do_PUT(self):
                self.do_POST()

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.metadata_url = f"{self.url}/openid"

    def calls(self, prefix=""):
        """Every request so far whose path starts with `prefix`, oldest
        first, as dicts with `method`, `path`, `agent` (the User-Agent) and
        `body` (bytes)."""
        with self._lock:
            return [c for c in self._calls if c["path"].startswith(prefix)]

    def sign(self, claims, kid=TEAMS_KID, signing_kid=None, algorithm="RS256", header_kid=True):
        """`claims` as a JWT signed with the key `signing_kid` (default:
        `kid`), its header naming `kid` unless `header_kid` is false."""
        key = self.keys[signing_kid or kid]
        headers = {"kid": kid} if header_kid else {}
        if algorithm == "none":
            # PyJWT signs "none" with no key at all.
            return jwt.encode(claims, None, algorithm="none", headers=headers)
        if algorithm == "HS256":
            # The classic key-confusion forgery: HMAC keyed with the public
            # key's PEM text. PyJWT refuses to build it, so by hand.
            head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", **headers}).encode())
            body = _b64(json.dumps(claims).encode())
            mac = hmac.new(key.public_pem(), f"{head}.{body}".encode(), hashlib.sha256).digest()
            return f"{head}.{body}.{_b64(mac)}"
        return jwt.encode(claims, key.private, algorithm=algorithm, headers=headers)

    def _answer(self, handler, body):
        path = urllib.parse.urlsplit(handler.path).path
        with self._lock:
            self._calls.append(
                {
                    "method": handler.command,
                    "path": path,
                    "agent": handler.headers.get("User-Agent", ""),
                    "body": body,
                }
            )
        status = 200
        if handler.command == "GET" and path == "/openid":
            answer = {
                "issuer": BOT_FRAMEWORK_ISSUER,
                "authorization_endpoint": "https://invalid.botframework.com",
                "jwks_uri": f"{self.url}/keys",
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            }
        elif handler.command == "GET" and path == "/keys":
            answer = {"keys": [self.keys[kid].jwk() for kid in self.published]}
        elif handler.command == "POST" and path.endswith("/oauth2/v2.0/token"):
            answer = {"access_token": "fake", "expires_in": 3600, "token_type": "Bearer"}
        elif path.startswith("/v3/conversations"):
            status = 201 if handler.command == "POST" and path == "/v3/conversations" else 200
            answer = {"id": f"activity-{len(self._calls)}"}
        else:
            status, answer = 404, {"error": f"no route {handler.command} {path}"}
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def close(self):
        self._server.shutdown()
        self._server.server_close()


def _new_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class TeamsServe:
    """`latchkey serve` in `directory` with the emulator's tenant and a
    `[teams]` table for the bot `app_id`, trusting the fake Bot Framework
    `bot_framework` (OpenID metadata, token authority) and sending to
    connectors on 127.0.0.1 only. The app secret is in an environment
    variable, as an administrator may set it. `url` is the bot's
    `/api/messages`."""

    APP_SECRET_ENV = "LATCHKEY_CONFORMANCE_TEAMS_APP_SECRET"

    def __init__(self, directory, sim, app_id, app_secret, bot_framework):
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
            "[teams]\n"
            f'app_id = "{app_id}"\n'
            f'app_secret_env = "{self.APP_SECRET_ENV}"\n'
            f'app_tenant = "{tenant}"\n'
            f'authority = "{bot_framework.url}"\n'
            f'openid_metadata_url = "{bot_framework.metadata_url}"\n'
            'service_url_hosts = ["127.0.0.1"]\n'
            'listen = "127.0.0.1:0"\n\n'
            f"[tenants.{tenant}]\n"
            'name = "Contoso"\n'
            'module = "default.wasm"\n'
            f'sha256 = "{sha256}"\n\n'
            f"[tenants.{tenant}.graph]\n"
            f'client_id = "{credentials["client_id"]}"\n'
            'client_secret_file = "contoso.secret"\n'
            f'authority = "{credentials["authority"]}"\n'
            f'graph_base_url = "{credentials["graph_base_url"]}"\n'
        )
        env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
        env[self.APP_SECRET_ENV] = app_secret
        self.stderr_path = d / "serve.stderr"
        self._stderr = open(self.stderr_path, "w")
        self.process = subprocess.Popen(
            [binary(), "serve", "--config", "latchkey.toml"],
            cwd=d,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        try:
            self.lines = Lines(self.process.stdout)
            # The module is compiled at start-up: allow for a slow machine.
            listening = self.lines.wait_for("Teams listening on ", timeout=120)
            assert listening, f"latchkey serve did not start Teams: {self.output()}"
            # "Teams listening on http://127.0.0.1:PORT/api/messages (bot ...)"
            self.url = listening.split()[3]
            assert self.url.startswith("http://127.0.0.1:") and self.url.endswith("/api/messages"), listening
            running = self.lines.wait_for("latchkey serve running", timeout=30)
            assert running, f"latchkey serve did not finish starting: {self.output()}"
        except BaseException:
            self.close()
            raise

    def output(self):
        """What it printed so far, for failure messages."""
        self._stderr.flush()
        seen = getattr(getattr(self, "lines", None), "seen", [])
        return f"stdout: {seen}; stderr: {self.stderr_path.read_text()[-4000:]}"

    def close(self):
        stop(self.process)
        self._stderr.close()

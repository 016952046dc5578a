"""What test_teams_tokens.py runs against: the real `latchkey serve` with a
`[teams]` table, and a fake Bot Framework on loopback standing in for
Microsoft's side of a Teams bot.

The fake Bot Framework is plain http.server on one free loopback port
(slack_harness's `FakeServer`, shared with the fake Slack Web API). It
serves, as login.botframework.com does, the OpenID metadata (`/openid`)
naming a JSON Web Key Set (`/keys`) whose keys carry Bot Framework's
`endorsements` (the channel ids a key may sign for); as Entra does, a
client-credentials token endpoint (`/<tenant>/oauth2/v2.0/token`); and, as
a Bot Connector does, `/v3/conversations/...` (an activity's `serviceUrl`
can point here). Every request is recorded.

Its three RSA keys are made for each run: one published and endorsed for
`msteams`, one published and endorsed for another channel only, and one
never published (its signatures verify under no published key).

What starts `latchkey serve` (the module, the tenant, the process, the
wait for its "listening on" line) is slack_harness's `Serve`, shared by
both channels' conformance tests; `TeamsServe` adds the `[teams]` table.
"""

import base64
import hashlib
import hmac
import json
import urllib.parse
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from slack_harness import FakeServer, Serve

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


class FakeBotFramework(FakeServer):
    """The fake Bot Framework on a free loopback port; `url` has no
    trailing slash."""

    def __init__(self):
        self.keys = {
            TEAMS_KID: SigningKey(TEAMS_KID, ["msteams"], _new_key()),
            OTHER_CHANNEL_KID: SigningKey(OTHER_CHANNEL_KID, ["webchat"], _new_key()),
            UNPUBLISHED_KID: SigningKey(UNPUBLISHED_KID, ["msteams"], _new_key()),
        }
        self.published = [TEAMS_KID, OTHER_CHANNEL_KID]
        super().__init__(put=True)
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
        self._reply(handler, status, answer)


def _new_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class TeamsServe(Serve):
    """`Serve` with a `[teams]` table for the bot `app_id`, trusting the
    fake Bot Framework `bot_framework` (OpenID metadata, token authority)
    and sending to connectors on 127.0.0.1 only. The app secret is in an
    environment variable, as an administrator may set it. `url` is the
    bot's `/api/messages`."""

    APP_SECRET_ENV = "LATCHKEY_CONFORMANCE_TEAMS_APP_SECRET"

    def __init__(self, directory, sim, app_id, app_secret, bot_framework):
        super().__init__(
            directory,
            sim,
            "Teams",
            "[teams]\n"
            f'app_id = "{app_id}"\n'
            f'app_secret_env = "{self.APP_SECRET_ENV}"\n'
            f'app_tenant = "{sim.credentials["tenant_id"]}"\n'
            f'authority = "{bot_framework.url}"\n'
            f'openid_metadata_url = "{bot_framework.metadata_url}"\n'
            'service_url_hosts = ["127.0.0.1"]\n'
            'listen = "127.0.0.1:0"\n\n',
            {self.APP_SECRET_ENV: app_secret},
        )

    def started(self, url, listening):
        # "Teams listening on http://127.0.0.1:PORT/api/messages (bot ...)"
        self.url = url
        assert self.url.startswith("http://127.0.0.1:") and self.url.endswith("/api/messages"), listening
        running = self.lines.wait_for("latchkey serve running", timeout=30)
        assert running, f"latchkey serve did not finish starting: {self.output()}"

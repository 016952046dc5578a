"""The Slack channel of the real `latchkey serve`, driven with requests
signed by Slack's own SDK (slack_sdk's SignatureVerifier), against the
emulator and a fake Slack Web API that records what the bot sends.

Cases: url_verification; a direct message acknowledged within 3 s and
answered in the DM; a block_actions form post; stale, future, tampered,
wrongly keyed, unsigned and untimed requests refused with 401 and causing
no Web API call; a retried event_id processed once; and situation 1
(forgotten password) resolved end to end, the MFA step-up done at the
emulator, the new password shown once and only in the DM.

Slack's Bolt framework is the oracle: every signed fixture is also fed to a
Bolt app (offline, its WebClient on its own fake Web API), which shows that
the fixtures are requests Slack's own code accepts or refuses, and that its
verdict and ours agree on each one.

`latchkey` comes from LATCHKEY_BIN (default target/debug/latchkey); the
policy module is built with `latchkey policy build` into target/test-modules,
a no-op after `cargo test --workspace`.
"""

import json
import re
import time
import urllib.parse
from dataclasses import dataclass, field

import pytest
from slack_bolt import App, BoltRequest
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

from slack_harness import ROOT, FakeSlackApi, Sim, SlackServe, fetch, post

# Test-only values: nothing here is a real Slack or Entra secret.
SIGNING_SECRET = "5a0c1e7f9b2d4c6e8a1b3d5f7c9e0a2b"
BOT_TOKEN = "xoxb-0000000000-conformance"
BOLT_TOKEN = "xoxb-0000000000-bolt-oracle"
TEAM = "T0CONTOSO"
ADELE = "adele.vance@contoso.com"
MEGAN = "megan.bowen@contoso.com"
JONI = "joni.sherman@contoso.com"
PASSWORD_TEXT = "I forgot my password"
CHALLENGE = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
# Slack's limit for acknowledging a request.
ACK_SECONDS = 3.0
# Slack ids of people whose requests must never be processed: every badly
# signed fixture speaks as one of them, so any call naming one is a leak.
BAD_USERS = [f"UBAD{i}" for i in range(1, 11)]


def slack_user(user_id, email):
    """A `users.info` user as Slack returns it for a full member."""
    name = email.split("@")[0]
    return {
        "id": user_id,
        "team_id": TEAM,
        "name": name,
        "deleted": False,
        "is_bot": False,
        "is_app_user": False,
        "is_restricted": False,
        "is_ultra_restricted": False,
        "is_email_confirmed": True,
        "profile": {"email": email, "real_name": name.replace(".", " ").title()},
    }


USERS = {
    "UADELE": slack_user("UADELE", ADELE),
    "UMEGAN": slack_user("UMEGAN", MEGAN),
    "URETRY": slack_user("URETRY", JONI),
    # Mapped, so that a badly signed request that got through would show.
    **{u: slack_user(u, f"user{u.lower()}@contoso.com") for u in BAD_USERS},
}


def now():
    return int(time.time())


def sign(timestamp, body, secret=SIGNING_SECRET):
    """Slack's own signature (slack_sdk), never ours."""
    return SignatureVerifier(secret).generate_signature(timestamp=str(timestamp), body=body)


def dm_event(event_id, user, text=PASSWORD_TEXT):
    """An Events API `event_callback` for a direct message from `user`."""
    return json.dumps(
        {
            "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
            "team_id": TEAM,
            "api_app_id": "A0LATCHKEY",
            "type": "event_callback",
            "event_id": event_id,
            "event_time": now(),
            "authorizations": [{"team_id": TEAM, "user_id": "U0LATCHKEY", "is_bot": True}],
            "event": {
                "type": "message",
                "channel_type": "im",
                "channel": f"D{user}",
                "user": user,
                "text": text,
                "ts": f"{now()}.000100",
                "event_ts": f"{now()}.000100",
            },
        }
    )


def block_actions(user, action_id="approve", value="no-such-request"):
    """An interactivity `block_actions` form post (`payload=<json>`)."""
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "api_app_id": "A0LATCHKEY",
        "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": f"D{user}"},
        "trigger_id": "1234567890.1234567890.abcdef0123456789abcdef0123456789",
        "team": {"id": TEAM, "domain": "contoso"},
        "channel": {"id": f"D{user}", "name": "directmessage"},
        "response_url": "https://hooks.slack.com/actions/T0CONTOSO/1/offline",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "approval",
                "value": value,
                "action_ts": f"{now()}.000200",
            }
        ],
    }
    return "payload=" + urllib.parse.quote_plus(json.dumps(payload))


JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@dataclass
class Fixture:
    """One request as Slack would send it, and the verdict it must get."""

    name: str
    path: str
    body: str
    content_type: str
    timestamp: object = None
    signature: object = None
    extra: dict = field(default_factory=dict)
    expect: int = 200
    sent_body: str = None

    def headers(self):
        headers = {"Content-Type": self.content_type, **self.extra}
        if self.timestamp is not None:
            headers["X-Slack-Request-Timestamp"] = str(self.timestamp)
        if self.signature is not None:
            headers["X-Slack-Signature"] = self.signature
        return headers

    def wire_body(self):
        return self.body if self.sent_body is None else self.sent_body


def signed(name, path, body, content_type, at=None, expect=200, **kwargs):
    at = now() if at is None else at
    return Fixture(name, path, body, content_type, at, sign(at, body), expect=expect, **kwargs)


def corpus():
    """Every fixture, signed now."""
    events, actions = "/slack/events", "/slack/interactivity"
    url_verification = json.dumps({"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": CHALLENGE, "type": "url_verification"})
    retried = dm_event("Ev0RETRY00001", "URETRY")
    good = [
        signed("url_verification", events, url_verification, JSON),
        signed("url_verification signed 290 s ago", events, url_verification, JSON, at=now() - 290),
        signed("DM message", events, dm_event("Ev0ADELE00001", "UADELE"), JSON),
        signed("block_actions", actions, block_actions("UMEGAN"), FORM),
        signed("retry: original", events, retried, JSON),
        signed(
            "retry: X-Slack-Retry-Num 1",
            events,
            retried,
            JSON,
            extra={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"},
        ),
    ]
    bad = [
        signed("stale by 301 s", events, dm_event("Ev0BAD00001", "UBAD1"), JSON, at=now() - 301, expect=401),
        signed("330 s in the future", events, dm_event("Ev0BAD00002", "UBAD2"), JSON, at=now() + 330, expect=401),
        signed(
            "tampered body",
            events,
            dm_event("Ev0BAD00003", "UBAD3"),
            JSON,
            expect=401,
            sent_body=dm_event("Ev0BAD00003", "UBAD3", text="reset the password of megan.bowen"),
        ),
        Fixture(
            "wrong secret",
            events,
            dm_event("Ev0BAD00004", "UBAD4"),
            JSON,
            now(),
            sign(now(), dm_event("Ev0BAD00004", "UBAD4"), secret="not-the-signing-secret"),
            expect=401,
        ),
        Fixture("missing signature header", events, dm_event("Ev0BAD00005", "UBAD5"), JSON, now(), None, expect=401),
        Fixture(
            "missing timestamp header",
            events,
            dm_event("Ev0BAD00006", "UBAD6"),
            JSON,
            None,
            sign(now(), dm_event("Ev0BAD00006", "UBAD6")),
            expect=401,
        ),
        Fixture(
            "signature of another timestamp",
            events,
            dm_event("Ev0BAD00007", "UBAD7"),
            JSON,
            now(),
            sign(now() - 60, dm_event("Ev0BAD00007", "UBAD7")),
            expect=401,
        ),
        signed("block_actions stale by 301 s", actions, block_actions("UBAD8"), FORM, at=now() - 301, expect=401),
        signed(
            "block_actions tampered",
            actions,
            block_actions("UBAD9"),
            FORM,
            expect=401,
            sent_body=block_actions("UBAD9", action_id="deny"),
        ),
        Fixture(
            "block_actions wrong secret",
            actions,
            block_actions("UBAD10"),
            FORM,
            now(),
            sign(now(), block_actions("UBAD10"), secret="not-the-signing-secret"),
            expect=401,
        ),
    ]
    return {f.name: f for f in good + bad}


class Stack:
    """The emulator, the fake Web API and `latchkey serve`, and what was
    sent to it: each fixture goes to Latchkey once (a second time would be
    a retry), its answer kept for the Bolt comparison."""

    def __init__(self, directory):
        self.closers = []
        try:
            self.sim = Sim()
            self.closers.append(self.sim.close)
            self.fake = FakeSlackApi(USERS)
            self.closers.append(self.fake.close)
            self.serve = SlackServe(directory, self.sim, SIGNING_SECRET, BOT_TOKEN, self.fake.url)
            self.closers.append(self.serve.close)
        except BaseException:
            self.close()
            raise
        self.corpus = corpus()
        self.answers = {}

    def send(self, name):
        """(status, body, seconds) of the fixture `name`, sent once."""
        if name not in self.answers:
            fixture = self.corpus[name]
            self.answers[name] = post(
                self.serve.url + fixture.path,
                fixture.wire_body().encode(),
                fixture.headers(),
            )
        return self.answers[name]

    def close(self):
        for close in reversed(self.closers):
            close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = Stack(tmp_path_factory.mktemp("slack"))
    try:
        yield running
    finally:
        running.close()


def acknowledged(stack, name):
    status, body, seconds = stack.send(name)
    assert status == 200, f"{name}: {status} {body!r}; {stack.serve.output()}"
    assert seconds < ACK_SECONDS, f"{name}: acknowledged after {seconds:.2f} s, Slack allows {ACK_SECONDS} s"
    return body


@pytest.fixture(scope="module")
def adele_step_up(stack):
    """Adele's DM "I forgot my password", acknowledged; the bot's answer
    with the MFA step-up button, in her DM."""
    acknowledged(stack, "DM message")
    return stack.fake.wait_for_post("DUADELE", lambda p: '"url"' in json.dumps(p.get("blocks")), timeout=15)


def test_url_verification_is_answered_with_the_challenge(stack):
    for name in ["url_verification", "url_verification signed 290 s ago"]:
        body = acknowledged(stack, name)
        assert json.loads(body) == {"challenge": CHALLENGE}, f"{name}: {body!r}"


def test_a_signed_dm_is_acknowledged_within_3_s_and_answered_in_the_dm(stack, adele_step_up):
    assert adele_step_up["channel"] == "DUADELE"
    looked_up = [c for c in stack.fake.calls("users.info") if c["params"].get("user") == "UADELE"]
    assert looked_up, f"Adele was never looked up with users.info: {stack.fake.calls()}"
    assert {c["token"] for c in stack.fake.calls()} == {BOT_TOKEN}, "every call carries the bot token"
    elsewhere = [p for p in stack.fake.posts() if p["channel"] != "DUADELE" and "UADELE" in json.dumps(p)]
    assert not elsewhere, f"posted about Adele outside her DM: {elsewhere}"


def test_a_signed_block_actions_form_post_is_accepted(stack):
    acknowledged(stack, "block_actions")
    # Megan pressed Approve on a request that does not exist: she is
    # identified, her DM opened, and she is told; nothing is approved.
    answer = stack.fake.wait_for_post("DUMEGAN")
    opened = [c for c in stack.fake.calls("conversations.open") if c["params"].get("users") == "UMEGAN"]
    assert opened, f"no conversations.open for Megan: {stack.fake.calls()}"
    assert answer["text"], answer


def test_badly_signed_requests_get_401_and_cause_no_call(stack):
    bad = [f for f in stack.corpus.values() if f.expect == 401]
    assert len(bad) == 10
    wrong = {}
    for fixture in bad:
        status, body, _ = stack.send(fixture.name)
        if status != 401:
            wrong[fixture.name] = (status, body)
    assert not wrong, f"not refused with 401: {wrong}"
    # Anything they had set off would be under way by now.
    time.sleep(1.0)
    leaks = [c for c in stack.fake.calls() if any(u in json.dumps(c) for u in BAD_USERS)]
    assert not leaks, f"a refused request still caused Web API calls: {leaks}"


def wait_until_quiet(fake, channel, quiet=1.5, timeout=10.0):
    """The posts to `channel` once none has come for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    count, since = len(fake.posts(channel)), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, f"the bot kept posting to {channel}: {fake.posts(channel)}"
        time.sleep(0.1)
        if len(fake.posts(channel)) != count:
            count, since = len(fake.posts(channel)), time.monotonic()
    return fake.posts(channel)


def test_a_retry_of_the_same_event_is_processed_once(stack):
    acknowledged(stack, "retry: original")
    # Slack's retry arrives while the first delivery is still being handled.
    acknowledged(stack, "retry: X-Slack-Retry-Num 1")
    stack.fake.wait_for_post("DURETRY")
    before = wait_until_quiet(stack.fake, "DURETRY")
    # A later retry of the same event_id, signed again as Slack would.
    original = stack.corpus["retry: original"]
    at = now()
    status, body, seconds = post(
        stack.serve.url + original.path,
        original.body.encode(),
        {
            "Content-Type": JSON,
            "X-Slack-Request-Timestamp": str(at),
            "X-Slack-Signature": sign(at, original.body),
            "X-Slack-Retry-Num": "2",
            "X-Slack-Retry-Reason": "http_error",
        },
    )
    assert (status, seconds < ACK_SECONDS) == (200, True), f"retry 2: {status} {body!r} after {seconds:.2f} s"
    time.sleep(1.5)
    assert stack.fake.posts("DURETRY") == before, (
        f"a retry was processed again: before {before}, after {stack.fake.posts('DURETRY')}"
    )
    lookups = [c for c in stack.fake.calls("users.info") if c["params"].get("user") == "URETRY"]
    assert len(lookups) == 1, f"looked up {len(lookups)} times: {lookups}"
    # The check can see a second processing: the same text as a new event
    # (another event_id) is answered.
    status, body, _ = post(
        stack.serve.url + "/slack/events",
        dm_event("Ev0RETRY00002", "URETRY").encode(),
        {
            "Content-Type": JSON,
            "X-Slack-Request-Timestamp": str(at),
            "X-Slack-Signature": sign(at, dm_event("Ev0RETRY00002", "URETRY")),
        },
    )
    assert status == 200, body
    deadline = time.monotonic() + 10
    while len(stack.fake.posts("DURETRY")) == len(before):
        assert time.monotonic() < deadline, f"a new event with the same text got no answer: {before}"
        time.sleep(0.05)


def sign_in_at_the_emulator(sim, authorize_url, upn, password):
    """What Adele does with the step-up link: signs in at the emulator with
    her password and approves the push on her (simulated) Authenticator;
    returns where the emulator sends her browser back."""
    status, _, page = fetch("GET", authorize_url)
    assert status == 200, f"the sign-in page: {status} {page[:300]!r}"
    action, _, query = authorize_url.partition("?")
    form = urllib.parse.parse_qsl(query) + [("step", "password"), ("username", upn), ("password", password)]
    status, headers, page = fetch(
        "POST",
        action,
        urllib.parse.urlencode(form).encode(),
        {"Content-Type": FORM},
    )
    location = headers.get("Location", "")
    assert status in (302, 303) and "/authorize/mfa/" in location, f"after the password: {status} {location} {page[:300]!r}"
    deadline = time.monotonic() + 10
    while True:
        pending = sim.control("GET", "/_sim/authenticator/pending")["value"]
        push = next((a for a in pending if a["user"] == upn), None)
        if push:
            break
        assert time.monotonic() < deadline, f"no Authenticator push for {upn}: {pending}"
        time.sleep(0.1)
    sim.control("POST", f"/_sim/authenticator/{push['id']}", {"approve": True, "number": push["number"]})
    status, headers, page = fetch("GET", sim.credentials["authority"] + location)
    assert status in (302, 303), f"after the push: {status} {page[:300]!r}"
    return headers["Location"]


def test_situation_1_forgotten_password_resolved_over_slack(stack, adele_step_up):
    """The whole situation through signed requests: the DM, the step-up at
    the emulator, then the new password shown once, in the DM only, and
    working at the emulator while the old one no longer does."""
    seed = json.loads((ROOT / "host" / "src" / "sim" / "seed" / "demo.json").read_text())
    old = next(u["password"] for u in seed["users"] if u["user_principal_name"] == ADELE)
    url = next(
        e["url"]
        for block in adele_step_up["blocks"]
        for e in block.get("elements", [])
        if e.get("action_id") == "step-up"
    )
    back = sign_in_at_the_emulator(stack.sim, url, ADELE, old)
    assert back.startswith(stack.serve.web_url + "/callback?"), back
    status, _, page = fetch("GET", back, headers={"Accept": "application/json"})
    assert status == 200, f"the step-up callback: {status} {page[:300]!r}"

    shown = stack.fake.wait_for_post("DUADELE", lambda p: "`" in p.get("text", ""), timeout=15)
    secret = re.search(r"`([^`]+)`", shown["text"]).group(1)
    assert secret != old
    for p in stack.fake.posts():
        assert p["channel"] == "DUADELE" or secret not in json.dumps(p), f"the password left the DM: {p}"
    assert sum(secret in json.dumps(p) for p in stack.fake.posts()) == 1, "shown exactly once"
    rejected = stack.sim.control("POST", "/_sim/signins", {"user": ADELE, "password": old})
    accepted = stack.sim.control("POST", "/_sim/signins", {"user": ADELE, "password": secret})
    assert rejected["errorCode"] == 50126, f"the old password still works: {rejected}"
    assert accepted["errorCode"] == 0, f"the password shown does not work: {accepted}"


def bolt_oracle(fake):
    """A Bolt app with our signing secret, offline: its WebClient calls
    `fake`, token verification off; listeners record what reached them."""
    reached = []
    app = App(
        signing_secret=SIGNING_SECRET,
        client=WebClient(token=BOLT_TOKEN, base_url=fake.url + "/"),
        token_verification_enabled=False,
        process_before_response=True,
    )

    @app.event("message")
    def on_message(event, ack):
        ack()
        reached.append(("message", event["user"], event["text"]))

    @app.action(re.compile(".*"))
    def on_action(body, action, ack):
        ack()
        reached.append(("action", body["user"]["id"], action["action_id"]))

    return app, reached


def test_bolt_and_latchkey_agree_on_every_fixture(stack):
    fake = FakeSlackApi(USERS)
    try:
        app, reached = bolt_oracle(fake)
        table, disagreements = [], []
        for fixture in stack.corpus.values():
            bolt = app.dispatch(BoltRequest(body=fixture.wire_body(), headers=fixture.headers()))
            ours, body, _ = stack.send(fixture.name)
            table.append(f"{fixture.name}: expected {fixture.expect}, Bolt {bolt.status}, Latchkey {ours}")
            if not (bolt.status == ours == fixture.expect):
                disagreements.append(table[-1])
            if fixture.name.startswith("url_verification") and ours == 200:
                assert json.loads(bolt.body) == json.loads(body), f"{fixture.name}: {bolt.body} / {body!r}"
        assert not disagreements, "\n".join(["verdicts differ:", *disagreements, "all:", *table])
        # What Bolt accepted reached its listeners as the events and actions
        # they are: the fixtures are well-formed Slack requests.
        assert ("message", "UADELE", PASSWORD_TEXT) in reached, reached
        assert ("action", "UMEGAN", "approve") in reached, reached
        assert not [r for r in reached if r[1] in BAD_USERS], f"Bolt processed a bad fixture: {reached}"
        assert {c["token"] for c in fake.calls()} <= {BOLT_TOKEN}
    finally:
        fake.close()

"""Starts `latchkey sim` on a free port for the conformance tests.

The binary comes from LATCHKEY_BIN (default: target/debug/latchkey in the
repository); build it first with `cargo build -p latchkey`.
"""

import json
import os
import pathlib
import subprocess
import urllib.parse
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def sim():
    binary = os.environ.get("LATCHKEY_BIN", str(ROOT / "target" / "debug" / "latchkey"))
    process = subprocess.Popen(
        [binary, "sim", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline().strip()
        assert first.startswith("latchkey sim listening on "), first or process.stderr.read()
        credentials = json.loads(process.stdout.readline())
        form = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": credentials["client_id"],
                "client_secret": credentials["client_secret"],
                "scope": "https://graph.microsoft.com/.default",
            }
        ).encode()
        url = f"{credentials['authority']}/{credentials['tenant_id']}/oauth2/v2.0/token"
        with urllib.request.urlopen(url, data=form) as response:
            credentials["access_token"] = json.load(response)["access_token"]
        yield credentials
    finally:
        process.terminate()
        process.wait(timeout=10)


def control(sim, method, path, body=None):
    """Calls one of the emulator's /_sim/ control endpoints."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        sim["authority"] + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        text = response.read()
        return json.loads(text) if text else None

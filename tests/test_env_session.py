"""EnvOnceSession reads the proxy, CA and netrc environment once per host, and sends what requests would."""

from __future__ import annotations

import requests

from visionkit.gemini.session import EnvOnceSession

URLS = ["http://127.0.0.1:8080/v1beta/models/x:generateContent", "https://generativelanguage.googleapis.com/v1",
        "https://example.org/upload?x=1"]


def test_settings_equal_requests_own(monkeypatch, tmp_path):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3129")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,example.org")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "ca.pem"))
    netrc = tmp_path / "netrc"
    netrc.write_text("machine example.org login user password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    ours, theirs = EnvOnceSession(), requests.Session()
    for url in URLS * 2:  # the second round comes from the cache
        for verify in (None, False):
            assert ours.merge_environment_settings(url, {}, None, verify, None) == \
                theirs.merge_environment_settings(url, {}, None, verify, None)
        mine = ours.prepare_request(requests.Request("POST", url, data=b"{}"))
        real = theirs.prepare_request(requests.Request("POST", url, data=b"{}"))
        assert mine.headers.get("Authorization") == real.headers.get("Authorization")
        assert mine.url == real.url and mine.body == real.body
    assert ours.prepare_request(requests.Request("GET", URLS[2])).headers["Authorization"].startswith("Basic")
    # per-request proxies are honoured as requests honours them
    given = {"https": "http://other.invalid:1"}
    assert ours.merge_environment_settings(URLS[1], given, None, None, None) == \
        theirs.merge_environment_settings(URLS[1], given, None, None, None)


def test_the_environment_is_read_once_per_host(monkeypatch):
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    session = EnvOnceSession()
    first = session.merge_environment_settings(URLS[1], {}, None, None, None)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert session.merge_environment_settings(URLS[1], {}, None, None, None) == first  # read once
    assert EnvOnceSession().merge_environment_settings(URLS[1], {}, None, None, None)["proxies"]["https"] == \
        "http://proxy.invalid:3128"  # a new session reads it again

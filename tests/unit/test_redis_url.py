"""Redis URLs in messages (``engine.bus.redis_url``): every password hidden, wherever the URL carries it, and the
query string (the TLS settings) left as written; ``check`` refuses what redis-py could not connect with.

The TLS handshakes themselves are tested against a real TLS redis-server in tests/integration/test_redis_tls.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.bus.redis_url import BadRedisUrl, check, describe, redact, unreachable


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://user:p%40ss@host:6380/1?ssl_ca_certs=/etc/ca.pem", "rediss://user:***@host:6380/1?ssl_ca_certs=/etc/ca.pem"),
        ("rediss://host/0?password=pw&ssl_ca_certs=/ca.pem", "rediss://host/0?password=***&ssl_ca_certs=/ca.pem"),
        ("rediss://host/0?ssl_certfile=/c.pem&ssl_keyfile=/k.pem&ssl_password=kp", "rediss://host/0?ssl_certfile=/c.pem&ssl_keyfile=/k.pem&ssl_password=***"),
        ("redis://host:6379/0", "redis://host:6379/0"),
    ],
)  # fmt: skip
def test_redact_hides_every_password_and_keeps_the_rest(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_describe_hides_the_password_as_written_and_decoded() -> None:
    url = "rediss://:p%40ss@host/0?ssl_password=k%26p"
    said = describe(RuntimeError("auth p@ss failed, p%40ss, key k&p"), url)
    assert "p@ss" not in said and "p%40ss" not in said and "k&p" not in said, said


def test_check_accepts_what_redis_py_takes_and_reads_the_ca_file(tmp_path: Path) -> None:
    check("rediss://:pw@127.0.0.1:6380/0?ssl_cert_reqs=required&ssl_check_hostname=false")
    check("redis://127.0.0.1:6379/0?socket_timeout=2")
    empty = tmp_path / "ca.pem"
    empty.write_text("")
    with pytest.raises(BadRedisUrl, match="bad Redis URL"):  # read now, not at the first connection
        check(f"rediss://:pw@127.0.0.1:6380/0?ssl_ca_certs={empty}")


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://host", "bad Redis URL"),
        ("redis://:pw@host:port/0", "bad Redis URL"),
        ("redis://:pw@host/0?ssl_ca_certs=/etc/hosts", "not rediss://"),
        ("rediss://:pw@host/0?ssl_ca_certs=/no/such/ca.pem", "does not exist"),
        ("rediss://:pw@host/0?ssl_cert_reqs=bogus", "Invalid SSL Certificate Requirements Flag"),
        ("rediss://:pw@host/0?unknown=1", "unknown"),
    ],
)
def test_check_refuses_what_redis_py_could_not_connect_with(url: str, said: str) -> None:
    with pytest.raises(BadRedisUrl) as refused:
        check(url)
    assert said in str(refused.value) and refused.value.hint, refused.value
    assert ":pw@" not in str(refused.value)


def test_an_unreachable_server_is_said_without_the_password() -> None:
    problem = unreachable("rediss://:pw-secret@host/0?password=pw-secret", OSError("pw-secret refused"))
    assert "pw-secret" not in str(problem) and problem.hint

"""Policy files: valid ones build pipelines; invalid ones name the file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroute import Action, Envelope, load_policy
from mailroute.errors import ConfigError
from mailroute.item import Direction
from mailroute.mime.scan import AmbiguityPolicy

MESSAGE = b"From: a@example.net\r\nSubject: hi\r\n\r\nbody\r\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_empty_policy_copies_the_message(tmp_path: Path) -> None:
    pipeline = load_policy(write(tmp_path, ""))
    assert pipeline.filters == ()
    assert pipeline.process(MESSAGE).data == MESSAGE


def test_full_policy(tmp_path: Path) -> None:
    pipeline = load_policy(write(tmp_path, """
[limits]
max_depth = 20
max_message_size = 1000000

[parser]
on_ambiguity = "record"

[gateway]
authserv_id = "gw.example.net"
internal_domains = ["Example.NET"]

[[pipeline]]
filter = "headers"
remove = ["X-Internal"]
add = { "X-Gateway" = "mailroute" }
[pipeline.when]
direction = ["outbound"]
"""))
    assert pipeline.limits.max_depth == 20
    assert pipeline.on_ambiguity is AmbiguityPolicy.RECORD
    assert pipeline.internal_domains == frozenset({"example.net"})
    message = b"X-Internal: secret\r\n" + MESSAGE
    out = pipeline.process(message, Envelope(mail_from="a@example.net",
                                             rcpt_to=["x@example.org"]))
    assert out.data == b"X-Gateway: mailroute\r\n" + MESSAGE
    internal = pipeline.process(message, Envelope(mail_from="a@example.net",
                                                  rcpt_to=["x@example.net"],
                                                  direction=Direction.INTERNAL))
    assert internal.data == message


@pytest.mark.parametrize(("text", "key", "line"), [
    ("[limits]\nmax_dept = 3\n", "limits.max_dept", 2),
    ("[limits]\nmax_depth = -1\n", "limits.max_depth", 2),
    ("[parser]\non_ambiguity = \"maybe\"\n", "parser.on_ambiguity", 2),
    ("[[pipeline]]\nfilter = \"nope\"\n", "pipeline[0].filter", 2),
    ("[[pipeline]]\nfilter = \"headers\"\n\n[[pipeline]]\nfilter = \"headers\"\nremvoe = []\n",
     "pipeline[1].remvoe", 6),
    ("[[pipeline]]\nfilter = \"headers\"\nadd = { X-Bad = \"a\\r\\nBcc: x\" }\n",
     "pipeline[0].add.X-Bad", 3),
    ("[[pipeline]]\nfilter = \"headers\"\n[pipeline.when]\ndirection = [\"sideways\"]\n",
     "pipeline[0].when.direction", 4),
    ("surprise = 1\n", "surprise", 1),
])
def test_invalid_policies_name_file_line_and_key(tmp_path: Path, text: str, key: str,
                                                 line: int) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_policy(path)
    assert caught.value.key == key
    assert f"{path}:{line}" in str(caught.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[limits\n")
    with pytest.raises(ConfigError) as caught:
        load_policy(path)
    assert str(path) in str(caught.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_policy(tmp_path / "absent.toml")


def test_config_error_reply_does_not_reveal_paths(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_policy(write(tmp_path, "surprise = 1\n"))
    assert str(tmp_path) not in str(caught.value.reply)
    assert caught.value.reply.code == 451


def test_limits_from_policy_apply(tmp_path: Path) -> None:
    pipeline = load_policy(write(tmp_path, "[limits]\nmax_message_size = 10\n"))
    result = pipeline.process(MESSAGE)
    assert result.action is Action.REJECT
    assert result.smtp_reply.status == "5.3.4"


def test_state_dir_puts_a_shared_sqlite_store_and_the_quarantine_in_it(tmp_path: Path) -> None:
    from mailroute.gateway.processed import InMemoryProcessedStore
    from mailroute.gateway.sqlite_store import SqliteProcessedStore

    policy = tmp_path / "p.toml"
    policy.write_text('[gateway]\nstate_dir = "state"\n')
    pipeline = load_policy(policy)
    assert pipeline.context is not None
    store = pipeline.context.processed
    assert isinstance(store, SqliteProcessedStore)
    assert store.path == tmp_path / "state" / "processed.sqlite3"
    assert pipeline.quarantine_dir == tmp_path / "state" / "quarantine"
    assert not (tmp_path / "state").exists()          # nothing touched until a message comes
    policy.write_text('[gateway]\nquarantine_dir = "/srv/q"\n')
    pipeline = load_policy(policy)
    assert pipeline.context is not None
    assert isinstance(pipeline.context.processed, InMemoryProcessedStore)
    assert pipeline.quarantine_dir == Path("/srv/q")


@pytest.mark.parametrize(("options", "key"), [
    ('filter = "smime-encrypt"\nrecipient_cert = "missing.pem"', "recipient_cert"),
    ('filter = "marker-set"\nkey_file = "nokeys.toml"', "key_file"),
])
def test_a_missing_file_names_the_policy_line_and_option(tmp_path: Path, options: str,
                                                         key: str) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(f"[limits]\nmax_parts = 100\n\n[[pipeline]]\n{options}\n")
    with pytest.raises(ConfigError) as caught:
        load_policy(policy)
    assert caught.value.key == f"pipeline[0].{key}"
    assert caught.value.source == f"{policy}:6"

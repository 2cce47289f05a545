"""The public surface of `import mailroute` is deliberate: this pins it."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable

import pytest

import mailroute
from mailroute.errors import InvalidArgumentError
from mailroute.limits import Limits
from mailroute.testing import build_message

EXPECTED = {
    "Action", "AmbiguousMessageError", "AuthResult", "AuthStatus", "Condition", "ConfigError",
    "Context", "Direction", "Envelope", "Filter", "LimitExceededError", "MailItem",
    "MailrouteError", "MalformedMessageError", "Message", "Outcome", "Pipeline", "Reply",
    "Result", "__version__", "load_policy", "parse",
}


def test_exports_are_exactly_the_documented_ones() -> None:
    assert set(mailroute.__all__) == EXPECTED


def test_every_export_exists_and_has_a_docstring() -> None:
    for name in mailroute.__all__:
        value = getattr(mailroute, name)
        if name != "__version__":
            assert value.__doc__, name


def test_every_error_is_a_mailroute_error_with_a_reply() -> None:
    from mailroute import errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.MailrouteError)
        assert cls.default_reply.code in range(400, 600)


def test_from_mailroute_import_gives_the_defining_modules_objects() -> None:
    from mailroute import Envelope, Pipeline, load_policy
    from mailroute.item import Envelope as item_envelope
    from mailroute.pipeline import Pipeline as pipeline_class
    from mailroute.policy import load_policy as policy_loader

    assert (Envelope, Pipeline, load_policy) == (item_envelope, pipeline_class, policy_loader)
    assert set(mailroute.__all__) <= set(dir(mailroute))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        mailroute.no_such_name  # noqa: B018


def test_importing_one_module_does_not_load_the_whole_api() -> None:
    # a mail server starts mailroute per message: the package's names load on first use
    probe = ("import sys, mailroute.errors; "
             "print(sorted(m for m in sys.modules if m.startswith('mailroute')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=60)
    loaded = set(ast.literal_eval(done.stdout))
    assert "mailroute.errors" in loaded
    assert not loaded & {"mailroute.item", "mailroute.mime", "mailroute.pipeline",
                         "mailroute.policy", "mailroute.session"}


@pytest.mark.parametrize("call", [
    lambda: mailroute.Envelope(mail_from="a\r\n@x"),
    lambda: mailroute.Envelope(rcpt_to=("b\0@x",)),
    lambda: mailroute.Envelope(rcpt_to="max@partner.example"),  # type: ignore[arg-type]
    lambda: mailroute.Envelope(direction="sideways"),
    lambda: Limits(max_depth=0),
    lambda: build_message(subject="x\r\nBcc: y"),
    lambda: mailroute.parse("text"),  # type: ignore[arg-type]
], ids=["crlf-sender", "nul-recipient", "recipients-as-one-string", "direction",
        "limit", "test-message-header", "parse-str"])
def test_a_value_the_api_does_not_take_raises_a_mailroute_error(call: Callable[[], object]
                                                                  ) -> None:
    """Found by the API audit: bare ValueError and TypeError, and a string of recipients
    taken as one recipient per character. The error is also a ValueError and a TypeError,
    as Python's own are."""
    with pytest.raises(InvalidArgumentError) as raised:
        call()
    assert isinstance(raised.value, mailroute.MailrouteError)
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, TypeError)

"""The public surface of `import mailroute` is deliberate: this pins it."""

from __future__ import annotations

import mailroute

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

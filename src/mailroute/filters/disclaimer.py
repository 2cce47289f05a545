"""The ``disclaimer`` filter: a text disclaimer in text bodies, an HTML one in HTML bodies.

Policy options (the ``mailroute disclaimer`` flags without dashes, ``-`` as ``_``):

``text`` (file, required), ``html`` (file; default: the text one, escaped), ``position``
(``bottom`` default, ``top``, ``reply``: above the quoted part of a reply), ``var`` (list of
``NAME=VALUE``), ``directory`` (sender directory, ``.csv`` or ``.toml``), ``missing``
(``empty`` default, or ``skip``: no disclaimer when a variable has no value), ``signed``
(``wrap`` default, ``skip``, ``reject``), ``invites`` (``skip`` default: leave invitations
alone; ``bodies``: edit their text and HTML bodies, never the calendar part),
``auto_replies`` (``skip`` default, or ``add``), ``html_parser`` (``auto`` default: the linear
scan where it is unambiguous, html5lib otherwise; ``html5lib``: always html5lib),
``html_max_chars`` and ``html_max_depth`` (the limits beyond which html5lib is not used),
``html_max_message_chars`` (html5lib's budget over all HTML bodies of one message).

Template variables come from, lowest priority first: the sender's address (``email``), the
``var`` options, the sender directory entry of the ``From`` address (or the envelope sender).
The filter annotates the item with ``disclaimer`` (a summary) and, when HTML was edited,
``disclaimer.html-locator`` (``scan``, ``html5lib`` or ``fallback`` per HTML body).
"""

from __future__ import annotations

import sys

from mailroute.config.options import Options
from mailroute.disclaimer.directory import SenderDirectory, load_directory
from mailroute.disclaimer.entities import escape
from mailroute.disclaimer.insert import (
    AUTO_REPLY_POLICIES,
    INVITE_POLICIES,
    SIGNED_POLICIES,
    Disclaimer,
    Settings,
    add_disclaimer,
)
from mailroute.disclaimer.locate import PARSERS, PLACEMENTS, HtmlLimits
from mailroute.disclaimer.template import MISSING_POLICIES, Template, canonical_name
from mailroute.disclaimer.templatecheck import template_problem
from mailroute.errors import MailrouteError
from mailroute.item import Context, MailItem
from mailroute.mime import parse_addresses
from mailroute.records import field, record
from mailroute.results import Outcome

__all__ = ["DisclaimerFilter", "build", "html_from_text"]

_MAX_TEMPLATE = 64 * 1024
# A policy using this filter fails to load without the "html" extra (beautifulsoup4,
# html5lib) instead of failing per message; the parser itself is imported only when a
# document needs it (mailroute.disclaimer.locate), as it costs more than the rest of a run.
# (importlib.util.find_spec walks sys.meta_path the same way, but importing it costs about
# 0.7 ms of start-up.)
def _installed(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None  # None: its import is blocked
    return any(finder.find_spec(module, None) is not None
               for finder in sys.meta_path if hasattr(finder, "find_spec"))


for _module in ("bs4", "html5lib"):
    if not _installed(_module):
        raise ModuleNotFoundError(f"No module named {_module!r}", name=_module)


@record(frozen=True)
class DisclaimerFilter:
    """Insert a disclaimer once into every body of a message (see the module docstring)."""

    text_template: Template
    html_template: Template
    variables: tuple[tuple[str, str], ...] = ()
    directory: SenderDirectory = field(default_factory=SenderDirectory)
    missing: str = "empty"
    settings: Settings = field(default_factory=Settings)
    name: str = "disclaimer"

    def values_for(self, item: MailItem) -> dict[str, str]:
        """The template values for ``item``'s sender."""
        needs_sender = (len(self.directory) > 0 or self.text_template.uses("email")
                        or self.html_template.uses("email"))
        sender = _sender(item) if needs_sender else ""
        values = {"email": sender} if sender else {}
        values.update(self.variables)
        if sender:
            values.update(self.directory.lookup(sender))
        return values

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        """Add the disclaimer, or reject protected mail when ``signed = "reject"``."""
        values = self.values_for(item)
        text = self.text_template.render(values, missing=self.missing)
        markup = self.html_template.render(values, missing=self.missing)
        if text is None or markup is None:
            return item.annotate("disclaimer", "skipped: missing-value")
        disclaimer = Disclaimer(self.text_template, self.html_template, text, markup)
        result = add_disclaimer(item.message, disclaimer, self.settings)
        if result.refused:
            return Outcome.reject("5.7.1", "signed or encrypted mail cannot carry the "
                                  "required disclaimer")
        notes = [("disclaimer", result.summary())]
        if result.locators:
            notes.append(("disclaimer.html-locator", ",".join(result.locators)))
        return item.with_message(result.message, *notes)


def _sender(item: MailItem) -> str:
    field_ = item.message.headers.get("From")
    if field_ is not None:
        try:
            addresses = parse_addresses(field_)
        except MailrouteError:
            addresses = ()
        if addresses:
            return addresses[0]
    return item.envelope.mail_from.strip().lower()


def html_from_text(source: str) -> str:
    """An HTML template from a text template: escaped, line breaks as ``<br>``."""
    escaped = escape(source.rstrip("\r\n"), quote=False)
    return "<br>\n".join(escaped.splitlines())


def _read_template(options: Options, name: str, path: str) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_TEMPLATE + 1)
    except OSError as exc:
        raise options.error(name, f"cannot read {path}: {exc.__class__.__name__}") from exc
    if len(data) > _MAX_TEMPLATE:
        raise options.error(name, f"{path} is larger than {_MAX_TEMPLATE} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise options.error(name, f"{path} is not UTF-8") from exc


def _variables(options: Options) -> tuple[tuple[str, str], ...]:
    pairs = []
    for entry in options.string_list("var"):
        name, sep, value = entry.partition("=")
        if not sep or not canonical_name(name):
            raise options.error("var", f"expected NAME=VALUE, got {entry[:40]!r}")
        pairs.append((canonical_name(name), value))
    return tuple(pairs)


def build(options: Options) -> DisclaimerFilter:
    """Build the filter from its policy options or command-line flags."""
    text_source = _read_template(options, "text", options.file("text"))
    if not text_source.strip():
        raise options.error("text", "the disclaimer template is empty")
    html_path = options.optional_file("html")
    html_source = (_read_template(options, "html", html_path) if html_path is not None
                   else html_from_text(text_source))
    directory_path = options.optional_file("directory")
    try:
        directory = (load_directory(directory_path) if directory_path is not None
                     else SenderDirectory())
    except ValueError as exc:
        raise options.error("directory", str(exc)) from exc
    limits = HtmlLimits(
        max_chars=options.integer("html_max_chars", HtmlLimits().max_chars, minimum=1),
        max_depth=options.integer("html_max_depth", HtmlLimits().max_depth, minimum=1),
        max_message_chars=options.integer("html_max_message_chars",
                                          HtmlLimits().max_message_chars, minimum=0))
    settings = Settings(
        placement=options.choice("position", PLACEMENTS, "bottom"),
        html_parser=options.choice("html_parser", PARSERS, "auto"),
        html_limits=limits,
        invites=options.choice("invites", INVITE_POLICIES, "skip"),
        auto_replies=options.choice("auto_replies", AUTO_REPLY_POLICIES, "skip"),
        signed=options.choice("signed", SIGNED_POLICIES, "wrap"))
    text_template = Template.parse(text_source, is_html=False)
    html_template = Template.parse(html_source, is_html=True)
    for key, template in (("text", text_template), ("html", html_template)):
        problem = template_problem(template.source, is_html=template.is_html,
                                   pieces=template.pieces)
        if problem is not None:
            raise options.error(key, f"template refused: {problem}")
    return DisclaimerFilter(
        text_template=text_template,
        html_template=html_template,
        variables=_variables(options),
        directory=directory,
        missing=options.choice("missing", MISSING_POLICIES, "empty"),
        settings=settings)

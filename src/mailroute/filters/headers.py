"""The ``headers`` filter: remove and add header fields on the top-level entity.

Policy options: ``remove`` (field names), ``add`` (a table of name = value; values are
checked at load, so a value with CR or LF is a configuration error, never an injected field).
Removal runs before addition, so ``remove = ["X-Foo"]`` with ``add = {X-Foo = "1"}`` replaces.
"""

from __future__ import annotations

from mailroute.config.options import Options
from mailroute.errors import UnsafeHeaderValueError
from mailroute.item import Context, MailItem
from mailroute.mime.headers import make_field
from mailroute.records import record

__all__ = ["HeadersFilter", "build"]


@record(frozen=True)
class HeadersFilter:
    """Remove fields named in ``remove``, then add each ``(name, value)`` of ``add`` at the top."""

    remove: tuple[str, ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    name: str = "headers"

    def apply(self, item: MailItem, ctx: Context) -> MailItem:
        """Edit the top-level header fields."""
        message = item.message
        for field_name in self.remove:
            message = message.without_header(field_name)
        for field_name, value in reversed(self.add):
            message = message.with_header(field_name, value)
        return item.evolve(message=message)


def build(options: Options) -> HeadersFilter:
    """Build from policy options ``remove`` and ``add``."""
    remove = options.string_list("remove")
    table = options.table("add")
    add: list[tuple[str, str]] = []
    for name, value in table.items():
        if not isinstance(value, str):
            raise options.error(f"add.{name}", "must be a string")
        try:
            make_field(name, value)
        except UnsafeHeaderValueError as exc:
            raise options.error(f"add.{name}", str(exc)) from exc
        add.append((name, value))
    for name in remove:
        try:
            make_field(name, "x")
        except UnsafeHeaderValueError as exc:
            raise options.error("remove", f"invalid field name {name!r}") from exc
    return HeadersFilter(remove=remove, add=tuple(add))

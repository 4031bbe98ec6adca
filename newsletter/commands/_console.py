"""The one way commands make a Rich console.

Markup is off: what we print carries user data (addresses, names, page titles,
error messages quoting input), and with markup on, ``[/x]`` in a subscriber's
name is a crash and ``[preview]`` in a title silently disappears. Styling is
given explicitly instead (``style=`` or ``rich.text.Text``).
"""

from __future__ import annotations

from rich.console import Console


def make_console(*, stderr: bool = False, soft_wrap: bool = True) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=soft_wrap, markup=False, emoji=False)

"""The one error type gankit raises for bad input, so the CLI can print it without a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GankitError(Exception):
    """A problem the user can fix (bad config, missing or corrupted file, unknown name).

    The CLI prints ``str(error)`` and exits with status 2; everything else is a bug.
    """


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ' (did you mean X?)' hint for a misspelt ``name``, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, shortened: for quoting a library's error in ours."""
    text = [t.strip() for t in str(exc).strip().splitlines() if t.strip()]
    line = text[0] if text else type(exc).__name__
    if line.endswith(":") and len(text) > 1:  # a heading ("Error(s) in loading state_dict for G:"): and its first item
        line = f"{line} {text[1]}"
    return line if len(line) <= limit else line[: limit - 3] + "..."

"""The one exception type that the CLI turns into a readable line and exit code 2."""


class UserError(Exception):
    """Bad input from the user (missing file, wrong layout, bad option).

    The CLI prints ``error: <message>`` on one line and exits with code 2; the
    message must say what was expected and, where it helps, how to fix it.
    """


def did_you_mean(value: str, choices: list[str] | tuple[str, ...]) -> str:
    """``" (did you mean 'x'?)"`` for the choice closest to a mistyped ``value`` (difflib ratio ≥ 0.6), else ``""``."""
    import difflib

    close = difflib.get_close_matches(str(value).lower(), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""

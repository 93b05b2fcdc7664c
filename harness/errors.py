"""The one exception type that the CLI turns into a readable line and exit code 2."""


class UserError(Exception):
    """Bad input from the user (missing file, wrong layout, bad option).

    The CLI prints ``error: <message>`` on one line and exits with code 2; the
    message must say what was expected and, where it helps, how to fix it.
    """

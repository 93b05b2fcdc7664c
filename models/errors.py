"""The one exception the models raise for a bad option (imports nothing, so a caller may import it cheaply)."""


class ModelConfigError(ValueError):
    """A model option out of range or unknown (family, size, patch, variant, scan backend, ...). The message
    names the option and the values it may take; a command-line caller prints it as one line."""

"""Errors the library raises to the application.

Rejections of single MQTT messages are not exceptions for the caller: they are
counted and logged (see :mod:`config_manager_client.pipeline`).
"""


class ConfigClientError(Exception):
    """Base class of every error this package raises."""


class SettingsError(ConfigClientError):
    """The settings (environment or keyword arguments) do not describe a usable
    client. The message names the variable and never contains a secret value."""


class NoTrustedKeyError(SettingsError):
    """No signature public key was found: every update would be refused, so
    ``initialize()`` fails instead of silently ignoring updates."""


class NotInitializedError(ConfigClientError, RuntimeError):
    """A method that needs ``initialize()`` was called before it. A
    ``RuntimeError``, as TARS' library raises there."""

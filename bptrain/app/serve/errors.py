"""What the page's training session refuses, as domain errors: the HTTP layer gives each its status.

Problems with what a request asks (a setting, a name, a drawing) are plain
:class:`~bptrain.core.errors.BptrainError`; these say why a well-formed request cannot be done now.
"""

from __future__ import annotations

from ...core.errors import BptrainError


class NotFound(BptrainError):
    """What the request names is not there (a snapshot of an epoch that was not kept, a run not yet made)."""


class Conflict(BptrainError):
    """The request does not fit the session's state now (a run in progress already, none to control)."""


class Unavailable(BptrainError):
    """The server cannot take this now (it is stopping; too many event streams are open)."""


class WriteFailed(BptrainError):
    """A file the session was asked to write could not be written (the message says which and why)."""

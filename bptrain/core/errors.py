"""Error types for problems the user can fix.

Every message is one line that says what is wrong and, where it helps, what to do.
The CLI prints it without a traceback and exits non-zero; library users can catch
`BptrainError` to handle all of them at once.
"""


class BptrainError(Exception):
    """Base class of every error caused by input the user gave us.

    ``field``: the setting the message is about, when it is about one (an option's name, like
    "batch_size"), so that a form can show the message beside that field.
    """

    def __init__(self, *args, field: str | None = None):
        super().__init__(*args)
        self.field = field


class SettingError(BptrainError, ValueError):
    """Settings that each option allows but not together, or a value out of range: a usage error.

    The command line reports it with exit code 2, before any work; the page with a 400 beside ``field``.
    """


class DataError(BptrainError):
    """A data file or directory is missing, unreadable or not what we expect."""


class DownloadError(DataError):
    """The data set could not be fetched or failed verification."""


class ModelFileError(BptrainError):
    """A model file is missing, broken, or does not fit the network asked for."""


class ConfigError(BptrainError):
    """A config file is missing, malformed, or has unknown keys or wrong types."""


class TrainingDiverged(BptrainError):
    """The loss became NaN or infinite: the learning rate is too large."""


class PathClash(SettingError):
    """An output would replace an input, another output, or a file that is not bptrain's to replace.

    A usage error: the command line reports it with exit code 2, before any work.
    """

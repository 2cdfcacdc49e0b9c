"""Error types for problems the user can fix.

Every message is one line that says what is wrong and, where it helps, what to do.
The CLI prints it without a traceback and exits non-zero; library users can catch
`BptrainError` to handle all of them at once.
"""


class BptrainError(Exception):
    """Base class of every error caused by input the user gave us."""


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


class PathClash(BptrainError):
    """An output would replace an input, another output, or a file that is not bptrain's to replace.

    A usage error: the command line reports it with exit code 2, before any work.
    """

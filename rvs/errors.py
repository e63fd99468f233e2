"""User-facing errors: one clear line, no traceback."""


class RvsError(Exception):
    """An error whose message is meant for the person using rvs (CLI, app)."""


class BadInputError(RvsError):
    """The input (image, video, file) cannot be used: missing, corrupt, too large, wrong type."""


class NoFaceError(RvsError):
    """The image was read but no face was found in it."""


class NoQueryFaceError(NoFaceError, BadInputError):
    """A person search (video face mode) got a query image without a face. Both a NoFaceError and a
    BadInputError, so callers catching either (the app catches BadInputError for all bad input) handle it."""


class IndexError_(RvsError):
    """The gallery index is missing, truncated or inconsistent with its manifest."""


class WeightsError(RvsError):
    """Model weights are missing, unreachable, or fail verification."""

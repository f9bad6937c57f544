"""The error of the contamination checks."""

from capeval.errors import CapevalError


class ContaminationError(CapevalError):
    """Inputs a contamination check cannot use."""

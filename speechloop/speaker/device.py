"""Where speaker torch work runs: the project's one device rule.

Moved to :mod:`speechloop.training.device` (shared with the ASR trainer); these names
stay importable from here.
"""

from speechloop.training.device import DevicePlan, select_device

__all__ = ["DevicePlan", "select_device"]

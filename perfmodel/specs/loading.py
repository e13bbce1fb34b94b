"""Transitional aliases (issue 8): reading files moved to ``specs.registry`` (the one door to
files) and ``validate`` to ``specs.common``. Remove once no caller imports from here."""

from __future__ import annotations

from .common import describe_validation_error, validate
from .registry import load_file, read_mapping

__all__ = ["describe_validation_error", "load_file", "read_mapping", "validate"]

"""The one root of every error a user can cause.

Each package keeps its own error classes (``SpecError``, ``GbifError``, ``DwcaError``, ``StorageError``,
``RuleError`` ...), and every one of them derives from :class:`GbifdlError`, so a caller that wants
"anything this library says went wrong with my input or my services" catches one class, and the CLI
turns any of them into its one-line message. The second base an error had before (``ValueError``,
``LookupError`` ...) stays, so code that caught the built-in type keeps working.
"""

from __future__ import annotations


class GbifdlError(Exception):
    """Something the user can fix: the message names the input and the fix."""

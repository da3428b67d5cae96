"""Small things every command-line program here does the same way."""

from __future__ import annotations

import signal
import threading


def restore_sigpipe() -> None:
    """Die quietly when the reader of our output goes away (``fsu cat IMG /f | head``), as
    coreutils do, instead of reporting "Broken pipe".  Python ignores SIGPIPE by default."""
    if hasattr(signal, "SIGPIPE") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)

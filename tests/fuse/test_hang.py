"""A hung FUSE request must cost a test its bound, not the suite 300 s: ``run_bounded`` gives
up, says where everyone is stuck, and unsticks the host (connection aborted, program killed)."""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Any

import pytest

from rumpkernel.client.fuse.proto import Op
from rumpkernel.testing import fusehang
from tests.fuse.conftest import served


def test_a_request_never_answered_is_diagnosed_and_unstuck(tmpfs_kernel: Any) -> None:
    k = tmpfs_kernel
    release = threading.Event()
    with served(k) as m:
        lookup = m.server.handlers[Op.LOOKUP]

        def stuck(req: Any, worker: Any) -> Any:
            if bytes(req.body).startswith(b"stuck\0"):
                release.wait(60)
            return lookup(req, worker)

        m.server.handlers[Op.LOOKUP] = stuck
        try:
            start = time.monotonic()
            with pytest.raises(AssertionError) as e:
                fusehang.run_bounded(["stat", os.path.join(m.mountpoint, "stuck")], 3.0,
                                     m.mountpoint, None, None)
            took = time.monotonic() - start
            report = str(e.value)
            assert "stat did not finish within 3s" in report
            assert re.search(r"FUSE requests unanswered: [1-9]", report), report
            assert " stat state=" in report, report
            assert took < 30
            assert fusehang.waiting(m.mountpoint) == 0      # aborted: nobody waits any more
        finally:
            release.set()

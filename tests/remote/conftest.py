"""Remote-client tests: soaks marked ``slow`` run only on request (``-m slow`` or
RUMPKERNEL_SLOW=1)."""

from __future__ import annotations



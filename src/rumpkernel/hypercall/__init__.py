"""The hypercall layer (rumpuser): the only code that touches the host.

``Hypercalls`` is the interface a kernel receives at boot; ``PosixHost`` runs on the real host
and ``SimHost`` is a deterministic simulation (virtual clock, seeded scheduling and randomness,
in-memory files).  See ``interface.py`` for the contract.
"""

from typing import Any

from rumpkernel.hypercall.interface import VERSION, Hypercalls
from rumpkernel.hypercall.posix import PosixHost

__all__ = ["VERSION", "Hypercalls", "PosixHost", "SimHost", "SimWorld"]


def __getattr__(name: str) -> Any:
    if name in ("SimHost", "SimWorld"):  # on demand: programs on the real host never need them
        from rumpkernel.hypercall import sim

        return getattr(sim, name)
    raise AttributeError(name)

"""The hypercall layer (rumpuser): the only code that touches the host.

``Hypercalls`` is the interface a kernel receives at boot; ``PosixHost`` runs on the real host
and ``SimHost`` is a deterministic simulation (virtual clock, seeded scheduling and randomness,
in-memory files).  See ``interface.py`` for the contract.
"""

from rumpkernel.hypercall.interface import VERSION, Hypercalls
from rumpkernel.hypercall.posix import PosixHost
from rumpkernel.hypercall.sim import SimHost

__all__ = ["VERSION", "Hypercalls", "PosixHost", "SimHost"]

"""Moved to the shipped testing kit: ``rumpkernel.testing.hostsys``."""

from rumpkernel.testing.hostsys import *  # noqa: F403
from rumpkernel.testing.hostsys import HostSys, host_user  # noqa: F401

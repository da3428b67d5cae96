"""Moved to the shipped testing kit: ``rumpkernel.testing.fsmatrix``."""

from rumpkernel.testing.fsmatrix import *  # noqa: F403
from rumpkernel.testing.fsmatrix import DRIVERS, MNT, TOP, FsEnv  # noqa: F401

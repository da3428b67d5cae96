"""Moved to the shipped testing kit: ``rumpkernel.testing.fusemode``."""

from rumpkernel.testing.fusemode import *  # noqa: F403
from rumpkernel.testing.fusemode import FuseMode, fuse_usable, need_fuse  # noqa: F401

"""Moved to the shipped testing kit: ``rumpkernel.testing.remote``."""

from rumpkernel.testing.remote import *  # noqa: F403
from rumpkernel.testing.remote import env, stat, wait_connectable, wait_for  # noqa: F401

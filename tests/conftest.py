"""Shared fixtures come from the shipped testing kit (``rumpkernel.testing.plugin``): ``kernel``,
``posix_kernel``, ``sim_world``, leak checks (``checked``), and the one policy for the ``slow``,
``root`` and ``oracle`` markers."""

pytest_plugins = ["rumpkernel.testing.plugin"]

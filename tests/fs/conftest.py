"""The ``fs`` fixture (every driver x every client mode) comes from the shipped testing kit:
``rumpkernel.testing.fsmatrix``, made a fixture by ``rumpkernel.testing.plugin``."""

"""The notebook runtime of an emulated cluster: a driver process that really runs notebooks.

The control plane uses :class:`DriverProcess` (start, execute, cancel, kill); the driver side
lives in ``driver.py`` and runs each task execution in its own thread.
"""

from devstack.workspace.runtime.client import DriverProcess, DriverStartError

__all__ = ["DriverProcess", "DriverStartError"]

"""Per-execution state inside the driver, and the process hooks that keep executions apart.

Executions share one Python process (as tasks share a Databricks cluster), so process-wide
things are made thread-aware here: stdout/stderr are captured per execution, ``os.environ`` and
``sys.argv`` show each execution its own overlay, and ``time.sleep`` wakes up on cancel.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

_local = threading.local()

# Values of every secret fetched on this driver; replaced by [REDACTED] in captured output.
_secrets: set[str] = set()
_secrets_lock = threading.Lock()

LOG_CAP = 1024 * 1024  # keep the last 1 MB of an execution's output


class ExecutionCanceled(BaseException):
    """Raised inside an execution's threads when it is canceled (BaseException: not swallowed
    by a notebook's ``except Exception``)."""


class NotebookExit(BaseException):
    """``dbutils.notebook.exit(value)``: stops the notebook successfully."""

    def __init__(self, value: str):
        super().__init__(value)
        self.value = value


def add_secret(value: str) -> None:
    if value:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    if not text or not _secrets:
        return text
    with _secrets_lock:
        values = sorted(_secrets, key=len, reverse=True)  # longest first: no partial leftovers
    for value in values:
        if value in text:
            text = text.replace(value, "[REDACTED]")
    return text


class Capture:
    """The output of one execution, keeping roughly the last ``LOG_CAP`` characters."""

    def __init__(self) -> None:
        self._chunks: list[str] = []
        self._size = 0
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            self._chunks.append(text)
            self._size += len(text)
            if self._size > 2 * LOG_CAP:
                joined = "".join(self._chunks)[-LOG_CAP:]
                self._chunks = [joined]
                self._size = len(joined)

    def text(self) -> str:
        with self._lock:
            joined = "".join(self._chunks)
        if len(joined) > LOG_CAP:
            joined = "[... earlier output truncated ...]\n" + joined[-LOG_CAP:]
        return redact(joined)


class Execution:
    """One task execution: its threads, output, environment overlay and cancel state."""

    def __init__(self, task: dict[str, Any]):
        self.task = task
        self.exec_id: str = task["exec_id"]
        self.env: dict[str, str] = {str(k): str(v) for k, v in (task.get("env") or {}).items()}
        self.argv: list[str] | None = None
        self.output = Capture()
        self.cancel_event = threading.Event()
        self.done = False
        self.lock = threading.Lock()
        self.threads: set[int] = set()
        self.linecache_keys: list[str] = []

    @property
    def canceled(self) -> bool:
        return self.cancel_event.is_set()

    def enter(self) -> None:
        """Make the calling thread part of this execution."""
        _local.execution = self
        with self.lock:
            self.threads.add(threading.get_ident())

    def leave(self) -> None:
        with self.lock:
            self.threads.discard(threading.get_ident())
        _local.execution = None

    def check_canceled(self) -> None:
        if self.canceled:
            raise ExecutionCanceled(f"execution {self.exec_id} was canceled")

    def interrupt(self, patience: float = 30.0) -> None:
        """Cancel: wake sleeps, then raise ExecutionCanceled asynchronously in every thread.

        An async exception landing inside the import machinery corrupts its module locks and
        hangs the whole driver, so threads busy importing get it a moment later. A thread in
        ``time.sleep`` needs none: the cancel event already wakes it with ExecutionCanceled.
        """
        import ctypes

        self.cancel_event.set()
        deadline = time.monotonic() + patience
        with self.lock:
            pending = set(self.threads)
        while pending and time.monotonic() < deadline:
            frames = sys._current_frames()
            for ident in list(pending):
                frame = frames.get(ident)
                if frame is None or _sleeping(frame):
                    pending.discard(ident)
                    continue
                if importing(frame):
                    continue
                with self.lock:
                    if self.done:
                        return
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(
                        ctypes.c_ulong(ident), ctypes.py_object(ExecutionCanceled)
                    )
                pending.discard(ident)
            if pending:
                _real_sleep(0.02)

    def finish(self) -> None:
        """Mark done; drop an async cancel that was injected but has not fired yet."""
        import ctypes

        with self.lock:
            self.done = True
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.get_ident()), None)


def importing(frame) -> bool:
    """Whether ``frame`` (or a caller) is inside the import machinery."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _sleeping(frame) -> bool:
    # The innermost frames are Event.wait -> Condition.wait inside _cancelable_sleep.
    for _ in range(4):
        if frame is None:
            return False
        if frame.f_code is _cancelable_sleep.__code__:
            return True
        frame = frame.f_back
    return False


def current() -> Execution | None:
    execution = getattr(_local, "execution", None)
    # A thread the notebook started may outlive its execution; then it belongs to nobody.
    if execution is not None and execution.done and threading.get_ident() not in execution.threads:
        return None
    return execution


# ---------------------------------------------------------------------- process hooks


class _StreamRouter:
    """sys.stdout/sys.stderr: each write goes to the writing execution's capture and to the log."""

    def __init__(self, real):
        self._real = real

    def write(self, text: str) -> int:
        execution = current()
        if execution is not None:
            execution.output.write(text)
        try:
            self._real.write(redact(text))
        except (OSError, ValueError):
            pass
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._real.flush()
        except (OSError, ValueError):
            pass

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str):
        return getattr(self._real, name)


class _OverlayEnviron(type(os.environ)):
    """os.environ with the current execution's ``env`` laid over the process environment."""

    def __init__(self, base):
        super().__init__(base._data, base.encodekey, base.decodekey, base.encodevalue, base.decodevalue)

    @staticmethod
    def _overlay() -> dict[str, str] | None:
        execution = current()
        return execution.env if execution is not None and execution.env else None

    def __getitem__(self, key):
        overlay = self._overlay()
        if overlay is not None and key in overlay:
            return overlay[key]
        return super().__getitem__(key)

    def __setitem__(self, key, value):
        overlay = self._overlay()
        if overlay is not None and key in overlay:
            overlay[key] = value
        super().__setitem__(key, value)

    def __delitem__(self, key):
        overlay = self._overlay()
        if overlay is not None and key in overlay:
            del overlay[key]
            try:
                super().__delitem__(key)
            except KeyError:
                pass
            return
        super().__delitem__(key)

    def __iter__(self):
        overlay = self._overlay()
        keys = list(super().__iter__())
        yield from keys
        if overlay is not None:
            seen = set(keys)
            yield from (k for k in list(overlay) if k not in seen)

    def __len__(self):
        return sum(1 for _ in self)

    def __repr__(self):
        return f"environ({dict(self)!r})"


class _ThreadArgv(list):
    """sys.argv as the current execution sees it (spark_python tasks set their own)."""

    def _view(self) -> list:
        execution = current()
        if execution is not None and execution.argv is not None:
            return execution.argv
        return list(list.__iter__(self))

    def __getitem__(self, index):
        return self._view()[index]

    def __iter__(self):
        return iter(self._view())

    def __len__(self):
        return len(self._view())

    def __contains__(self, item):
        return item in self._view()

    def __eq__(self, other):
        return self._view() == other

    __hash__ = None

    def __repr__(self):
        return repr(self._view())


_real_sleep = time.sleep


def _cancelable_sleep(seconds: float) -> None:
    execution = current()
    if execution is None or threading.get_ident() not in execution.threads:
        # Only the execution's own threads end on cancel: a thread it merely started may be a
        # library's process-wide worker (a logging pool) that later executions still need.
        return _real_sleep(seconds)
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    # Short slices: an async exception (a notebook.run timeout) fires between them, and the
    # execution's cancel event ends the wait at once.
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        if execution.cancel_event.wait(min(remaining, 0.1)):
            raise ExecutionCanceled(f"execution {execution.exec_id} was canceled")


def _popen_with_overlay(original):
    def __init__(self, *args, **kwargs):
        # A child process sees the C-level environment, not our overlay: hand it over explicitly.
        if kwargs.get("env") is None and len(args) < 11 and _OverlayEnviron._overlay():
            kwargs["env"] = dict(os.environ)
        original(self, *args, **kwargs)

    return __init__


# Threads of these libraries serve the whole driver (py4j callbacks, Spark helpers): they must
# not be tied to the execution that happened to start them.
_SHARED_THREAD_MODULES = ("py4j", "pyspark", "devstack.workspace.runtime")


def _inheriting_thread(thread_cls):
    """Threads a notebook starts (a ThreadPoolExecutor, say) write to that execution's output
    and see its environment overlay."""
    original_init = thread_cls.__init__
    original_bootstrap = thread_cls._bootstrap_inner

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        execution = current()
        target = getattr(self, "_target", None)
        module = getattr(target, "__module__", None) or type(self).__module__ or ""
        if execution is not None and not module.startswith(_SHARED_THREAD_MODULES):
            self._devstack_execution = execution

    def _bootstrap_inner(self):
        execution = getattr(self, "_devstack_execution", None)
        if execution is not None and not execution.done:
            _local.execution = execution
        original_bootstrap(self)

    thread_cls.__init__ = __init__
    thread_cls._bootstrap_inner = _bootstrap_inner


def ensure_hooks() -> None:
    """Re-install the per-execution views if notebook code replaced them (``sys.argv = [...]``,
    ``sys.stdout = ...``), so the next execution is isolated again."""
    if not isinstance(sys.stdout, _StreamRouter):
        sys.stdout = _StreamRouter(sys.__stdout__)
    if not isinstance(sys.stderr, _StreamRouter):
        sys.stderr = _StreamRouter(sys.__stderr__)
    if not isinstance(sys.argv, _ThreadArgv):
        sys.argv = _ThreadArgv(sys.argv if isinstance(sys.argv, list) else [])
    if not isinstance(os.environ, _OverlayEnviron) and isinstance(os.environ, os._Environ):
        os.environ = _OverlayEnviron(os.environ)  # noqa: B003 - same data, thread-aware view
    if time.sleep is not _cancelable_sleep:
        time.sleep = _cancelable_sleep


def install_hooks() -> None:
    """Make the process execution-aware (called once by the driver at start)."""
    import subprocess

    sys.stdout = _StreamRouter(sys.stdout)
    sys.stderr = _StreamRouter(sys.stderr)
    os.environ = _OverlayEnviron(os.environ)  # noqa: B003 - same data, thread-aware view
    sys.argv = _ThreadArgv(sys.argv)
    time.sleep = _cancelable_sleep
    subprocess.Popen.__init__ = _popen_with_overlay(subprocess.Popen.__init__)
    _inheriting_thread(threading.Thread)

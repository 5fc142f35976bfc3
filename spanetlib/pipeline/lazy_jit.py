"""numba kernels compiled on first use, so that importing a module does not import numba.

Importing numba takes a large share of the §3 commands' startup (issue 21: the first frame
within 1.5 s), and most of its kernels run only later. :func:`lazy_njit` records a function;
the first call of any recorded function of a module imports numba, runs the module's
:func:`on_numba` hooks (``overload`` registrations, ``prange``), and replaces every recorded
function of that module, in the order they were defined, by its ``numba.njit`` dispatcher in
the module's namespace. Kernels calling other kernels then compile against dispatchers, as
with a plain ``@njit``; ``cache=True`` works as usual.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["compile_module", "lazy_njit", "on_numba"]

_PENDING: dict[str, list[tuple[str, Callable, dict[str, Any]]]] = {}
_HOOKS: dict[str, list[Callable[[Any], None]]] = {}
_LOCK = threading.RLock()


def on_numba(hook: Callable[[Any], None]) -> Callable[[Any], None]:
    """Register ``hook(numba)`` to run before the hook's module's kernels are compiled."""
    _HOOKS.setdefault(hook.__module__, []).append(hook)
    return hook


def lazy_njit(**options: Any) -> Callable[[Callable], Callable]:
    """``numba.njit(**options)``, applied when a kernel of the module is first called.

    Args:
        **options: ``numba.njit`` options (``cache``, ``parallel``, ``nogil``, ``inline``).

    Returns:
        A decorator; the decorated name calls the compiled kernel (the plain Python function
        stays available as ``.py_func``).
    """
    def wrap(func: Callable) -> Callable:
        name = func.__module__
        _PENDING.setdefault(name, []).append((func.__name__, func, options))

        @functools.wraps(func)
        def first_call(*args: Any, **kwargs: Any) -> Any:
            compile_module(name)
            return getattr(sys.modules[name], func.__name__)(*args, **kwargs)

        first_call.py_func = func  # type: ignore[attr-defined]
        return first_call

    return wrap


def compile_module(name: str) -> None:
    """Import numba and put the dispatchers of module ``name``'s kernels in place (once)."""
    with _LOCK:
        entries = _PENDING.pop(name, None)
        if entries is None:
            return
        import numba

        module = sys.modules[name]
        for hook in _HOOKS.pop(name, []):
            hook(numba)
        for func_name, func, options in entries:
            setattr(module, func_name, numba.njit(**options)(func))

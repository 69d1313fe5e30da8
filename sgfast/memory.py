"""How much memory a command may use, and the up-front refusal of work that cannot fit.

The budget is SGFAST_MEMORY_BUDGET (bytes, or with a K/M/G suffix) when set, else 60 % of the memory
the machine has available now (MemAvailable of /proc/meminfo, or the physical pages where there is
no /proc). Work that scales with an output size is cut into chunks sized from it; work whose fixed
part alone exceeds it is refused before anything is allocated, with the size and the option that
changes it.
"""
from __future__ import annotations

import os

BUDGET_ENV = "SGFAST_MEMORY_BUDGET"
_SUFFIX = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def available_bytes() -> int:
    """Memory available to new allocations now (bytes)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def parse_bytes(text: str) -> int:
    """'512M', '2G', '1000000' -> bytes; ValueError otherwise."""
    t = text.strip().lower().removesuffix("b")
    mult = _SUFFIX.get(t[-1:], 1)
    value = float(t[:-1] if mult > 1 else t)
    if not value > 0:
        raise ValueError(f"{BUDGET_ENV} must be > 0, got {text!r}")
    return int(value * mult)


def memory_budget() -> int:
    """The budget in bytes (see the module docstring)."""
    text = os.environ.get(BUDGET_ENV)
    if text:
        try:
            return parse_bytes(text)
        except ValueError:
            raise ValueError(f"{BUDGET_ENV} must be a size such as 4G or 512M, got {text!r}") from None
    return int(0.6 * available_bytes())


def gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


class OverBudget(MemoryError):
    """Work that cannot fit the memory budget; the message names the size and what to change."""


def check_fits(needed: int, what: str, change: str, budget: int | None = None):
    """Raise OverBudget when `needed` bytes exceed the budget: '<what> needs N GiB, over the memory
    budget of M GiB; <change> (or set SGFAST_MEMORY_BUDGET)'."""
    budget = memory_budget() if budget is None else budget
    if needed > budget:
        raise OverBudget(f"{what} needs {gib(needed)}, over the memory budget of {gib(budget)}; {change} "
                         f"(or set {BUDGET_ENV})")

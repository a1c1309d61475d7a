"""The kernel's sort: lib/sort.c sort_r(), the heapsort fdt_init_reserved_mem() uses in 6.1."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def kernel_heapsort(items: list[T], cmp: Callable[[T, T], int]) -> list[T]:
    """lib/sort.c sort_r() of Linux 6.1: a bottom-up heapsort, *not* stable.

    ``__rmem_cmp()`` ties every dynamic region (base 0, size 0), so their order
    after fdt_init_reserved_mem()'s sort is whatever this heapsort leaves:
    two dynamic regions come out swapped (smdkv310: region-mfc-right first).
    ``cmp(x, y)`` is negative, zero or positive as ``x`` sorts before, with or
    after ``y``; returns a new list, ``items`` is left alone.
    """
    a = list(items)
    n, ia = len(a), len(a) // 2
    if not ia:
        return a
    while True:
        if ia:
            ia -= 1
        else:
            n -= 1
            if not n:
                break
            a[0], a[n] = a[n], a[0]
        b = ia
        while True:
            c, d = 2 * b + 1, 2 * b + 2
            if d >= n:
                break
            b = c if cmp(a[c], a[d]) >= 0 else d
        if d == n:
            b = c
        while b != ia and cmp(a[ia], a[b]) >= 0:
            b = (b - 1) // 2
        c = b
        while b != ia:
            b = (b - 1) // 2
            a[b], a[c] = a[c], a[b]
    return a

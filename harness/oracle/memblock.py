"""memblock, the early boot allocator: mm/memblock.c.

Mirrors memblock_add(), memblock_remove(), memblock_reserve(),
memblock_phys_free(), memblock_mark_nomap()/memblock_clear_nomap(),
memblock_is_region_memory()/memblock_is_region_reserved(),
memblock_end_of_DRAM(), memblock_phys_mem_size(), for_each_free_mem_range()
and the allocator memblock_find_in_range_node() with
__memblock_find_range_top_down()/__memblock_find_range_bottom_up() behind
memblock_alloc_range_nid() and memblock_phys_alloc_range().
"""

from __future__ import annotations

from harness.boards import MemoryBank
from harness.oracle.facts import PAGE_SIZE, align_up


class Memblock:
    """Just enough of mm/memblock.c: memory (with MEMBLOCK_NOMAP) and reserved ranges.

    Ranges are ``[start, end)`` lists of physical addresses in bytes, kept
    sorted and merged as memblock merges neighbours with equal flags; addresses
    wrap at the ``phys_addr_t`` width.  ``ram`` becomes memblock.memory;
    ``mask`` is all ones in ``phys_addr_t`` (PHYS_ADDR_MAX).
    """

    def __init__(self, ram: tuple[MemoryBank, ...], mask: int) -> None:
        self.mask = mask
        self.memory: list[tuple[int, int, bool]] = []  # (start, end, nomap)
        self.reserved: list[tuple[int, int]] = []
        self.current_limit = mask  # MEMBLOCK_ALLOC_ANYWHERE
        for bank in ram:
            self.add(bank.base, bank.size)

    def _cap_end(self, base: int, size: int) -> int:
        """memblock_cap_size(): the end of ``[base, base + size)``, clipped to PHYS_ADDR_MAX."""
        return min(base + size, self.mask)

    def _split(self, start: int, end: int) -> list[tuple[int, int, bool, bool]]:
        """Memory regions cut at ``start`` and ``end``: ``(s, e, nomap, inside)``."""
        out = []
        for s, e, nomap in self.memory:
            for ps, pe in ((s, min(e, start)), (max(s, start), min(e, end)), (max(s, end), e)):
                if ps < pe:
                    out.append((ps, pe, nomap, start <= ps and pe <= end))
        return out

    def add(self, base: int, size: int) -> None:
        """memblock_add(): the parts of ``[base, base + size)`` not yet memory become memory."""
        start, end = base, self._cap_end(base, size)
        holes, cur = [], start
        for s, e, _ in self.memory:
            if e <= cur or s >= end:
                continue
            if s > cur:
                holes.append((cur, s, False))
            cur = max(cur, e)
        if cur < end:
            holes.append((cur, end, False))
        self.memory = _merge_flagged(self.memory + holes)

    def _flag(self, base: int, size: int, nomap: bool) -> None:
        """Set MEMBLOCK_NOMAP to ``nomap`` on the memory inside ``[base, base + size)``."""
        end = self._cap_end(base, size)
        self.memory = _merge_flagged([(s, e, nomap if inside else f)
                                      for s, e, f, inside in self._split(base, end)])

    def mark_nomap(self, base: int, size: int) -> None:
        """memblock_mark_nomap(): flag the parts of ``[base, base + size)`` that are memory."""
        self._flag(base, size, True)

    def clear_nomap(self, base: int, size: int) -> None:
        """memblock_clear_nomap()."""
        self._flag(base, size, False)

    def remove(self, base: int, size: int) -> None:
        """memblock_remove()."""
        end = self._cap_end(base, size)
        self.memory = [(s, e, f) for s, e, f, inside in self._split(base, end) if not inside]

    def reserve(self, base: int, size: int) -> None:
        """memblock_reserve() (also outside memory, as the kernel allows)."""
        if size:
            self.reserved = _merge(self.reserved + [(base, self._cap_end(base, size))])

    def free(self, base: int, size: int) -> None:
        """memblock_phys_free()."""
        end = self._cap_end(base, size)
        self.reserved = [p for s, e in self.reserved
                         for p in ((s, min(e, base)), (max(s, end), e)) if p[0] < p[1]]

    def is_region_reserved(self, base: int, size: int) -> bool:
        """memblock_is_region_reserved(): does ``[base, base + size)`` overlap a reservation?"""
        end = self._cap_end(base, size)
        return any(s < end and base < e for s, e in self.reserved)

    def overlaps_memory(self, base: int, size: int) -> bool:
        """Does ``[base, base + size)`` overlap memblock.memory (NOMAP included)?"""
        end = self._cap_end(base, size)
        return any(s < end and base < e for s, e, _ in self.memory)

    def is_region_memory(self, base: int, size: int) -> bool:
        """memblock_is_region_memory(): is ``[base, base + size)`` inside one memory region?"""
        end = self._cap_end(base, size)  # regions of different flags are separate regions
        return any(s <= base and end <= e for s, e, _ in self.memory)

    def end_of_dram(self) -> int:
        """memblock_end_of_DRAM()."""
        return self.memory[-1][1] if self.memory else 0

    def phys_mem_size(self) -> int:
        """memblock_phys_mem_size(): bytes of memory, NOMAP included."""
        return sum(e - s for s, e, _ in self.memory)

    def free_ranges(self) -> list[tuple[int, int]]:
        """for_each_free_mem_range(): memory minus reserved, NOMAP skipped, ascending."""
        out = []
        for s, e, nomap in self.memory:
            if nomap:
                continue
            cur = s
            for rs, re_ in self.reserved:
                if re_ <= cur or rs >= e:
                    continue
                if rs > cur:
                    out.append((cur, rs))
                cur = max(cur, re_)
            if cur < e:
                out.append((cur, e))
        return out

    def find_in_range(self, size: int, align: int, start: int, end: int, bottom_up: bool) -> int:
        """memblock_find_in_range_node() with __memblock_find_range_{top_down,bottom_up}()."""
        if end in (0, 1):  # MEMBLOCK_ALLOC_ACCESSIBLE, MEMBLOCK_ALLOC_NOLEAKTRACE
            end = self.current_limit
        start = max(start, PAGE_SIZE)  # avoid allocating the first page
        end = max(start, end)
        ranges = self.free_ranges()
        for this_start, this_end in (ranges if bottom_up else reversed(ranges)):
            this_start = min(max(this_start, start), end)
            this_end = min(max(this_end, start), end)
            if bottom_up:
                cand = align_up(this_start, align) & self.mask
                if cand < this_end and this_end - cand >= size:
                    return cand
                continue
            if this_end < size:
                continue
            cand = (this_end - size) & ~(align - 1)
            if cand >= this_start:
                return cand
        return 0

    def alloc_range(self, size: int, align: int, start: int, end: int, bottom_up: bool = False) -> int:
        """memblock_alloc_range_nid() / memblock_phys_alloc_range(): find and reserve; 0 on failure."""
        found = self.find_in_range(size, align, start, end, bottom_up)
        if found:
            self.reserve(found, size)
        return found


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``[start, end)`` ranges sorted, overlapping or touching ones merged."""
    out: list[tuple[int, int]] = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _merge_flagged(ranges: list[tuple[int, int, bool]]) -> list[tuple[int, int, bool]]:
    """``(start, end, nomap)`` ranges sorted, neighbours with equal flags merged."""
    out: list[tuple[int, int, bool]] = []
    for s, e, f in sorted(ranges):
        if out and s <= out[-1][1] and f == out[-1][2]:
            out[-1] = (out[-1][0], max(out[-1][1], e), f)
        else:
            out.append((s, e, f))
    return out

"""Reading ``cuobjdump -sass`` text: instructions, loops (back-edge branches) and per-region counts.

A loop is found from its back edge: a ``BRA`` whose target lies at or before the branch itself (the
self-branch after ``EXIT`` that pads a function is not a loop). Its body is every instruction from
the target to the branch. Loops nest by address range; a loop's *own* counts leave out the loops
inside it, so the dynamic count of a kernel is the straight-line part plus, for every loop, its own
counts times the number of times its body runs.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

# "/*0790*/   @!P2 LDG.E.U16 R23, [R12.64+-0xc] ;" -> address, predicate, opcode, modifiers, operands
_INSTRUCTION = re.compile(
    r"^\s*/\*([0-9a-f]{4,})\*/\s+(?:(@!?U?P[T0-9]+)\s+)?([A-Z][A-Z0-9_]*)((?:\.[A-Za-z0-9_]+)*)\s*([^;]*);"
)
_BRANCH_TARGET = re.compile(r"0x([0-9a-f]+)\s*$")
# Width of a global access from its modifiers; plain LDG/STG move 32 bits per thread.
_ACCESS_BITS = {"128": 128, "64": 64, "U16": 16, "S16": 16, "U8": 8, "S8": 8}
# Alignment padding: never on the executed path.
_NOT_ISSUED = {"NOP"}


@dataclass(frozen=True)
class Instruction:
    address: int
    opcode: str
    modifiers: tuple[str, ...]
    predicate: str | None
    operands: str

    @property
    def branch_target(self) -> int | None:
        if self.opcode != "BRA":
            return None
        match = _BRANCH_TARGET.search(self.operands)
        return int(match.group(1), 16) if match else None

    @property
    def access_bits(self) -> int:
        bits = 32
        for modifier in self.modifiers:
            bits = _ACCESS_BITS.get(modifier, bits)
        return bits


def parse_instructions(text: str) -> list[Instruction]:
    """Every instruction of ``cuobjdump -sass`` output (one function), in address order."""
    instructions = []
    for line in text.splitlines():
        match = _INSTRUCTION.match(line)
        if match:
            address, predicate, opcode, modifiers, operands = match.groups()
            instructions.append(Instruction(int(address, 16), opcode, tuple(modifiers.split(".")[1:]),
                                            predicate, operands.strip()))
    return instructions


@dataclass
class Counts:
    """Instructions of one region, as issued by one thread (warp) on one pass."""

    instructions: int = 0
    mufu: int = 0
    bar: int = 0
    shfl: int = 0
    ldg: Counter = field(default_factory=Counter)  # access width in bits -> count
    stg: Counter = field(default_factory=Counter)
    lds: int = 0
    sts: int = 0

    def add(self, instruction: Instruction) -> None:
        op = instruction.opcode
        if op in _NOT_ISSUED:
            return
        self.instructions += 1
        if op == "MUFU":
            self.mufu += 1
        elif op == "BAR":
            self.bar += 1
        elif op == "SHFL":
            self.shfl += 1
        elif op in ("LDG", "LDGSTS"):
            self.ldg[instruction.access_bits] += 1
        elif op == "STG":
            self.stg[instruction.access_bits] += 1
        elif op in ("LDS", "LDSM"):
            self.lds += 1
        elif op == "STS":
            self.sts += 1

    def scaled(self, times: float) -> Counts:
        return Counts(self.instructions * times, self.mufu * times, self.bar * times, self.shfl * times,
                      Counter({k: v * times for k, v in self.ldg.items()}),
                      Counter({k: v * times for k, v in self.stg.items()}),
                      self.lds * times, self.sts * times)

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.instructions + other.instructions, self.mufu + other.mufu, self.bar + other.bar,
                      self.shfl + other.shfl, self.ldg + other.ldg, self.stg + other.stg,
                      self.lds + other.lds, self.sts + other.sts)

    def minus(self, other: Counts) -> Counts:
        ldg, stg = Counter(self.ldg), Counter(self.stg)
        ldg.subtract(other.ldg)
        stg.subtract(other.stg)
        return Counts(self.instructions - other.instructions, self.mufu - other.mufu, self.bar - other.bar,
                      self.shfl - other.shfl, +ldg, +stg, self.lds - other.lds, self.sts - other.sts)


def count(instructions: list[Instruction]) -> Counts:
    counts = Counts()
    for instruction in instructions:
        counts.add(instruction)
    return counts


@dataclass
class Loop:
    """A loop body [head, end] (addresses of its first instruction and of its back-edge branch)."""

    head: int
    end: int
    depth: int = 0  # 0 for an outermost loop
    counts: Counts = field(default_factory=Counts)  # the whole body, inner loops included
    own: Counts = field(default_factory=Counts)  # the body without the loops inside it
    inner: list[int] = field(default_factory=list)  # indices of the loops directly inside
    # Own instructions that a forward branch inside the body can skip (e.g. a store every k-th step):
    # counted on every trip all the same.
    conditional: int = 0

    def contains(self, other: Loop) -> bool:
        return self.head <= other.head and other.end <= self.end and (self.head, self.end) != (other.head,
                                                                                              other.end)


def find_loops(instructions: list[Instruction]) -> list[Loop]:
    """Loops in address order of their head (an outer loop before the loops it holds)."""
    ends: dict[int, int] = {}
    for instruction in instructions:
        target = instruction.branch_target
        if target is not None and target < instruction.address:
            ends[target] = max(ends.get(target, target), instruction.address)
    loops = [Loop(head, end) for head, end in sorted(ends.items(), key=lambda item: (item[0], -item[1]))]
    for i, loop in enumerate(loops):
        loop.counts = count([ins for ins in instructions if loop.head <= ins.address <= loop.end])
        parents = [j for j, outer in enumerate(loops) if outer.contains(loop)]
        loop.depth = len(parents)
        if parents:
            # The innermost enclosing loop is the one that starts last.
            loops[max(parents, key=lambda j: loops[j].head)].inner.append(i)
    for loop in loops:
        loop.own = loop.counts
        for i in loop.inner:
            loop.own = loop.own.minus(loops[i].counts)
        inner = [loops[i] for i in loop.inner]
        own_body = [ins for ins in instructions if loop.head <= ins.address <= loop.end
                    and ins.opcode not in _NOT_ISSUED
                    and not any(child.head <= ins.address <= child.end for child in inner)]
        skips = [(ins.address, ins.branch_target) for ins in own_body
                 if ins.branch_target is not None and ins.address < ins.branch_target <= loop.end + 0x10]
        loop.conditional = sum(1 for ins in own_body if any(a < ins.address < t for a, t in skips))
    return loops


def straight_line(instructions: list[Instruction], loops: list[Loop]) -> Counts:
    """Counts of the instructions outside every loop."""
    return count([ins for ins in instructions
                  if not any(loop.head <= ins.address <= loop.end for loop in loops)])

"""Which of the four pixels of every 2x2 window a stride-2 checkered layer keeps.

A stride-2 layer reads its input at an offset `(dy, dx)` in `{0, 1}^2` and subsamples by 2,
so each offset is one of the four pixels of every 2x2 window. A *sampler* turns every
input submap into output submaps, one per offset group, in group-major order
`[group 0 of submap 0..S-1, group 1 of submap 0..S-1, ...]`:

- the checkered samplers keep two pixels per window: pattern 0 is upper-left + lower-right,
  pattern 1 is upper-right + lower-left; `naive` uses pattern 0 on every submap,
  `lattice` the low-discrepancy sequence of the paper, `random` a random pattern per submap;
- `three_quarters` keeps three pixels (upper-left, lower-right, upper-right): S triples;
- `complete` keeps all four (complete multisampling, the same as dilating every later layer).

Sadigh & Sen, "Improving the Resolution of CNN Feature Maps Efficiently with
Multisampling", arXiv 1805.10766.
"""

from __future__ import annotations

import torch

CHECKERED_SAMPLERS = ("naive", "lattice", "random")
SAMPLERS = CHECKERED_SAMPLERS + ("three_quarters", "complete")

Offset = tuple[int, int]

# The paper's low-discrepancy lattice: entry k gives the pattern (0 or 1) of each of the
# 2**k submaps entering the (k+1)-th subsampling step, so that the pixels that survive k+1
# steps spread evenly over the image (Sadigh & Sen, section 3.2).
_LATTICE = (
    [0],
    [0, 0],
    [0, 1, 0, 1],
    [0, 1, 1, 0, 0, 0, 1, 1],
    [0, 0, 1, 0, 1] * 3 + [0],
    [0, 0, 0, 1, 1] * 6 + [0, 0],
    ([0] * 5 + [1] * 5) * 6 + [0] * 4,
    ([0] * 10 + [1] * 10) * 3 + [0] * 9 + [1] * 10 + ([0] * 10 + [1] * 10) * 2 + [0] * 9,
    [0] * 20 + [1] * 20 + [0] * 20 + [1] * 19 + [0] * 20 + [1] * 20 + [0] * 19
    + [1] * 20 + [0] * 20 + [1] * 19 + [0] * 20 + [1] * 20 + [0] * 19,
    [0, 1] * 256,
)
_PATTERN_OFFSETS = {0: ((0, 0), (1, 1)), 1: ((0, 1), (1, 0))}


def check_sampler(sampler: str, where: str) -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"{where}: sampler={sampler!r} is not one of {list(SAMPLERS)}")


def lattice_patterns(submaps: int) -> list[int]:
    """The paper's lattice patterns for `submaps` input submaps (a power of two up to 512)."""
    index = submaps.bit_length() - 1
    if submaps < 1 or submaps != 1 << index or index >= len(_LATTICE):
        raise ValueError(
            f"sampler='lattice' is defined for 1, 2, 4, ..., {1 << (len(_LATTICE) - 1)} submaps, got {submaps} "
            "(use sampler='naive' or 'random', or fewer subsampling steps)"
        )
    return list(_LATTICE[index])


def sampler_patterns(sampler: str, submaps: int, generator: torch.Generator | None = None) -> list[int]:
    """Pattern (0 or 1) per input submap for a checkered sampler; `random` draws from `generator`."""
    if sampler == "naive":
        return [0] * submaps
    if sampler == "lattice":
        return lattice_patterns(submaps)
    if sampler == "random":
        return torch.randint(2, (submaps,), generator=generator).tolist()
    raise ValueError(f"sampler={sampler!r} has no per-submap patterns; it is one of {list(CHECKERED_SAMPLERS)}")


def offset_groups(sampler: str, submaps: int, generator: torch.Generator | None = None) -> list[list[Offset]]:
    """Read offsets of a stride-2 step: one list of `submaps` offsets `(dy, dx)` per output group."""
    if sampler == "three_quarters":
        return [[offset] * submaps for offset in ((0, 0), (1, 1), (0, 1))]
    if sampler == "complete":
        return [[offset] * submaps for offset in ((0, 0), (1, 0), (0, 1), (1, 1))]
    patterns = sampler_patterns(sampler, submaps, generator)
    return [[_PATTERN_OFFSETS[pattern][group] for pattern in patterns] for group in range(2)]


def groups_per_step(sampler: str) -> int:
    """How many output submaps each input submap gives at a stride-2 step."""
    return {"three_quarters": 3, "complete": 4}.get(sampler, 2)

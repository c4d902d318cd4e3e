"""Tiers and grouping without chaining: every two members of a group are linked above threshold.

Tiers, each with its own score and slider:

* exact: same content hash (score 1; no threshold);
* copy ("same photo"): the geometric check's score (geometry.py); identical files count as
  copies with score 1, so "same photo" includes byte-identical files and the exact tier is its
  cheap subset. Only when every tier is listed together (group_all) are groups made only of
  identical files left to the exact tier, so that no group is shown twice;
* similar ("similar shot"): the centred feature cosine (pairs.py); identical files count with
  score 1. Groups whose every link is already a copy are left to the copy tier.

Grouping rule (complete linkage, greedy): qualifying links are taken strongest first; two
groups merge only when *every* member of one is linked above the threshold with *every*
member of the other. So A~B and B~C never pull A and C together unless A~C too, and a group's
weakest link (shown with it) is the lowest score between any two of its members. A photo is in
at most one group per tier. Groups are listed largest first, then by weakest link.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from imgfinder.core.dupes.pairs import LOOSE_SIMILAR, SIG_GATE, PairList

log = logging.getLogger(__name__)

TIERS = ("exact", "copy", "similar")
TIER_LABELS = {"exact": "exact duplicate", "copy": "same photo", "similar": "similar shot"}
# copy: the geometric check (geometry.py) on 30 flower photos per transform scored copies (crops,
# borders, tilts to 10°, 90° steps, mirrors, resizes) >= 0.89, moved frames (shot-like variants)
# <= 0.27 and different photos 0, so 0.80 keeps a margin on both sides (benchmarks/dupes_copies.py
# lists every miss and false pair with its score). Re-checked with geometry VERSION 4 (the tone
# term; ORB first as in the scan without the CNN) on an --issue-size corpus's 204 hard copies:
# the lowest 0.83 (a 3° tilt); shots made from the original's pixels over a flat background
# reach 0.87-0.90 (1 of 204 called the same photo in the last run, with SIFT as with ORB). Similar 0.70, re-checked with
# EfficientNet-Lite0's ImageNet weights on shot-like variants (shift, crop, exposure, tilt) of the
# flowers (the dataset's own same-photo pairs left out, benchmarks/flowers17_duplicates.txt):
# on the held-out half it keeps precision 0.992 (10 false pairs in 1263, each two photos of
# one class) with shot recall 0.725 (variants made from the original's pixels that the
# same-photo tier lists instead do not count here); the lowest threshold with precision
# >= 0.95 on the calibration half (0.40) reaches shot recall 0.767 at precision 0.972 on the
# test half (benchmarks/duplicates.py).
DEFAULT_THRESHOLDS = {"exact": 1.0, "copy": 0.80, "similar": 0.70}
# Slider ranges: the lower ends are what the pair list keeps, so any setting regroups at once.
THRESHOLD_RANGES = {"exact": (1.0, 1.0), "copy": (0.50, 1.0), "similar": (LOOSE_SIMILAR, 1.0)}
assert SIG_GATE <= 0.9  # copies are verified from this signature similarity on


@dataclass(frozen=True)
class Member:
    image_id: int
    path: str
    hash: str


@dataclass
class DuplicateGroup:
    """Photos every two of which are linked in `tier`; `links` holds the score of each pair."""

    tier: str
    members: list[Member]
    weakest: float
    links: dict[tuple[int, int], float] = field(default_factory=dict)  # member index pair

    def __len__(self) -> int:
        return len(self.members)

    @property
    def paths(self) -> list[str]:
        return [m.path for m in self.members]

    def score(self, i: int, j: int) -> float:
        """Link score between members i and j (1.0 for a member with itself)."""
        if i == j:
            return 1.0
        return self.links[(i, j) if i < j else (j, i)]

    def hash_pairs(self) -> list[tuple[str, str]]:
        hs = [m.hash for m in self.members]
        return [(hs[i], hs[j]) for i in range(len(hs)) for j in range(i + 1, len(hs))]

    def key(self) -> frozenset[int]:
        return frozenset(m.image_id for m in self.members)


def tier_scores(pairs: PairList, tier: str) -> np.ndarray:
    """Each pair's score in a tier (NaN where the tier has no score for it)."""
    if tier == "exact":
        return np.where(pairs.exact, np.float32(1.0), np.float32(np.nan))
    if tier == "copy":
        return pairs.copy
    if tier == "similar":
        return np.where(pairs.exact, np.float32(1.0), pairs.similar)
    raise ValueError(f"unknown tier {tier!r}; choose one of {', '.join(TIERS)}")


def group(
    pairs: PairList,
    tier: str,
    threshold: float | None = None,
    *,
    copy_threshold: float | None = None,
    include_exact: bool = True,
) -> list[DuplicateGroup]:
    """Groups of one tier from the cached pairs; fast enough to run on every slider move.

    `copy_threshold` (default: the copy default) decides, for the similar tier, which groups
    are already shown as copies. `include_exact=False` leaves copy groups made only of
    identical files out (they are in the exact tier), for listings of every tier at once.
    """
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; choose one of {', '.join(TIERS)}")
    t = DEFAULT_THRESHOLDS[tier] if threshold is None else float(threshold)
    scores = tier_scores(pairs, tier)
    with np.errstate(invalid="ignore"):
        ok = pairs.exact | (scores >= t)
    sel = np.flatnonzero(ok)
    if len(sel) == 0:
        return []
    sel = sel[np.argsort(-scores[sel], kind="stable")]
    n = len(pairs.ids)
    clusters = _complete_linkage(pairs.a[sel], pairs.b[sel], n)
    if not clusters:
        return []
    # every member pair of every cluster, looked up vectorised per cluster size
    key_sorted = pairs.a[sel] * n + pairs.b[sel]
    order = np.argsort(key_sorted)
    sel_scores = scores[sel].astype(np.float64)
    if tier == "copy":
        codes = _hash_codes(pairs)
    elif tier == "similar":
        ct = DEFAULT_THRESHOLDS["copy"] if copy_threshold is None else float(copy_threshold)
        with np.errstate(invalid="ignore"):
            sel_copy = (pairs.exact | (pairs.copy >= ct))[sel]
    by_size: dict[int, list[list[int]]] = {}
    for c in clusters:
        by_size.setdefault(len(c), []).append(sorted(c))
    out = []
    for size, cs in by_size.items():
        m = np.asarray(cs, np.int64)  # (groups, size)
        ii, jj = np.triu_indices(size, 1)
        x, y = m[:, ii], m[:, jj]
        where = order[np.searchsorted(key_sorted, x * n + y, sorter=order)]
        link = sel_scores[where]  # (groups, size*(size-1)/2)
        keep = np.ones(len(cs), bool)
        if tier == "copy" and not include_exact:  # identical files only: the exact tier has them
            keep = (codes[x] != codes[y]).any(axis=1)
        elif tier == "similar":  # nothing but copies: the copy tier shows them
            keep = ~sel_copy[where].all(axis=1)
        index_pairs = list(zip(ii.tolist(), jj.tolist()))
        for k in np.flatnonzero(keep).tolist():
            members = [Member(int(pairs.ids[p]), pairs.paths[p], pairs.hashes[p]) for p in cs[k]]
            row = link[k]
            out.append(
                DuplicateGroup(
                    tier, members, float(row.min()), dict(zip(index_pairs, row.tolist()))
                )
            )
    out.sort(key=lambda g: (-len(g.members), -g.weakest, g.members[0].path))
    return out


def _hash_codes(pairs: PairList) -> np.ndarray:
    codes = getattr(pairs, "_hash_code_cache", None)
    if codes is None or len(codes) != len(pairs.hashes):
        _, codes = np.unique(np.asarray(pairs.hashes, dtype=str), return_inverse=True)
        pairs._hash_code_cache = codes  # hashes never change within one PairList
    return codes


def _complete_linkage(a: np.ndarray, b: np.ndarray, n: int) -> list[list[int]]:
    """Greedy clique grouping over links given strongest first (a < b, positions < n)."""
    deg = np.bincount(np.concatenate([a, b]), minlength=n)
    alone = (deg[a] == 1) & (deg[b] == 1)  # a pair touching nothing else is a group as it is
    isolated = np.stack([a[alone], b[alone]], axis=1).tolist()
    a, b = a[~alone], b[~alone]
    linked = set((a.astype(np.int64) * n + b).tolist())
    cluster_of: dict[int, int] = {}
    members: dict[int, list[int]] = {}
    next_id = 0
    for x, y in zip(a.tolist(), b.tolist()):
        cx, cy = cluster_of.get(x), cluster_of.get(y)
        if cx is not None and cx == cy:
            continue
        mx = members[cx] if cx is not None else [x]
        my = members[cy] if cy is not None else [y]
        if len(mx) * len(my) > 1 and not all(
            (min(p, q) * n + max(p, q)) in linked for p in mx for q in my
        ):
            continue  # some member of one would not be linked to some member of the other
        if cx is None:
            cx = next_id
            next_id += 1
            members[cx] = mx
            cluster_of[x] = cx
        mx.extend(my)
        for q in my:
            cluster_of[q] = cx
        if cy is not None:
            del members[cy]
    return isolated + [m for m in members.values() if len(m) > 1]


def group_all(pairs: PairList, thresholds: dict[str, float] | None = None) -> list[DuplicateGroup]:
    """Every tier's groups, exact first, then copies, then similar shots; no pair in two groups."""
    th = dict(DEFAULT_THRESHOLDS) | (thresholds or {})
    out: list[DuplicateGroup] = []
    for tier in TIERS:
        out += group(pairs, tier, th[tier], copy_threshold=th["copy"])
    return without_repeated_pairs(out)


def without_repeated_pairs(groups: list[DuplicateGroup]) -> list[DuplicateGroup]:
    """Groups in the given order (most certain tier first) with no two photos together twice.

    A later group keeps one representative of photos an earlier group already shows together:
    with exact {a, b} listed, the same-photo group {a, b, c} becomes {a, c}, so one review of
    "a and b" is enough and a similar-shot group never repeats copies. Groups left with fewer
    than two photos are dropped. Links and the weakest link are those of the members kept.
    """
    seen: set[frozenset[int]] = set()
    out: list[DuplicateGroup] = []
    for g in groups:
        kept: list[int] = []
        for i, m in enumerate(g.members):
            if all(frozenset((g.members[k].image_id, m.image_id)) not in seen for k in kept):
                kept.append(i)
        if len(kept) < 2:
            continue
        if len(kept) < len(g.members):
            links = {
                (x, y): g.score(kept[x], kept[y])
                for x in range(len(kept))
                for y in range(x + 1, len(kept))
            }
            g = DuplicateGroup(g.tier, [g.members[i] for i in kept], min(links.values()), links)
        ids = [m.image_id for m in g.members]
        seen.update(frozenset((a, b)) for i, a in enumerate(ids) for b in ids[i + 1 :])
        out.append(g)
    return out

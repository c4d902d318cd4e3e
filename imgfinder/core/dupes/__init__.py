"""Duplicates across the library: exact, same-photo and similar-shot tiers, keeper rule, trash.

Pipeline: `scan(lib)` (index neighbours -> candidate pairs, cached as a PairList) ->
`group(pairs, tier, threshold)` (complete-linkage groups, instant) -> `suggest_keeper(group)`
(file facts + suggested keeper with its reason) -> `resolve_group(lib, group, keeper,
trash_fn)` (journaled moves; `undo(lib)` moves them back). No Qt anywhere in this package.
"""

from imgfinder.core.dupes.grouping import (
    DEFAULT_THRESHOLDS,
    THRESHOLD_RANGES,
    TIER_LABELS,
    TIERS,
    DuplicateGroup,
    Member,
    group,
    group_all,
    without_repeated_pairs,
)
from imgfinder.core.dupes.keeper import (
    CRITERIA,
    DEFAULT_FORMATS,
    FileFacts,
    KeeperChoice,
    KeeperRule,
    choose_keeper,
    file_facts,
)
from imgfinder.core.dupes.pairs import PairList, find_pairs
from imgfinder.core.dupes.session import (
    NotIndexedError,
    forget_paths,
    journal_for,
    load_rule,
    load_thresholds,
    mark,
    resolve_group,
    save_rule,
    save_thresholds,
    scan,
    suggest_keeper,
    suggest_keepers,
    undo,
)
from imgfinder.core.dupes.store import DISTINCT, KEEP_BOTH
from imgfinder.core.dupes.trash import (
    Journal,
    ResolveError,
    ResolveResult,
    UndoResult,
    last_resolution,
    quarantine_fn,
    recover,
    resolve,
    undo_last,
)

__all__ = [
    "CRITERIA",
    "DEFAULT_FORMATS",
    "DEFAULT_THRESHOLDS",
    "DISTINCT",
    "KEEP_BOTH",
    "THRESHOLD_RANGES",
    "TIERS",
    "TIER_LABELS",
    "DuplicateGroup",
    "FileFacts",
    "Journal",
    "KeeperChoice",
    "KeeperRule",
    "Member",
    "NotIndexedError",
    "PairList",
    "ResolveError",
    "ResolveResult",
    "UndoResult",
    "choose_keeper",
    "suggest_keeper",
    "suggest_keepers",
    "file_facts",
    "find_pairs",
    "forget_paths",
    "group",
    "group_all",
    "without_repeated_pairs",
    "journal_for",
    "last_resolution",
    "load_rule",
    "load_thresholds",
    "mark",
    "quarantine_fn",
    "recover",
    "resolve",
    "resolve_group",
    "save_rule",
    "save_thresholds",
    "scan",
    "undo",
    "undo_last",
]

"""SQL of the duplicate finder's state: content-hash-keyed signatures, verified-pair
scores and keeper facts (tables created on first use, `schema.DUPE_TABLES`) and the catalog's
own `decisions` table. Pure storage: what the blobs mean, versions and rules are core/dupes/store.py's."""

from __future__ import annotations

from collections.abc import Iterable

from imgfinder.core.catalog.schema import DUPE_TABLES


class DupeTables:
    """`catalog.dupes`: the duplicate finder's rows, keyed by content hash (never by path)."""

    def __init__(self, catalog):
        self._catalog = catalog

    def ensure_tables(self) -> None:
        with self._catalog.transaction() as c:
            for stmt in DUPE_TABLES.split(";"):
                if stmt.strip():
                    c.execute(stmt)

    # -- signatures --------------------------------------------------------------------
    def _by_hash(self, table: str, column: str, version: int, hashes: Iterable[str]) -> dict:
        """content hash -> `column` of `table`'s rows of this version, for the hashes it has."""
        want = list(dict.fromkeys(hashes))
        out: dict = {}
        for i in range(0, len(want), 500):
            chunk = want[i : i + 500]
            q = (
                f"SELECT hash, {column} FROM {table} WHERE version=? AND hash IN "
                f"({','.join('?' * len(chunk))})"
            )
            out.update(self._catalog.execute(q, [version, *chunk]))
        return out

    def signature_blobs(self, version: int, hashes: Iterable[str]) -> dict[str, bytes]:
        """content hash -> stored signature blob of this version, for the hashes that have one."""
        return self._by_hash("dupe_signatures", "sig", version, hashes)

    def _save_by_hash(self, table: str, column: str, version: int, values: dict) -> None:
        """Store content hash -> `column` rows of this version in `table`, one transaction."""
        if not values:
            return
        with self._catalog.transaction() as c:
            c.executemany(
                f"INSERT OR REPLACE INTO {table} (hash, version, {column}) VALUES (?, ?, ?)",
                [(h, version, v) for h, v in values.items()],
            )

    def save_signature_blobs(self, version: int, blobs: dict[str, bytes]) -> None:
        self._save_by_hash("dupe_signatures", "sig", version, blobs)

    def clear_signatures(self) -> None:
        """Forget every stored signature (benchmarks measure a first scan with this)."""
        with self._catalog.transaction() as c:
            c.execute("DELETE FROM dupe_signatures")

    # -- verified pairs ------------------------------------------------------------------
    def verified_scores(self, version: int) -> dict[tuple[str, str], float]:
        cur = self._catalog.execute(
            "SELECT hash_a, hash_b, score FROM dupe_verified WHERE version=?", (version,)
        )
        return {(a, b): float(s) for a, b, s in cur}

    def save_verified_scores(self, version: int, scores: Iterable[tuple[str, str, float]]) -> None:
        rows = [(a, b, version, s) for a, b, s in scores]
        if not rows:
            return
        with self._catalog.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO dupe_verified (hash_a, hash_b, version, score) "
                "VALUES (?, ?, ?, ?)",
                rows,
            )

    # -- keeper facts ----------------------------------------------------------------------
    def fact_rows(self, version: int, hashes: Iterable[str]) -> dict[str, str]:
        """content hash -> stored keeper facts (JSON text) of this version, where stored."""
        return self._by_hash("dupe_facts", "facts", version, hashes)

    def save_fact_rows(self, version: int, rows: dict[str, str]) -> None:
        self._save_by_hash("dupe_facts", "facts", version, rows)

    # -- decisions -----------------------------------------------------------------------
    def decisions(self) -> dict[tuple[str, str], str]:
        cur = self._catalog.execute("SELECT hash_a, hash_b, decision FROM decisions")
        return {(a, b): d for a, b, d in cur}

    def decision_rows(self) -> list[tuple]:
        """(hash_a, hash_b, decision, at) of every decision, sorted (for the backup)."""
        return list(
            self._catalog.execute(
                "SELECT hash_a, hash_b, decision, at FROM decisions ORDER BY hash_a, hash_b"
            )
        )

    def set_decisions(self, pairs: Iterable[tuple[str, str]], decision: str, at: float) -> None:
        with self._catalog.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO decisions (hash_a, hash_b, decision, at) "
                "VALUES (?, ?, ?, ?)",
                [(a, b, decision, at) for a, b in pairs],
            )

    def delete_decisions(self, pairs: Iterable[tuple[str, str]]) -> None:
        with self._catalog.transaction() as c:
            c.executemany("DELETE FROM decisions WHERE hash_a=? AND hash_b=?", list(pairs))

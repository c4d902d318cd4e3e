"""The SQLite catalog: roots, images with status/errors, vector rows, photo metadata, the
duplicate finder's state and user decisions. Only this package executes SQL (a rule test,
tests/core/test_core_rules.py, checks it); everything else calls its named methods.

- `db.py`: `Catalog`, the connection per thread, transactions and the named reads and writes;
- `schema.py`: tables, additive migrations, atomic creation of a new file;
- `dupes.py`: `catalog.dupes`, the duplicate finder's tables (keyed by content hash);
- `photo_meta.py`: the photo-metadata columns (which facts: core/photometa.py);
- `text.py`: file names that are not UTF-8, stored losslessly (`path_to_db`/`path_from_db`);
- `recovery.py`: a damaged catalog is moved aside (never deleted) and rebuilt from what can
  still be read plus `catalog-backup.json`, a small snapshot of folders and decisions written
  atomically after every change of either (`Catalog.write_backup`).

The catalog checks itself at open (a zero-byte file or a failed `PRAGMA quick_check` is
damage, raised as `CatalogDamagedError`).
"""

from imgfinder.core.catalog.db import Catalog, ImageRow, ImageWrite
from imgfinder.core.catalog.recovery import Recovery, recover_catalog, restore_missing_catalog
from imgfinder.core.catalog.schema import _SCHEMA, SCHEMA_VERSION, SIGNED
from imgfinder.core.catalog.text import display_path, path_from_db, path_to_db

__all__ = [
    "SCHEMA_VERSION",
    "SIGNED",
    "_SCHEMA",
    "Catalog",
    "ImageRow",
    "ImageWrite",
    "Recovery",
    "display_path",
    "path_from_db",
    "path_to_db",
    "recover_catalog",
    "restore_missing_catalog",
]

"""One source of truth for the data directory: a Library's folders (catalog, vectors, index,
models, cache, logs, the duplicate journal) all follow its data dir, and a Library opened
without one uses the process's (`paths`), the same folders."""

from __future__ import annotations

import shutil

import pytest

from imgfinder import paths
from imgfinder.core import dupes
from imgfinder.core.extract import ModelConfig
from imgfinder.core.library import Library
from imgfinder.core.weights import default_weights_file
from imgfinder.errors import WeightsUnavailableError
from tests.common import TEST_INPUT_SIZE


def test_every_folder_follows_the_librarys_data_dir(tmp_path, _isolated):
    own = tmp_path / "elsewhere"
    lib = Library(own, ModelConfig(device="cpu"), allow_download=False)
    try:
        assert paths.data_dir() == _isolated.resolve() != own.resolve()  # the process's differs
        d = lib.dirs
        assert d.root == lib.data_dir == own.resolve()
        for folder in (d.models, d.cache, d.logs, d.index, d.vectors):
            assert folder.parent == own.resolve() and folder.is_dir()
        assert lib.catalog.path == d.catalog
        assert lib.index_path.parent == d.index and lib.centre_path.parent == d.index
        assert dupes.journal_for(lib).path == d.journal == own.resolve() / "dupes-journal.jsonl"
        # the default (ResNet50) weights are looked up in the library's models folder ...
        with pytest.raises(WeightsUnavailableError, match=str(d.models)):
            _ = lib.extractor
        assert not (_isolated / "models").exists()  # ... never in the process's
    finally:
        lib.close()


def test_default_weights_in_the_librarys_models_folder_are_used(tmp_path, weights_file):
    own = tmp_path / "lib"
    cfg = ModelConfig(device="cpu", input_size=TEST_INPUT_SIZE)
    target = default_weights_file(cfg.spec, own / "models")
    target.parent.mkdir(parents=True)
    shutil.copyfile(weights_file, target)
    lib = Library(own, cfg, allow_download=False)
    try:
        assert lib.extractor.weights_source == str(target)
    finally:
        lib.close()


def test_a_library_without_a_data_dir_uses_the_process_one(tmp_path):
    paths.set_data_dir(tmp_path / "chosen")
    lib = Library(None, ModelConfig(device="cpu"))
    try:
        assert lib.dirs == paths.current()
        assert lib.data_dir == paths.data_dir() == (tmp_path / "chosen").resolve()
        assert lib.dirs.models == paths.models_dir() and lib.dirs.cache == paths.cache_dir()
        assert dupes.Journal().path == dupes.journal_for(lib).path
    finally:
        lib.close()

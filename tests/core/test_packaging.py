"""Packaging: the PyInstaller spec, its launcher and the Linux desktop-integration script.

No PyInstaller build runs here (it takes minutes and gigabytes with torch); the spec is compiled
and executed against stand-ins for PyInstaller's build classes instead.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
SPEC = PACKAGING / "imgfinder.spec"
LAUNCHER = PACKAGING / "launcher.py"
INSTALL_SCRIPT = PACKAGING / "install-linux-desktop.sh"
APP_ID = "io.github.imgfinder.ImgFinder"


def load_launcher():
    # Loaded by path: a packaging/ directory must never shadow the PyPI `packaging` package.
    spec = importlib.util.spec_from_file_location("imgfinder_bundle_launcher", LAUNCHER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- PyInstaller spec -------------------------------------------------------------------------


class _Target:
    """Records the arguments of a PyInstaller build target (Analysis, EXE, ...)."""

    instances: list[_Target] = []

    def __init__(self, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs
        self.pure = self.scripts = self.binaries = self.datas = []
        _Target.instances.append(self)


def run_spec(monkeypatch, platform: str) -> dict[str, list[_Target]]:
    hooks = types.ModuleType("PyInstaller.utils.hooks")
    hooks.collect_dynamic_libs = lambda package, **kwargs: [
        (f"/site-packages/{package}/_C_stable.so", package)
    ]
    for name in ("PyInstaller", "PyInstaller.utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "PyInstaller.utils.hooks", hooks)
    monkeypatch.setattr(sys, "platform", platform)

    made: dict[str, list[_Target]] = {}

    def target(kind):
        def make(*args, **kwargs):
            obj = _Target(*args, **kwargs)
            made.setdefault(kind, []).append(obj)
            return obj

        return make

    namespace = {
        "__name__": "__main__",
        "__file__": str(SPEC),
        "SPECPATH": str(PACKAGING),
        **{kind: target(kind) for kind in ("Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE")},
    }
    exec(compile(SPEC.read_text(encoding="utf-8"), str(SPEC), "exec"), namespace)
    return made


def test_spec_is_valid_python():
    compile(SPEC.read_text(encoding="utf-8"), str(SPEC), "exec")


@pytest.mark.parametrize("platform", ["linux", "win32", "darwin"])
def test_spec_builds_a_one_folder_app(monkeypatch, platform):
    made = run_spec(monkeypatch, platform)
    (analysis,) = made["Analysis"]
    (script,) = analysis.args[0]
    assert Path(script) == LAUNCHER

    kw = analysis.kwargs
    assert "tests" in kw["excludes"]
    for module in ("annoy", "PySide6.QtWidgets", "imgfinder.cli", "imgfinder.core.model"):
        assert module in kw["hiddenimports"]
    # every imgfinder module, found in the source tree, is a hidden import
    package_modules = {m for m in kw["hiddenimports"] if m.split(".")[0] == "imgfinder"}
    assert len(package_modules) == len(
        [p for p in (ROOT / "imgfinder").rglob("*.py") if p.name != "__main__.py"]
    )
    assert "imgfinder.__main__" not in package_modules
    # torchvision's operator libraries are loaded with torch.ops.load_library(): collected
    assert ("/site-packages/torchvision/_C_stable.so", "torchvision") in kw["binaries"]

    # every data file exists and lands under resources/ in the bundle
    targets = {}
    for src, dest in kw["datas"]:
        assert Path(src).is_file(), src
        assert Path(dest).parts[0] == "resources"
        targets[Path(dest) / Path(src).name] = src
    for needed in (
        "resources/imgfinder.desktop",
        f"resources/{APP_ID}.metainfo.xml",
        "resources/icons/imgfinder.svg",
        "resources/icons/hicolor/256x256/apps/imgfinder.png",
    ):
        assert Path(needed) in targets, needed
    assert not any(Path(src).suffix == ".py" for src in targets.values())

    exes = {exe.kwargs["name"]: exe.kwargs for exe in made["EXE"]}
    assert set(exes) == {"imgfinder", "imgfinder-cli"}
    assert exes["imgfinder"]["console"] is False
    assert exes["imgfinder-cli"]["console"] is True
    assert all(exe["exclude_binaries"] for exe in exes.values())  # one-folder, not one-file
    (collect,) = made["COLLECT"]
    assert collect.kwargs["name"] == "imgfinder"

    icon = exes["imgfinder"]["icon"]
    if platform == "linux":
        assert icon is None
        assert "BUNDLE" not in made
    else:
        assert Path(icon).is_file()
        assert Path(icon).suffix == {"win32": ".ico", "darwin": ".icns"}[platform]
    if platform == "darwin":
        (bundle,) = made["BUNDLE"]
        assert bundle.kwargs["bundle_identifier"] == APP_ID
        assert bundle.kwargs["name"] == "ImgFinder.app"


# --- launcher ---------------------------------------------------------------------------------


def test_launcher_imports_and_finds_the_cli():
    launcher = load_launcher()
    from imgfinder.cli import main

    assert callable(main)
    assert callable(launcher.main)
    assert launcher.is_bundled() is False


@pytest.mark.parametrize(
    ("argv", "executable", "frozen", "expected"),
    [
        ([], "/opt/imgfinder/imgfinder", True, ["gui"]),
        ([], r"C:\Program Files\imgfinder\imgfinder.exe", True, ["gui"]),
        ([], r"C:\Program Files\imgfinder\imgfinder-cli.exe", True, []),
        (["-psn_0_4242"], "/Applications/ImgFinder.app/Contents/MacOS/imgfinder", True, ["gui"]),
        (["index", "~/Pictures"], "/opt/imgfinder/imgfinder", True, ["index", "~/Pictures"]),
        ([], "/usr/bin/python3", False, []),
        (["gui"], "/usr/bin/python3", False, ["gui"]),
    ],
)
def test_launcher_defaults_to_gui_only_in_a_bundle(argv, executable, frozen, expected):
    launcher = load_launcher()
    assert launcher.bundle_argv(argv, executable, frozen) == expected


def test_launcher_runs_the_cli():
    import imgfinder

    proc = subprocess.run(
        [sys.executable, str(LAUNCHER), "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"imgfinder {imgfinder.__version__}"


# --- Linux desktop integration ----------------------------------------------------------------


def _bash() -> str:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not available")
    return bash


def test_install_script_is_bash_n_clean():
    proc = subprocess.run([_bash(), "-n", str(INSTALL_SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_install_script_installs_and_uninstalls(tmp_path):
    bash = _bash()
    prefix = tmp_path / "share"
    fake_exe = tmp_path / "bundle" / "imgfinder"
    fake_exe.parent.mkdir()
    fake_exe.write_text("#!/bin/sh\n")
    fake_exe.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    proc = subprocess.run(
        [bash, str(INSTALL_SCRIPT), "--prefix", str(prefix), "--exec", str(fake_exe)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    desktop = prefix / "applications" / f"{APP_ID}.desktop"
    installed = [
        desktop,
        prefix / "metainfo" / f"{APP_ID}.metainfo.xml",
        prefix / "icons/hicolor/scalable/apps/imgfinder.svg",
        *(prefix / f"icons/hicolor/{n}x{n}/apps/imgfinder.png" for n in (16, 48, 256, 512)),
    ]
    for path in installed:
        assert path.is_file(), path
    text = desktop.read_text(encoding="utf-8")
    assert f"\nExec={fake_exe} gui %U\n" in text
    assert f"\nTryExec={fake_exe}\n" in text

    proc = subprocess.run(
        [bash, str(INSTALL_SCRIPT), "--prefix", str(prefix), "--uninstall"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert not any(path.exists() for path in installed)


def test_install_script_rejects_unknown_arguments(tmp_path):
    proc = subprocess.run(
        [_bash(), str(INSTALL_SCRIPT), "--bogus"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 2
    assert "unknown argument" in proc.stderr

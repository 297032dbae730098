"""The product's wheel holds the product only: the development portal (`devportal/`, with `make
run`'s driver) is a development tool beside it, never shipped (issue 11)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_wheel_holds_b24app_and_no_development_portal(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy of the checkout, so the build leaves no trace in it
    ignore = shutil.ignore_patterns(".venv", "instance", "test-artifacts", "*.egg-info", ".*")
    shutil.copytree(REPO, source, ignore=ignore)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(source)],
        check=True,
        cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("b24app-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "b24app/__init__.py" in names
    assert "b24app/delivery/worker.py" in names
    assert "b24app/settings_page/translations/ru/LC_MESSAGES/messages.mo" in names
    assert [n for n in names if "devportal" in n or "devrun" in n] == []
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)

"""Atomic folder writes: the old folder stays intact on failure, no temporary is left behind."""

from __future__ import annotations

import pytest

from recforge.io import atomic_folder


def test_atomic_folder_replaces_on_success_and_keeps_old_on_error(tmp_path):
    target = tmp_path / "out"
    with atomic_folder(target) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"
    with atomic_folder(target) as tmp:
        (tmp / "b.txt").write_text("two")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]  # replaced, not merged
    with pytest.raises(RuntimeError), atomic_folder(target) as tmp:
        (tmp / "c.txt").write_text("half")
        raise RuntimeError("boom")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporaries left


def test_published_files_and_folders_follow_the_umask(tmp_path):
    """Temporaries used to be made by tempfile (0600 files, 0700 folders), so every published
    bundle, CSV and chart was private to its writer; now they get the umask's modes."""
    import os
    import stat

    from recforge.io import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "scores.csv", "a\n")
        with atomic_folder(tmp_path / "bundle") as tmp:
            (tmp / "meta.json").write_text("{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "scores.csv").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "bundle").stat().st_mode) == 0o755

"""A reports folder that cannot be written after the load committed: the run stays loaded, flagged, and is
completed later by ``report RUN_ID``.

Two ways to fill the disk: the ``report.write=enospc`` injection point (every audit file write fails as on a
full disk, between the committed load and its audit trail), and, where this machine lets the tests mount one,
a real 8 MB tmpfs filled to the last byte while the load is held before its commit.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from pathlib import Path

import pytest

from support import Project, query, runs, wait_for_mark


def _can_mount_tmpfs() -> bool:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        try:
            mounted = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", d], capture_output=True
            )
        except OSError:  # no mount(8) at all
            return False
        if mounted.returncode != 0:
            return False
        subprocess.run(["umount", d], check=True)
    return True


# the tmpfs case only where the mount is possible (root, or a container allowed to mount): CI without it runs
# the injection case alone, and skips nothing
WAYS = ["inject", *(["tmpfs"] if _can_mount_tmpfs() else [])]


@contextlib.contextmanager
def _small_tmpfs(where: Path):
    where.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(folder: Path) -> Path:
    """Write until the filesystem is full; return the filler (delete it to make room again)."""
    filler = folder / "filler"
    with open(filler, "wb") as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
    return filler


def _run_on_a_full_disk(
    project: Project, way: str, tmp_path: Path
) -> tuple[subprocess.CompletedProcess, Path | None]:
    if way == "inject":
        proc = project.spawn("run", env={"EVENTPIPE_INJECT": "report.write=enospc"})
        out, err = proc.communicate(timeout=180)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), None
    mark = tmp_path / f"reached-{uuid.uuid4().hex[:6]}"
    proc = project.spawn(
        "run",
        env={"EVENTPIPE_INJECT": "load.before_commit=sleep:4", "EVENTPIPE_INJECT_MARK": str(mark)},
    )
    wait_for_mark(mark, proc)
    filler = _fill(project.reports)  # the disk fills while the load is about to commit
    out, err = proc.communicate(timeout=180)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), filler


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("way", WAYS)
def test_a_full_reports_disk_after_the_load_leaves_the_run_loaded_and_report_completes_it(
    project, api, way, tmp_path
):
    if way == "tmpfs":
        stack = contextlib.ExitStack()
        stack.enter_context(_small_tmpfs(project.reports))
    else:
        stack = contextlib.nullcontext()
    with stack:
        proc, filler = _run_on_a_full_disk(project, way, tmp_path)
        assert proc.returncode == 3, proc.stderr
        assert "Traceback" not in proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        (row,) = runs(project.database_url)
        loaded = row["loaded"]
        assert errors == [errors[0]] and errors[0].startswith(
            f"error: run {row['run_id']} loaded {loaded:,} row(s)"
        ), proc.stderr
        assert "could not be written" in errors[0] and "No space left on device" in errors[0]
        assert f"run `report {row['run_id']}`" in errors[0]
        # loaded, and recorded so: succeeded (rows, dead letters, watermark committed), flagged
        assert (row["status"], row["failure_class"]) == ("succeeded", "audit incomplete")
        assert query(project.database_url, "SELECT count(*) FROM analytics")[0][0] == loaded > 0
        assert query(project.database_url, "SELECT count(*) FROM pipeline_state")[0][0] == 1
        assert not [p for p in project.reports.rglob("*.tmp")], "a temporary file stayed behind"
        folder = project.reports / row["run_id"]
        assert not (folder / "ledger.json").exists()  # not sealed: the folder is not complete

        if filler is not None:
            filler.unlink()  # room again
        assert project.cli("report", row["run_id"]) == 0
        after = runs(project.database_url)[0]
        assert (after["status"], after["failure_class"], after["error"]) == ("succeeded", None, None)
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["status"] == "succeeded" and metrics["counts"]["loaded"] == loaded
        for name in (
            "run.html",
            "ledger.json",
            "metrics.prom",
            "01_extract.html",
            "02_transform_quality.html",
        ):
            assert (folder / name).is_file(), name
        assert row["run_id"] in (project.reports / "index.html").read_text()
        assert project.cli("report", "verify") == 0

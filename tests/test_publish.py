"""The public student repository holds the release and vaekit, nothing secret, and publish destroys nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.config import REPO
from autograder.publish import MANIFEST, PublishError, _sha, publish

LICENSE = "MIT License\n\nCopyright (c) the course staff\n"
WORKFLOW = "name: links\non: push\njobs: {}\n"


def git(repo: Path, *args: str) -> str:
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.org",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.org",
    )
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env).stdout


@pytest.fixture
def public(tmp_path) -> Path:
    """A clone of the public repository: a git repository with its own LICENSE and .github/."""
    repo = tmp_path / "vae-course-public"
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / "LICENSE").write_text(LICENSE)
    (repo / ".github" / "workflows" / "links.yml").write_text(WORKFLOW)
    git(repo.parent, "init", "-q", "-b", "main", str(repo))
    git(repo, "add", "LICENSE", ".github/workflows/links.yml")
    git(repo, "commit", "-q", "-m", "the public repository's own files")
    return repo


def run_publish(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """`python -m autograder publish ...` in the repository `cwd` (this one, or a copy)."""
    env = dict(os.environ, PYTHONPATH=str(cwd))
    return subprocess.run(
        [sys.executable, "-m", "autograder", "publish", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def notebooks_in(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / "assignments").glob("*.ipynb"))


# ---------------------------------------------------------------------------------- the real command
def test_publish_into_a_git_clone_keeps_its_files_and_follows_a_release_schedule(public):
    head = git(public, "rev-parse", "HEAD")
    proc = run_publish(str(public), "--notebooks", "01", "02")
    assert proc.returncode == 0, proc.stderr
    assert "published 2 notebook(s)" in proc.stdout and "01_autoencoder, 02_vae" in proc.stdout
    # the public repository's own files and its history are untouched
    assert (public / "LICENSE").read_text() == LICENSE
    assert (public / ".github" / "workflows" / "links.yml").read_text() == WORKFLOW
    assert git(public, "rev-parse", "HEAD") == head
    assert all(line.startswith("??") for line in git(public, "status", "--porcelain").splitlines())
    # only the scheduled notebooks, everywhere
    assert notebooks_in(public) == ["01_autoencoder.ipynb", "02_vae.ipynb"]
    readme = (public / "README.md").read_text()
    assert "01_autoencoder" in readme and "02_vae" in readme and "03_beta" not in readme
    manifest = json.loads((public / MANIFEST).read_text())
    assert manifest["notebooks"] == ["01_autoencoder", "02_vae"]
    assert "LICENSE" not in manifest["files"] and not any(f.startswith(".git") for f in manifest["files"])
    assert {f.split("/")[0] for f in manifest["files"]} == {
        "assignments",
        "vaekit",
        "pyproject.toml",
        "environment.yml",
        "README.md",
    }

    git(public, "add", "-A")
    git(public, "commit", "-q", "-m", "week 1")
    # week 3: one more notebook; naming only the new one keeps the earlier ones
    proc = run_publish(str(public), "--notebooks", "03_beta")
    assert proc.returncode == 0, proc.stderr
    assert notebooks_in(public) == ["01_autoencoder.ipynb", "02_vae.ipynb", "03_beta.ipynb"]
    assert "still published from before: 01_autoencoder, 02_vae" in proc.stdout
    changed = sorted(line[3:] for line in git(public, "status", "--porcelain", "-uall").splitlines())
    assert changed == [MANIFEST, "README.md", "assignments/03_beta.ipynb"]
    assert (public / "LICENSE").read_text() == LICENSE

    # the whole course
    proc = run_publish(str(public))
    assert proc.returncode == 0, proc.stderr
    assert notebooks_in(public) == sorted(p.name for p in (REPO / "assignments").glob("*.ipynb"))
    assert (public / ".git").is_dir() and (public / ".github" / "workflows" / "links.yml").exists()


def test_publish_refuses_to_replace_the_public_repos_own_files_without_overwrite(public):
    (public / "README.md").write_text("# The public README, written by hand\n")
    proc = run_publish(str(public))
    assert proc.returncode == 2
    assert "README.md" in proc.stderr and "--overwrite" in proc.stderr and "Nothing was written" in proc.stderr
    assert sorted(p.name for p in public.iterdir()) == [".git", ".github", "LICENSE", "README.md"]

    proc = run_publish(str(public), "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert "replaced (not written by publish, or edited since): README.md" in proc.stdout
    backups = list(public.parent.glob("vae-course-public.publish-backup-*"))
    assert len(backups) == 1 and str(backups[0]) in proc.stdout
    assert (backups[0] / "README.md").read_text() == "# The public README, written by hand\n"
    assert (public / "LICENSE").read_text() == LICENSE


@pytest.fixture
def course_copy(tmp_path) -> Path:
    """A copy of this repository's parts that `python -m autograder publish` reads."""
    copy = tmp_path / "course"
    copy.mkdir()
    for name in ["autograder", "vaekit", "solutions", "assignments"]:
        shutil.copytree(REPO / name, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "vaekit_work"))
    for name in ["pyproject.toml", "environment.yml"]:
        shutil.copy2(REPO / name, copy / name)
    return copy


def test_a_release_older_than_course_toml_is_refused(course_copy, public):
    toml = course_copy / "autograder" / "course.toml"
    toml.write_text(toml.read_text().replace('ref = "main"', 'ref = "fall-2025"'))
    proc = run_publish(str(public), cwd=course_copy)
    assert proc.returncode == 2, proc.stdout
    assert "assignments/ is stale, nothing was published" in proc.stderr
    assert (
        "01_autoencoder.ipynb: the Colab badge points at example-org/vae-course@main, course.toml says "
        "example-org/vae-course@fall-2025" in proc.stderr
    )
    assert "the pip line points at example-org/vae-course@main" in proc.stderr
    assert "python -m autograder release" in proc.stderr
    assert sorted(p.name for p in public.iterdir()) == [".git", ".github", "LICENSE"]


def test_a_release_older_than_the_solutions_is_refused(course_copy, public):
    source = course_copy / "solutions" / "03_beta.ipynb"
    nb = json.loads(source.read_text())
    markdown = next(
        c for c in nb["cells"] if c["cell_type"] == "markdown" and not c.get("metadata", {}).get("nbgrader")
    )
    markdown["source"] = ["A sentence added after the release.\n\n", *markdown["source"]]
    source.write_text(json.dumps(nb, indent=1))
    proc = run_publish(str(public), cwd=course_copy)
    assert proc.returncode == 2, proc.stdout
    assert "assignments/03_beta.ipynb differs from what solutions/03_beta.ipynb and course.toml make" in proc.stderr
    assert "01_autoencoder" not in proc.stderr and "badge" not in proc.stderr
    assert not (public / "assignments").exists()

    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "release"],
        cwd=course_copy,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(course_copy)),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    proc = run_publish(str(public), cwd=course_copy)
    assert proc.returncode == 0, proc.stderr
    assert "A sentence added after the release." in (public / "assignments" / "03_beta.ipynb").read_text()


def test_unknown_notebook_names_are_a_clear_error(public):
    proc = run_publish(str(public), "--notebooks", "01", "07")
    assert proc.returncode == 2
    assert "--notebooks 07: no released notebook is called that; choose among 01_autoencoder" in proc.stderr
    assert sorted(p.name for p in public.iterdir()) == [".git", ".github", "LICENSE"]


# ---------------------------------------------------------------------------------- the function
def test_publish_writes_only_student_files(tmp_path):
    result = publish(tmp_path / "public", check=False)
    names = {p.relative_to(tmp_path / "public").parts[0] for p in result.files}
    assert names == {"assignments", "vaekit", "pyproject.toml", "environment.yml", "README.md"}
    assert (tmp_path / "public" / "assignments" / "02_vae.ipynb").exists()
    text = "\n".join(p.read_text() for p in result.files if p.suffix in (".py", ".ipynb", ".md"))
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text and "autograder.checks" not in text
    assert not any("__pycache__" in str(p) or p.suffix == ".pyc" for p in result.files)


def test_publish_refuses_a_folder_inside_the_repo():
    with pytest.raises(PublishError, match="outside this repository"):
        publish(REPO / "public", check=False)


def test_republishing_changes_nothing(tmp_path):
    out = tmp_path / "public"
    first = publish(out, check=False)
    again = publish(out, check=False)
    assert again.new == again.updated == again.replaced == again.removed == []
    assert again.unchanged == [str(p.relative_to(out)) for p in first.files]


def test_an_older_clone_without_manifest_is_adopted_when_identical(tmp_path):
    out = tmp_path / "public"
    publish(out, check=False)
    (out / MANIFEST).unlink()  # as left by the publish that deleted the folder first
    result = publish(out, check=False)
    assert result.replaced == [] and result.new == [] and len(result.adopted) == len(result.files)
    assert (out / MANIFEST).exists()


def test_a_file_edited_in_the_public_repo_is_not_replaced_silently(tmp_path):
    out = tmp_path / "public"
    publish(out, check=False)
    (out / "README.md").write_text("edited on GitHub\n")
    with pytest.raises(PublishError, match=r"README\.md\. Nothing was written"):
        publish(out, check=False)
    assert (out / "README.md").read_text() == "edited on GitHub\n"
    result = publish(out, check=False, overwrite=True)
    assert result.replaced == ["README.md"]
    assert (result.backup / "README.md").read_text() == "edited on GitHub\n"
    assert result.backup.parent == tmp_path


def test_only_its_own_unchanged_files_are_removed(tmp_path):
    out = tmp_path / "public"
    publish(out, check=False)
    # files an earlier publish wrote that the course no longer ships (a vaekit module was deleted)
    (out / "vaekit" / "old_helper.py").write_text("OLD = 1\n")
    (out / "vaekit" / "older").mkdir()
    (out / "vaekit" / "older" / "gone.py").write_text("GONE = 1\n")
    (out / "vaekit" / "edited.py").write_text("EDITED = 1\n")
    (out / "notes.md").write_text("the public repo's own notes\n")
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"].update(
        {
            "vaekit/old_helper.py": _sha(b"OLD = 1\n"),
            "vaekit/older/gone.py": _sha(b"GONE = 1\n"),
            "vaekit/edited.py": _sha(b"EDITED = 0\n"),
        }
    )
    (out / MANIFEST).write_text(json.dumps(manifest))
    result = publish(out, check=False)
    assert result.removed == ["vaekit/old_helper.py", "vaekit/older/gone.py"]
    assert not (out / "vaekit" / "old_helper.py").exists() and not (out / "vaekit" / "older").exists()
    assert result.let_go == ["vaekit/edited.py"] and (out / "vaekit" / "edited.py").read_text() == "EDITED = 1\n"
    assert (out / "notes.md").exists()
    assert "vaekit/edited.py" not in json.loads((out / MANIFEST).read_text())["files"]
    assert "kept (no longer shipped, but edited since publish wrote it: yours now): vaekit/edited.py" in result.report()


def test_a_notebook_withdrawn_by_hand_stays_withdrawn(tmp_path):
    out = tmp_path / "public"
    publish(out, ["01", "02", "05"], check=False)
    (out / "assignments" / "05_aevb.ipynb").unlink()  # `git rm`: published too early
    result = publish(out, ["3"], check=False)
    assert result.notebooks == ["01_autoencoder", "02_vae", "03_beta"]
    assert notebooks_in(out) == ["01_autoencoder.ipynb", "02_vae.ipynb", "03_beta.ipynb"]


@pytest.mark.parametrize("entry", [".git/config", "../outside.txt", "/etc/passwd", MANIFEST])
def test_a_manifest_pointing_outside_what_publish_may_touch_is_refused(tmp_path, entry):
    out = tmp_path / "public"
    publish(out, check=False)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"][entry] = "0" * 64
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(PublishError, match="is not a manifest written by"):
        publish(out, check=False)


def test_a_symlink_in_the_way_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "public"
    out.mkdir()
    os.symlink(elsewhere, out / "vaekit")
    with pytest.raises(PublishError, match="is a symbolic link where publish needs a folder"):
        publish(out, check=False)
    assert list(elsewhere.iterdir()) == [] and sorted(p.name for p in out.iterdir()) == ["vaekit"]


def test_a_leak_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    import autograder.publish as pub

    copy = tmp_path / "course"
    for name in ["vaekit", "assignments"]:
        shutil.copytree(REPO / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ["pyproject.toml", "environment.yml"]:
        shutil.copy2(REPO / name, copy / name)
    (copy / "vaekit" / "answers.py").write_text("### BEGIN SOLUTION\nz = mu + eps * std\n### END SOLUTION\n")
    monkeypatch.setattr(pub, "REPO", copy)
    monkeypatch.setattr(pub, "ASSIGNMENTS", copy / "assignments")
    with pytest.raises(PublishError, match=r"vaekit/answers\.py hold solutions or hidden tests"):
        publish(tmp_path / "public", check=False)
    assert not (tmp_path / "public").exists()

"""The public student repository holds the release and vaekit, and nothing secret."""

from autograder.publish import publish


def test_publish_writes_only_student_files(tmp_path):
    files = publish(tmp_path / "public")
    names = {p.relative_to(tmp_path / "public").parts[0] for p in files}
    assert names == {"assignments", "vaekit", "pyproject.toml", "environment.yml", "README.md"}
    assert (tmp_path / "public" / "assignments" / "02_vae.ipynb").exists()
    text = "\n".join(p.read_text() for p in files if p.suffix in (".py", ".ipynb", ".md"))
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text and "autograder.checks" not in text


def test_publish_refuses_a_folder_inside_the_repo():
    import pytest

    from autograder.config import REPO

    with pytest.raises(ValueError, match="outside this repository"):
        publish(REPO / "public")


def test_publish_command(tmp_path):
    import subprocess
    import sys

    from autograder.config import REPO

    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "publish", str(tmp_path / "pub")], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "pub" / "assignments" / "01_autoencoder.ipynb").exists()

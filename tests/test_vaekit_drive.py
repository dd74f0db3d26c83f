"""In Colab, a refused or failing Google Drive mount gives a clear error (and notebook 4 still trains)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch

import vaekit
from vaekit import import_parts, load_checkpoint, save_checkpoint, workdir
from vaekit.coursework import WorkdirError

REPO = Path(__file__).resolve().parent.parent
MYDRIVE = Path("/content/drive/MyDrive")
pytestmark = pytest.mark.skipif(MYDRIVE.exists(), reason="this machine has a real /content/drive/MyDrive")


@pytest.fixture
def colab(monkeypatch):
    """A fake `google.colab` whose drive.mount behaves as `colab.mount` says; records its calls."""
    calls = []
    state = types.SimpleNamespace(calls=calls, mount=None)

    def mount(mountpoint, *args, **kwargs):
        calls.append(mountpoint)
        if state.mount:
            state.mount()

    google = types.ModuleType("google")
    colab_module = types.ModuleType("google.colab")
    drive = types.ModuleType("google.colab.drive")
    drive.mount = mount
    colab_module.drive = drive
    google.colab = colab_module
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab_module)
    monkeypatch.setitem(sys.modules, "google.colab.drive", drive)
    monkeypatch.delenv("VAEKIT_WORKDIR", raising=False)
    assert vaekit.env._in_colab()
    return state


def refuse():
    raise ValueError("mount failed")  # what Colab raises when the user does not allow access


def test_a_refused_mount_says_what_to_do(colab):
    colab.mount = refuse
    with pytest.raises(WorkdirError) as info:
        workdir()
    text = str(info.value)
    assert "Google Drive could not be mounted (ValueError: mount failed)" in text
    assert "Run this cell again and allow access" in text
    assert "VAEKIT_WORKDIR" in text and "os.environ['VAEKIT_WORKDIR']" in text
    assert isinstance(info.value.__cause__, ValueError)
    assert colab.calls == ["/content/drive"]


def test_a_mount_without_mydrive_is_an_error_too(colab):
    colab.mount = None  # returns, but nothing appears under /content/drive
    with pytest.raises(WorkdirError, match=r"has no MyDrive folder after mounting.*VAEKIT_WORKDIR"):
        workdir()


def test_a_timeout_while_mounting(colab):
    def timeout():
        raise TimeoutError("Timed out waiting for the mount")

    colab.mount = timeout
    with pytest.raises(WorkdirError, match=r"\(TimeoutError: Timed out waiting for the mount\)"):
        workdir()


def test_vaekit_workdir_in_colab_does_not_mount(colab, tmp_path, monkeypatch):
    colab.mount = refuse
    monkeypatch.setenv("VAEKIT_WORKDIR", str(tmp_path / "work"))
    assert workdir() == tmp_path / "work"
    assert colab.calls == []


def test_import_parts_reports_the_mount(colab):
    colab.mount = refuse
    with pytest.raises(WorkdirError, match="VAEKIT_WORKDIR"):
        import_parts("02_vae")


def test_save_checkpoint_reports_the_mount(colab):
    colab.mount = refuse
    with pytest.raises(WorkdirError, match="VAEKIT_WORKDIR"):
        save_checkpoint(torch.nn.Linear(2, 2), "vae.pt")


def test_load_checkpoint_falls_back_when_asked(colab, capsys):
    colab.mount = refuse
    model = torch.nn.Linear(2, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert load_checkpoint(model, "vae.pt", missing_ok=True) is None
    out = capsys.readouterr().out
    assert "cannot look for the saved weights vae.pt: Google Drive could not be mounted" in out
    assert "VAEKIT_WORKDIR" in out and "Going on without them." in out
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_load_checkpoint_without_missing_ok_raises(colab):
    colab.mount = refuse
    with pytest.raises(WorkdirError, match="VAEKIT_WORKDIR"):
        load_checkpoint(torch.nn.Linear(2, 2), "vae.pt")


def test_load_checkpoint_with_a_full_path_needs_no_drive(colab, tmp_path):
    colab.mount = refuse
    path = save_checkpoint(torch.nn.Linear(2, 2), tmp_path / "vae.pt")
    assert load_checkpoint(torch.nn.Linear(2, 2), path) == {}
    assert colab.calls == []


def test_notebook_4_trains_instead_when_drive_is_refused(colab, capsys):
    """The released notebook 4's `trained` helper, run as a student would when the mount fails."""
    colab.mount = refuse
    nb = json.loads((REPO / "assignments" / "04_interpolation.ipynb").read_text())
    source = next("".join(c["source"]) for c in nb["cells"] if "def trained(" in "".join(c["source"]))
    helper = source.split("\ntorch.manual_seed", 1)[0]
    namespace = {"vaekit": vaekit, "torch": torch}
    exec(compile(helper, "04_interpolation.ipynb", "exec"), namespace)
    trained_with = []
    model = namespace["trained"](torch.nn.Linear(2, 2), "vae.pt", trained_with.append)
    assert trained_with == [model]
    out = capsys.readouterr().out
    assert "VAEKIT_WORKDIR" in out and "training Linear now" in out
    assert colab.calls == ["/content/drive"]  # asked once, not again for the message

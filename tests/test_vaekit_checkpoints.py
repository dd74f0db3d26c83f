"""save_checkpoint / load_checkpoint: round trip and the messages when they do not fit."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vaekit import load_checkpoint, save_checkpoint
from vaekit.checkpoints import CheckpointError


class TinyAE(nn.Module):
    def __init__(self, latent_dim: int = 2, hidden_dim: int = 8, extra: bool = False) -> None:
        super().__init__()
        self.encoder = nn.Linear(16, hidden_dim)
        self.to_z = nn.Linear(hidden_dim, latent_dim)
        self.decoder = nn.Linear(latent_dim, 16)
        if extra:
            self.norm = nn.BatchNorm1d(hidden_dim)

    def forward(self, x):
        return self.decoder(self.to_z(torch.relu(self.encoder(x))))


@pytest.fixture(autouse=True)
def work(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("VAEKIT_WORKDIR", str(tmp_path / "work"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "work"


def model(seed: int, **kwargs) -> TinyAE:
    torch.manual_seed(seed)
    return TinyAE(**kwargs)


def test_round_trip_restores_weights_and_metadata(tmp_path):
    saved = model(0)
    path = save_checkpoint(saved, tmp_path / "ae.pt", latent_dim=2, epochs=3, history={"loss": [2.0, 1.5]})
    assert path == tmp_path / "ae.pt" and path.is_file()
    fresh = model(1)
    x = torch.randn(4, 16)
    assert not torch.allclose(fresh(x), saved(x))
    meta = load_checkpoint(fresh, path)
    assert meta == {"latent_dim": 2, "epochs": 3, "history": {"loss": [2.0, 1.5]}}
    for key, value in saved.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value)
    torch.testing.assert_close(fresh(x), saved(x))


def test_numpy_metadata_survives_the_safe_loader(tmp_path):
    # np.mean(losses) is a numpy float; torch.load(weights_only=True) would refuse it
    path = save_checkpoint(
        model(0), tmp_path / "ae.pt", loss=np.mean([1.0, 2.0]), epoch=np.int64(4), curve=np.array([1.0, 0.5])
    )
    meta = load_checkpoint(model(1), path)
    assert meta == {"loss": 1.5, "epoch": 4, "curve": [1.0, 0.5]}
    assert type(meta["loss"]) is float and type(meta["epoch"]) is int


def test_checkpoint_format(tmp_path):
    saved = model(0)
    path = save_checkpoint(saved, tmp_path / "ae.pt", epochs=2)
    payload = torch.load(path, weights_only=True)
    assert payload["model_class"] == "TinyAE" and payload["metadata"] == {"epochs": 2}
    assert payload["state_dict"].keys() == saved.state_dict().keys()
    assert all(not t.requires_grad for t in payload["state_dict"].values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_gpu_model_is_saved_for_cpu_loading(tmp_path):
    path = save_checkpoint(model(0).cuda(), tmp_path / "ae.pt")
    payload = torch.load(path, weights_only=True)
    assert all(t.device.type == "cpu" for t in payload["state_dict"].values())
    load_checkpoint(model(1), path)


def test_bare_file_name_goes_to_the_work_folder(work):
    path = save_checkpoint(model(0), "vae.pt")
    assert path == work / "vae.pt" and path.is_file()
    assert load_checkpoint(model(1), "vae.pt") == {}


def test_relative_path_with_a_folder_stays_relative(tmp_path):
    path = save_checkpoint(model(0), Path("runs") / "ae.pt")
    assert (tmp_path / "runs" / "ae.pt").is_file() and path == Path("runs") / "ae.pt"


def test_missing_checkpoint_says_what_to_do(work):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(model(0), "vae.pt")
    msg = str(info.value)
    assert str(work / "vae.pt") in msg
    assert "Run the notebook that trains this model" in msg


def test_missing_checkpoint_is_ok_when_asked():
    before = {k: v.clone() for k, v in model(0).state_dict().items()}
    m = model(0)
    assert load_checkpoint(m, "nothing.pt", missing_ok=True) is None
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())


def test_different_shapes_name_the_keys_and_leave_the_model_alone(tmp_path):
    path = save_checkpoint(model(0, latent_dim=2), tmp_path / "ae.pt")
    other = model(1, latent_dim=4)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(other, path)
    msg = str(info.value)
    assert "different shapes" in msg
    assert "to_z.weight: saved (2, 8), model (4, 8)" in msg
    assert "to_z.bias: saved (2,), model (4,)" in msg
    assert "decoder.weight: saved (16, 2), model (16, 4)" in msg
    assert "encoder.weight" not in msg  # unchanged layers are not blamed
    assert "latent_dim" in msg
    assert all(torch.equal(v, before[k]) for k, v in other.state_dict().items())


def test_extra_and_missing_layers_are_named(tmp_path):
    with_norm = save_checkpoint(model(0, extra=True), tmp_path / "norm.pt")
    with pytest.raises(CheckpointError, match=r"not in your model: norm\.bias, norm\.num_batches_tracked"):
        load_checkpoint(model(0), with_norm)
    plain = save_checkpoint(model(0), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match=r"missing in the checkpoint: norm\.bias"):
        load_checkpoint(model(0, extra=True), plain)


def test_mismatch_names_both_classes(tmp_path):
    path = save_checkpoint(model(0), tmp_path / "ae.pt")
    other = nn.Sequential(nn.Linear(16, 2))
    with pytest.raises(CheckpointError, match=re.escape("saved from a TinyAE) does not fit this Sequential")):
        load_checkpoint(other, path)


def test_file_that_is_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="is not a readable vaekit checkpoint"):
        load_checkpoint(model(0), junk)
    foreign = tmp_path / "foreign.pt"
    torch.save(model(0).state_dict(), foreign)  # a bare state_dict, not save_checkpoint's format
    with pytest.raises(CheckpointError, match=re.escape("was not written by vaekit.save_checkpoint")):
        load_checkpoint(model(0), foreign)

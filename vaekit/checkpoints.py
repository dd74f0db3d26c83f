"""Save and load trained weights, with messages that say what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.coursework import WorkdirError, workdir


class CheckpointError(RuntimeError):
    """A checkpoint is missing or does not fit the model."""


def _resolve(path: str | Path) -> Path:
    path = Path(path)
    return path if path.is_absolute() or path.parent != Path(".") else workdir() / path


def _plain(value: Any) -> Any:
    """numpy scalars/arrays -> Python numbers/lists: `torch.load(weights_only=True)` refuses numpy."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value] if isinstance(value, list) else tuple(_plain(v) for v in value)
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value


def save_checkpoint(model: torch.nn.Module, path: str | Path, **metadata: Any) -> Path:
    """Save `model`'s weights (and any metadata) to `path`.

    A bare file name goes into the course work folder (`vaekit.workdir()`), where
    later notebooks look for it. Returns the full path.
    """
    path = _resolve(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "model_class": type(model).__name__, "metadata": _plain(metadata)}, path)
    return path


def load_checkpoint(model: torch.nn.Module, path: str | Path, missing_ok: bool = False) -> dict[str, Any] | None:
    """Load weights saved by `save_checkpoint` into `model`; return their metadata.

    With `missing_ok=True` a missing file returns None (train instead), and so does a
    course work folder that is unavailable (Google Drive not mounted), with a message;
    otherwise it raises `CheckpointError` saying which notebook makes it.
    """
    try:
        path = _resolve(path)
    except WorkdirError as exc:
        if not missing_ok:
            raise
        print(f"cannot look for the saved weights {path}: {exc}\nGoing on without them.")
        return None
    if not path.exists():
        if missing_ok:
            return None
        raise CheckpointError(
            f"no checkpoint at {path}. Run the notebook that trains this model to the end "
            f"(it calls vaekit.save_checkpoint), or train the model here instead."
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or not a checkpoint at all
        raise CheckpointError(f"{path} is not a readable vaekit checkpoint ({exc}); delete it and train again") from exc
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise CheckpointError(f"{path} was not written by vaekit.save_checkpoint; delete it and train again")
    state = payload["state_dict"]
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    reshaped = [
        f"{k}: saved {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    ]
    if missing or unexpected or reshaped:
        parts = []
        if missing:
            parts.append(f"missing in the checkpoint: {', '.join(missing[:5])}")
        if unexpected:
            parts.append(f"not in your model: {', '.join(unexpected[:5])}")
        if reshaped:
            parts.append("different shapes: " + "; ".join(sorted(reshaped)[:5]))
        raise CheckpointError(
            f"the checkpoint {path} (saved from a {payload.get('model_class')}) does not fit this "
            f"{type(model).__name__} — "
            + " | ".join(parts)
            + ". Did the architecture or latent_dim change since it was saved? Train again to replace it."
        )
    model.load_state_dict(state)
    return payload.get("metadata", {})

"""Sample submissions made from the release and the solutions: for the demo and the tests.

Built from the notebooks themselves, so they follow every change of the
notebooks: `full` (the solutions typed into the released notebook), `stub`
(the released notebook untouched), `buggy` variants (one function replaced by
a known mistake, see BUGS), and damaged or hostile versions (see DAMAGE).
"""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode

from autograder.parts import without_markers


def full(release: NotebookNode, source: NotebookNode) -> NotebookNode:
    """The released notebook with every answer cell filled in as in the solutions."""
    answers = {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in source.cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = without_markers(answers[gid])
    return nb


def find_cell(nb: NotebookNode, grade_id: str) -> int:
    """The index of the cell with nbgrader grade_id `grade_id`; KeyError if there is none."""
    for i, cell in enumerate(nb.cells):
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return i
    raise KeyError(grade_id)


def replace_def(source: str, name: str, new: str) -> str:
    """Replace the top-level def/class `name` (or `Class.method`) in `source` by `new`."""
    tree = ast.parse(source)
    lines = source.splitlines()
    owner, _, method = name.rpartition(".")
    body = tree.body
    indent = ""
    if owner:
        cls = next(n for n in body if isinstance(n, ast.ClassDef) and n.name == owner)
        body, indent = cls.body, " " * cls.body[0].col_offset
    node = next(n for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == (method or name))
    start = min([d.lineno for d in node.decorator_list] + [node.lineno]) - 1
    new_lines = [indent + line if line else line for line in new.strip("\n").splitlines()]
    return "\n".join(lines[:start] + new_lines + lines[node.end_lineno :])


def with_def(nb: NotebookNode, grade_id: str, name: str, new: str) -> NotebookNode:
    """A copy of `nb` whose def/class `name` in cell `grade_id` is replaced by `new`."""
    nb = copy.deepcopy(nb)
    cell = nb.cells[find_cell(nb, grade_id)]
    cell.source = replace_def(cell.source, name, new)
    return nb


def insert_after(nb: NotebookNode, grade_id: str, source: str, cell_type: str = "code") -> NotebookNode:
    """A copy of `nb` with a new code (or Markdown) cell of `source` after cell `grade_id`."""
    nb = copy.deepcopy(nb)
    new = nbformat.v4.new_code_cell(source) if cell_type == "code" else nbformat.v4.new_markdown_cell(source)
    nb.cells.insert(find_cell(nb, grade_id) + 1, new)
    return nb


def strip_metadata(nb: NotebookNode) -> NotebookNode:
    """What Colab or VS Code may leave: cells without nbgrader metadata (or any)."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        cell.metadata = {}
    return nb


# notebook -> variant -> (answer cell, function, buggy code, test cells expected to fail)
BUGS: dict[str, dict[str, tuple[str, str, str, list[str]]]] = {
    "01_autoencoder": {
        "ae_loss_mean": (
            "ae_loss",
            "ae_loss",
            """
def ae_loss(x, logits):
    return F.binary_cross_entropy_with_logits(logits, x)
""",
            ["test_ae_loss"],
        ),
        "sample_no_sigmoid": (
            "sample_autoencoder",
            "sample_autoencoder",
            """
def sample_autoencoder(model, num_samples, latent_dim=64):
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        return model.decode(torch.randn(num_samples, latent_dim, device=device))
""",
            ["test_ae_sampling"],
        ),
        "train_no_step": (
            "train_autoencoder",
            "train_autoencoder",
            """
def train_autoencoder(model, train_x, num_epochs, batch_size=128, lr=1e-3):
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    history = []
    for epoch in range(num_epochs):
        total, count = 0.0, 0
        for x in vaekit.batches(train_x, batch_size=batch_size, shuffle=True, seed=epoch, device=device):
            loss = ae_loss(x, model(x))
            optimizer.zero_grad()
            loss.backward()
            total += loss.item() * len(x)
            count += len(x)
        history.append(total / count)
    return history
""",
            ["test_ae_training"],
        ),
    },
    "02_vae": {
        "reparam_sigma2": (
            "reparameterize",
            "reparameterize",
            """
def reparameterize(mu, logvar):
    return mu + torch.exp(logvar) * torch.randn_like(mu)
""",
            ["test_reparameterize_statistics"],
        ),
        "reparam_shared_eps": (
            "reparameterize",
            "reparameterize",
            """
def reparameterize(mu, logvar):
    eps = torch.randn_like(mu[0])
    return mu + torch.exp(0.5 * logvar) * eps
""",
            ["test_reparameterize_statistics"],
        ),
        "reparam_no_grad": (
            "reparameterize",
            "reparameterize",
            """
def reparameterize(mu, logvar):
    return torch.normal(mu.detach(), torch.exp(0.5 * logvar).detach())
""",
            ["test_reparameterize_gradients"],
        ),
        "kl_wrong_sign": (
            "kl_divergence",
            "kl_divergence",
            """
def kl_divergence(mu, logvar):
    return 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
""",
            ["test_kl_values"],
        ),
        "kl_no_half": (
            "kl_divergence",
            "kl_divergence",
            """
def kl_divergence(mu, logvar):
    return -torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
""",
            ["test_kl_values"],
        ),
        "kl_mean_latent": (
            "kl_divergence",
            "kl_divergence",
            """
def kl_divergence(mu, logvar):
    return -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
""",
            ["test_kl_values"],
        ),
        "loss_minus_kl": (
            "vae_loss",
            "vae_loss",
            """
def vae_loss(x, logits, mu, logvar, beta=1.0):
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
    kl = kl_divergence(mu, logvar).mean()
    return recon - beta * kl, recon, kl
""",
            ["test_vae_loss"],
        ),
        "loss_pixel_mean": (
            "vae_loss",
            "vae_loss",
            """
def vae_loss(x, logits, mu, logvar, beta=1.0):
    recon = F.binary_cross_entropy_with_logits(logits, x)
    kl = kl_divergence(mu, logvar).mean()
    return recon + beta * kl, recon, kl
""",
            ["test_vae_loss"],
        ),
    },
}


def buggy(full_nb: NotebookNode, notebook: str, variant: str) -> NotebookNode:
    """A copy of the filled notebook with the known bug `variant` of `notebook` (from BUGS) put in."""
    grade_id, name, code, _ = BUGS[notebook][variant]
    return with_def(full_nb, grade_id, name, code)


def write(nb: NotebookNode | bytes | str, path: Path) -> Path:
    """Write a notebook, raw bytes or text to `path` (folders made as needed); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(nb, bytes):
        path.write_bytes(nb)
    elif isinstance(nb, str):
        path.write_text(nb)
    else:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return path


def truncated(nb: NotebookNode) -> str:
    """A notebook file cut off in the middle (an interrupted upload)."""
    text = json.dumps(nb, indent=1)
    return text[: len(text) // 2]


PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"

"""A synthetic class for the class report: an OUT folder written directly, without grading.

Each student answers three code cells of a small "02_vae" notebook (reparameterize; kl_divergence
and vae_loss in one cell; interpolate), each function in one of five structurally different,
correct ways (VARIANTS). Students get their variants from an orthogonal array over GF(5), so two
students share at most one of their four functions; local names and comments are renamed per
student. `judge` runs the real hidden checks in this process on a student's code, so checks.csv
carries the misconception ids the checks raise, as a grading run would write them.
"""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

ASSIGNMENT = "vae"
NOTEBOOK = "02_vae"
CELLS = ("reparameterize", "losses", "interpolate")
TESTS = {
    "reparameterize": ("test_reparameterize", 2),
    "kl_divergence": ("test_kl", 2),
    "vae_loss": ("test_vae_loss", 2),
    "interpolate": ("test_interpolate", 1),
}

SIGNATURES = {
    "reparameterize": ('def reparameterize(mu, logvar):\n    """Sample z ~ N(mu, exp(logvar)) differentiably."""\n'),
    "kl_divergence": ('def kl_divergence(mu, logvar):\n    """KL(q || N(0, I)) per sample: (B, D) -> (B,)."""\n'),
    "vae_loss": (
        'def vae_loss(x, logits, mu, logvar, beta=1.0):\n    """Negative (beta-)ELBO: (loss, recon, kl)."""\n'
    ),
    "interpolate": (
        'def interpolate(z_start, z_end, num_steps):\n    """Evenly spaced points, both ends included."""\n'
    ),
}
STUB = "    # YOUR CODE HERE\n    raise NotImplementedError()\n"

VARIANTS = {
    "reparameterize": [
        "std = torch.exp(0.5 * logvar)\neps = torch.randn_like(std)\nreturn mu + eps * std",
        "return torch.distributions.Normal(mu, torch.exp(logvar / 2)).rsample()",
        "sigma = logvar.mul(0.5).exp_()\nnoise = sigma.new(sigma.size()).normal_()\nreturn noise.mul(sigma).add_(mu)",
        "noise = torch.randn(mu.shape, dtype=mu.dtype, device=mu.device)\n"
        "return mu + noise * torch.sqrt(torch.exp(logvar))",
        "var = logvar.exp()\nz = mu.clone()\n"
        "z = z + var.sqrt() * torch.normal(torch.zeros_like(mu), torch.ones_like(mu))\nreturn z",
    ],
    "kl_divergence": [
        "return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)",
        "q = torch.distributions.Normal(mu, (0.5 * logvar).exp())\n"
        "p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))\n"
        "return torch.distributions.kl_divergence(q, p).sum(-1)",
        "sigma2 = torch.exp(logvar)\nterms = mu ** 2 + sigma2 - logvar - 1\nreturn 0.5 * terms.sum(dim=1)",
        "total = torch.zeros(mu.shape[0], dtype=mu.dtype)\nfor d in range(mu.shape[1]):\n    m = mu[:, d]\n"
        "    lv = logvar[:, d]\n    total = total + 0.5 * (m * m + torch.exp(lv) - lv - 1.0)\nreturn total",
        "return 0.5 * (mu.square().sum(1) + logvar.exp().sum(1) - logvar.sum(1) - mu.shape[1])",
    ],
    "vae_loss": [
        'recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]\n'
        "kl = kl_divergence(mu, logvar).mean()\nreturn recon + beta * kl, recon, kl",
        'batch = x.size(0)\nper_pixel = F.binary_cross_entropy_with_logits(logits, x, reduction="none")\n'
        "recon = per_pixel.view(batch, -1).sum(dim=1).mean()\nkl = torch.mean(kl_divergence(mu, logvar))\n"
        "loss = recon + beta * kl\nreturn loss, recon, kl",
        "log_p = x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)\nrecon = -log_p.flatten(1).sum(1).mean()\n"
        "kl = kl_divergence(mu, logvar).mean()\nreturn recon + kl * beta, recon, kl",
        'bce = torch.nn.BCEWithLogitsLoss(reduction="sum")\nn = len(x)\nrecon = bce(logits, x) / n\n'
        "kl = kl_divergence(mu, logvar).sum() / n\ntotal = recon + beta * kl\nreturn total, recon, kl",
        "probs = torch.sigmoid(logits.double()).clamp(1e-12, 1 - 1e-12)\n"
        "nll = -(x * torch.log(probs) + (1 - x) * torch.log1p(-probs))\nrecon = nll.sum(dim=(1, 2, 3)).mean().float()\n"
        "kl_terms = kl_divergence(mu, logvar)\nkl = kl_terms.mean()\nreturn recon + beta * kl, recon, kl",
    ],
    "interpolate": [
        "t = torch.linspace(0, 1, num_steps, dtype=z_start.dtype).unsqueeze(1)\nreturn (1 - t) * z_start + t * z_end",
        "weights = torch.linspace(0.0, 1.0, steps=num_steps, dtype=z_start.dtype)[:, None]\n"
        "return torch.lerp(z_start.expand(num_steps, -1), z_end.expand(num_steps, -1), weights)",
        "points = []\nfor i in range(num_steps):\n    alpha = i / (num_steps - 1)\n"
        "    points.append(z_start + alpha * (z_end - z_start))\nreturn torch.stack(points)",
        "direction = z_end - z_start\nfractions = torch.arange(num_steps, dtype=z_start.dtype) / (num_steps - 1)\n"
        "return z_start.unsqueeze(0) + fractions.unsqueeze(1) * direction.unsqueeze(0)",
        "return torch.stack([torch.lerp(z_start, z_end, float(k) / (num_steps - 1)) for k in range(num_steps)])",
    ],
}
SIGMA_SQUARED = "return mu + torch.exp(logvar) * torch.randn_like(mu)"  # the known mistake
LOCALS = sorted(
    ({w for vs in VARIANTS.values() for v in vs for w in re.findall(r"\b([a-z_][a-z0-9_]*) =", v)} | {"d", "i", "k"})
    - {"mu", "logvar", "x", "logits", "beta", "z_start", "z_end", "num_steps"}
)
COMMENTS = [
    "# sample with the reparameterization trick",
    "# closed form (Kingma & Welling, App. B)",
    "# sum over pixels, mean over the batch",
    "# straight line in latent space",
    "# my solution",
    "# done",
    "# TODO: tidy up",
    "# see lecture 4",
]


def orthogonal(i: int) -> tuple[int, int, int, int]:
    """Row i of an OA(25, 4, 5, 2): two different rows agree in at most one position."""
    a, b = divmod(i % 25, 5)
    return a, b, (a + b) % 5, (a + 2 * b) % 5


def rename(code: str, rng: random.Random) -> str:
    names = {n: f"{n}_{rng.choice(['v', 'tmp', 'val', 'x'])}{rng.randint(0, 99)}" for n in LOCALS}
    return re.sub(r"\b(" + "|".join(map(re.escape, LOCALS)) + r")\b", lambda m: names[m.group(1)], code)


def body(code: str, rng: random.Random) -> str:
    lines = code.splitlines()
    if rng.random() < 0.7:
        lines.insert(rng.randint(0, len(lines) - 1), rng.choice(COMMENTS))
    return "".join(f"    {line}\n" for line in lines)


def functions(choice: tuple[int, int, int, int], seed: int, bug: bool = False) -> dict[str, str]:
    """name -> full source of each of the four functions, in the student's variants."""
    rng = random.Random(seed)
    out = {}
    for name, k in zip(("reparameterize", "kl_divergence", "vae_loss", "interpolate"), choice, strict=True):
        code = SIGMA_SQUARED if bug and name == "reparameterize" else VARIANTS[name][k]
        out[name] = SIGNATURES[name] + body(rename(code, rng), rng)
    return out


def cells(fns: dict[str, str], reorder: bool = False) -> dict[str, str]:
    """The three answer cells; `reorder` puts vae_loss before kl_divergence in the losses cell."""
    pair = [fns["vae_loss"], fns["kl_divergence"]] if reorder else [fns["kl_divergence"], fns["vae_loss"]]
    return {
        "reparameterize": fns["reparameterize"].rstrip(),
        "losses": "\n\n".join(p.rstrip() for p in pair),
        "interpolate": fns["interpolate"].rstrip(),
    }


def stubs() -> dict[str, str]:
    s = {n: SIGNATURES[n] + STUB for n in SIGNATURES}
    return {
        "reparameterize": s["reparameterize"].rstrip(),
        "losses": s["kl_divergence"] + "\n\n" + s["vae_loss"].rstrip(),
        "interpolate": s["interpolate"].rstrip(),
    }


def notebook(answer_cells: dict[str, str], tests: list[str] | None = None) -> dict:
    """A notebook's JSON as the grader keeps it: nbgrader metadata on answer and test cells."""
    out = [
        {"cell_type": "markdown", "metadata": {}, "source": "# VAE"},
        {
            "cell_type": "code",
            "metadata": {},
            "source": "import torch\nimport torch.nn.functional as F",
            "outputs": [],
            "execution_count": None,
        },
    ]
    for cell in CELLS:
        out.append(
            {
                "cell_type": "code",
                "metadata": {
                    "nbgrader": {
                        "grade_id": cell,
                        "solution": True,
                        "grade": False,
                        "locked": False,
                        "schema_version": 3,
                    }
                },
                "source": answer_cells[cell],
                "outputs": [],
                "execution_count": None,
            }
        )
    for test in tests or []:
        out.append(
            {
                "cell_type": "code",
                "metadata": {
                    "nbgrader": {"grade_id": test, "grade": True, "solution": False, "points": 1, "schema_version": 3}
                },
                "source": "# hidden tests",
                "outputs": [],
                "execution_count": None,
            }
        )
    return {"cells": out, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def judge(answer_cells: dict[str, str]) -> list[tuple[str, bool, str, str]]:
    """(test cell, passed, misconception, message) from the real hidden checks, run in this process."""
    import torch
    import torch.nn.functional as F

    from autograder.checks import interp, vae

    ns: dict = {"torch": torch, "F": F}
    for cell in CELLS:
        exec(compile(answer_cells[cell], f"<{cell}>", "exec"), ns)
    calls = {
        "test_reparameterize": [
            lambda: vae.check_reparameterize_gradients(ns["reparameterize"]),
            lambda: vae.check_reparameterize_statistics(ns["reparameterize"]),
        ],
        "test_kl": [lambda: vae.check_kl_values(ns["kl_divergence"])],
        "test_vae_loss": [lambda: vae.check_vae_loss(ns["vae_loss"], ns)],
        "test_interpolate": [lambda: interp.check_interpolate(ns["interpolate"])],
    }
    out = []
    for test, fns in calls.items():
        verdict = (test, True, "", "")
        for fn in fns:
            torch.manual_seed(0)
            try:
                fn()
            except AssertionError as exc:
                verdict = (test, False, getattr(exc, "misconception", None) or "unnamed", str(exc))
                break
        out.append(verdict)
    return out


def write_out(
    out: Path,
    students: dict[str, dict[str, str]],
    verdicts: dict[str, list[tuple[str, bool, str, str]]],
    statuses: dict[str, str] | None = None,
    seconds: dict[str, float] | None = None,
) -> Path:
    """Write OUT as a grading run leaves it: the four CSVs, the release and the graded notebooks."""
    statuses, seconds = statuses or {}, seconds or {}
    out.mkdir(parents=True, exist_ok=True)
    release = out / "nbgrader" / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    release.parent.mkdir(parents=True, exist_ok=True)
    tests = [t for t, _ in TESTS.values()]
    release.write_text(json.dumps(notebook(stubs(), tests)))
    grades = [["student", "notebook", "cell", "points", "max_points", "status"]]
    checks = [["student", "notebook", "cell", "passed", "misconception", "message"]]
    summary = [["student", "total", "max_total", NOTEBOOK, "status"]]
    report = [["student", "notebook", "status", "points", "max_points", "detail", "seconds"]]
    maxima = dict(TESTS.values())
    for student in sorted(students):
        status = statuses.get(student, "ok")
        path = out / "nbgrader" / "autograded" / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(notebook(students[student], tests)))
        total = 0
        for test, passed, mid, message in verdicts[student]:
            pts = maxima[test] if passed else 0
            total += pts
            grades.append([student, NOTEBOOK, test, pts, maxima[test], status])
            checks.append([student, NOTEBOOK, test, int(passed), "" if passed else mid, message])
        summary.append([student, total, sum(maxima.values()), total, status])
        report.append(
            [
                student,
                NOTEBOOK,
                status,
                total,
                sum(maxima.values()),
                "graded under a different name" if status == "renamed" else "",
                f"{seconds.get(student, 10.0):.1f}",
            ]
        )
    for name, rows in (
        ("grades.csv", grades),
        ("checks.csv", checks),
        ("summary.csv", summary),
        ("report.csv", report),
    ):
        with (out / name).open("w", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows(rows)
    return out

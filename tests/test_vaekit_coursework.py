"""export_parts / import_parts, with code defined the way a notebook defines it.

IPython compiles every cell under a made-up file name and keeps the cell's source
in `linecache` under that name (IPython/core/compilerop.py: CachingCompiler.cache);
`Cell` below does exactly that, so the code has no file on disk.
"""

from __future__ import annotations

import itertools
import linecache
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from vaekit import export_parts, import_parts, workdir

_counter = itertools.count(1)


class Notebook:
    """A kernel's user namespace; `run` executes one cell as IPython does."""

    def __init__(self, monkeypatch) -> None:
        self.ns: dict = {"__name__": "__main__"}
        self.monkeypatch = monkeypatch

    def run(self, source: str) -> None:
        source = textwrap.dedent(source).strip("\n") + "\n"
        name = f"/tmp/ipykernel_4242/{next(_counter)}0817.py"  # a file that does not exist
        entry = (len(source), None, [line + "\n" for line in source.splitlines()], name)
        self.monkeypatch.setitem(linecache.cache, name, entry)
        exec(compile(source, name, "exec"), self.ns)

    def __getitem__(self, key: str):
        return self.ns[key]


@pytest.fixture
def nb(monkeypatch) -> Notebook:
    return Notebook(monkeypatch)


@pytest.fixture(autouse=True)
def work(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("VAEKIT_WORKDIR", str(tmp_path / "work"))
    before = set(sys.modules)
    yield tmp_path / "work"
    for name in set(sys.modules) - before:
        if name.startswith("vaekit_parts_"):
            del sys.modules[name]


VAE_CELLS = [
    """
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    LATENT_DIM = 4
    IMAGE_DIM = 28 * 28
    """,
    """
    class VAE(nn.Module):
        \"\"\"x: (B, 1, 28, 28) -> logits, mu, logvar.\"\"\"

        def __init__(self, latent_dim: int = LATENT_DIM, hidden_dim: int = 32):
            super().__init__()
            self.encoder = nn.Linear(IMAGE_DIM, hidden_dim)
            self.to_mu = nn.Linear(hidden_dim, latent_dim)
            self.to_logvar = nn.Linear(hidden_dim, latent_dim)
            self.decoder = nn.Linear(latent_dim, IMAGE_DIM)

        def forward(self, x):
            h = F.relu(self.encoder(x.flatten(1)))
            mu, logvar = self.to_mu(h), self.to_logvar(h)
            z = reparameterize(mu, logvar)
            return self.decoder(z).view(-1, 1, 28, 28), mu, logvar
    """,
    """
    def reparameterize(mu, logvar):
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def not_exported():
        return "left behind"

    print("a statement in the same cell")
    """,
]


def test_export_writes_the_named_definitions_and_import_gives_working_code(nb, work, capsys):
    for cell in VAE_CELLS:
        nb.run(cell)
    path = export_parts("02_vae", [nb["VAE"], nb["reparameterize"]], constants={"LATENT_DIM": 4, "IMAGE_DIM": 784})
    assert path == work / "02_vae.py" and path.is_file()
    assert f"saved VAE, reparameterize to {path}" in capsys.readouterr().out
    text = path.read_text()
    assert "LATENT_DIM = 4\n" in text and "IMAGE_DIM = 784\n" in text
    assert textwrap.dedent(VAE_CELLS[1]).strip() in text  # the class exactly as written in its cell
    assert "def reparameterize(mu, logvar):" in text
    assert "not_exported" not in text and "a statement in the same cell" not in text
    assert "02_vae.ipynb" in text.splitlines()[0]

    parts = import_parts("02_vae")
    assert parts.LATENT_DIM == 4
    torch.manual_seed(0)
    original = nb["VAE"]()
    model = parts.VAE()
    model.load_state_dict(original.state_dict())
    x = torch.rand(3, 1, 28, 28)
    torch.manual_seed(1)
    expected = original(x)
    torch.manual_seed(1)
    got = model(x)
    assert got[0].shape == (3, 1, 28, 28) and got[1].shape == (3, 4)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b)
    mu, logvar = torch.zeros(5, 4), torch.full((5, 4), -100.0)
    torch.testing.assert_close(parts.reparameterize(mu, logvar), mu)


def test_import_parts_reads_the_current_file(nb, work):
    nb.run("def answer():\n    return 1\n")
    export_parts("01_ae", [nb["answer"]])
    assert import_parts("01_ae").answer() == 1
    nb.run("def answer():\n    return 2\n")  # the student fixes the cell and exports again
    export_parts("01_ae", [nb["answer"]])
    assert import_parts("01_ae").answer() == 2


def test_the_latest_definition_of_a_name_is_exported(nb, work):
    nb.run("def encode(x):\n    return x + 1\n")
    first = nb["encode"]
    nb.run("def encode(x):\n    return x + 2\n")
    export_parts("v1", [first])
    assert import_parts("v1").encode(0) == 1, "the cell that defined this very object is used"
    export_parts("v2", [nb["encode"]])
    assert import_parts("v2").encode(0) == 2


def test_decorated_function_is_exported_with_its_decorator(nb, work):
    nb.run(
        """
        import torch

        @torch.no_grad()
        def evaluate(model, x):
            return model(x)
        """
    )
    path = export_parts("04_eval", [nb["evaluate"]])
    assert "@torch.no_grad()\ndef evaluate(model, x):" in path.read_text()
    out = import_parts("04_eval").evaluate(torch.nn.Linear(2, 2), torch.ones(1, 2))
    assert not out.requires_grad


def test_class_whose_first_method_is_decorated(nb, work):
    nb.run(
        """
        import torch
        import torch.nn as nn

        class Sampler(nn.Module):
            @torch.no_grad()
            def sample(self, n):
                return torch.zeros(n, 2)

            def __init__(self):
                super().__init__()
        """
    )
    export_parts("05_sampler", [nb["Sampler"]])
    assert import_parts("05_sampler").Sampler().sample(3).shape == (3, 2)


def test_missing_part_file_says_which_notebook_to_run(work):
    with pytest.raises(FileNotFoundError) as info:
        import_parts("02_vae")
    msg = str(info.value)
    assert str(work / "02_vae.py") in msg
    assert "Open 02_vae.ipynb, run it to the end" in msg


def test_definition_that_needs_an_unexported_name_fails_at_export(nb, work):
    nb.run("HIDDEN = 16\n")
    nb.run("class Net:\n    def __init__(self, size=HIDDEN):\n        self.size = size\n")
    with pytest.raises(NameError, match=r"Net uses HIDDEN: defined elsewhere in 06_net\.ipynb"):
        export_parts("06_net", [nb["Net"]])
    assert not any(name == "vaekit_parts_06_net" for name in sys.modules)
    nb.run("SIZE = 3\n\ndef make(size=SIZE):\n    return size\n")  # a default is read when the module is imported
    with pytest.raises(ImportError, match="export that too"):
        export_parts("06_net", [nb["make"]])
    export_parts("06_net", [nb["Net"]], constants={"HIDDEN": 16})
    assert import_parts("06_net").Net().size == 16


def test_unfinished_stub_is_refused_and_nothing_is_saved(nb, work):
    nb.run("def kl_term(mu, logvar):\n    return 0.0\n")
    export_parts("02_vae", [nb["kl_term"]])
    before = (work / "02_vae.py").read_text()
    nb.run("def reparameterize(mu, logvar):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n")
    with pytest.raises(ValueError, match=r"reparameterize still raise NotImplementedError.*Nothing was saved"):
        export_parts("02_vae", [nb["kl_term"], nb["reparameterize"]])
    assert (work / "02_vae.py").read_text() == before
    assert sorted(p.name for p in work.iterdir()) == ["02_vae.py"], "no partial files are left behind"


def test_only_classes_and_functions_can_be_exported(work):
    with pytest.raises(TypeError, match="classes and functions"):
        export_parts("bad", [42])


def test_nested_definition_is_refused(nb, work):
    nb.run("def outer():\n    def inner():\n        return 1\n    return inner\n")
    with pytest.raises(ValueError, match="inner is not defined at the top level of a cell"):
        export_parts("nested", [nb["outer"]()])


def test_source_no_longer_in_linecache(nb, work, monkeypatch):
    nb.run("def gone():\n    return 0\n")
    fn = nb["gone"]
    monkeypatch.delitem(linecache.cache, fn.__code__.co_filename)
    with pytest.raises(ValueError, match="cannot find the source of gone"):
        export_parts("gone", [fn])


def test_workdir_from_the_environment_is_created(work):
    assert not work.exists()
    assert workdir() == work and work.is_dir()


def test_workdir_default_is_next_to_the_notebook(tmp_path, monkeypatch):
    monkeypatch.delenv("VAEKIT_WORKDIR")
    monkeypatch.chdir(tmp_path)
    assert workdir() == tmp_path / "vaekit_work" and (tmp_path / "vaekit_work").is_dir()


def test_export_and_import_in_a_real_ipython_shell(tmp_path):
    pytest.importorskip("IPython")
    script = textwrap.dedent(
        """
        import sys
        from IPython.core.interactiveshell import InteractiveShell

        shell = InteractiveShell.instance()
        cells = [
            "import torch, torch.nn as nn\\nimport vaekit\\nLATENT_DIM = 3",
            "class Encoder(nn.Module):\\n"
            "    def __init__(self, latent_dim=LATENT_DIM):\\n"
            "        super().__init__()\\n"
            "        self.to_z = nn.Linear(4, latent_dim)\\n"
            "    def forward(self, x):\\n"
            "        return self.to_z(x)",
            "vaekit.export_parts('01_ae', [Encoder], constants={'LATENT_DIM': LATENT_DIM})",
            "parts = vaekit.import_parts('01_ae')\\nassert parts.Encoder()(torch.ones(2, 4)).shape == (2, 3)",
        ]
        for cell in cells:
            if not shell.run_cell(cell).success:
                sys.exit(1)
        """
    )
    # IPYTHONDIR keeps the shell's history database out of the home folder
    env = {**os.environ, "VAEKIT_WORKDIR": str(tmp_path), "IPYTHONDIR": str(tmp_path / "ipython"), "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "class Encoder(nn.Module):" in (tmp_path / "01_ae.py").read_text()


def test_a_method_using_a_notebook_constant_is_reported_at_export(nb, work):
    """Importing the module cannot see it (the name is read only when the class is used): export must."""
    nb.run("HIDDEN = 16\n")
    nb.run(
        "import torch.nn as nn\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.layer = nn.Linear(HIDDEN, [HIDDEN for _ in range(1)][0])\n"
    )
    nb.run("def helper():\n    return 1\n\ndef train(net):\n    return helper() + len(list(net.parameters()))\n")
    with pytest.raises(NameError) as info:
        export_parts("06_net", [nb["Net"], nb["train"]])
    msg = str(info.value)
    assert "Net uses HIDDEN" in msg and "train uses helper" in msg
    assert "06_net.ipynb" in msg and "the cell that defines Net" in msg and "Nothing was saved" in msg
    assert "constants={'HIDDEN': HIDDEN}" in msg
    assert not (work / "06_net.py").exists()
    export_parts("06_net", [nb["Net"], nb["helper"], nb["train"]], constants={"HIDDEN": 16})
    parts = import_parts("06_net")
    assert parts.train(parts.Net()) == 3


def test_names_the_module_provides_are_not_reported(nb, work):
    nb.run(
        "import math\nimport torch\n\ndef f(x):\n    y = [math.pi * v for v in x]\n"
        "    return torch.tensor(y).sum() + len(y) + vaekit.run_budget(num_epochs=1).num_epochs\n"
    )
    export_parts("06_net", [nb["f"]])
    assert float(import_parts("06_net").f([1.0])) > 3

"""Red team: hostile submissions graded by the real `python -m autograder grade`, in one batch with controls.

Every attacker submits only notebook 01 (its other notebooks are `missing`). The batch holds
two clean controls (the solutions), one untouched-stub control, an honest student with unusual
code, and the attackers of ATTACKS below. The controls are graded once more on their own; their
rows must not change when attackers share the batch. Around the batch the test watches what must
not change (the submissions, solutions/, autograder/, a sentinel beside OUT), which processes
survive (the attackers' daemons carry a unique token in their command lines, and try to write
marker files into /tmp) and how long it takes.

Attacks, by class (each entry of ATTACKS says what it tries and what the grader must answer):

* points without work: importing the reference / reading solutions and checks from disk,
  sys.modules and torch monkeypatching, IPython hooks, settrace, __code__ swaps and patching the
  harness in place, tensor subclasses with __torch_function__, objects with odd __eq__/__float__,
  forged and malformed frames on the judge's socket, fake test cells, forged nbgrader metadata;
* leaks: printing and raising the hidden inputs (the feedback shows neither them nor any line of
  the hidden checks);
* harm to others: files in /tmp, HOME, IPython's startup folder, the parts folder, other
  students' and the instructor's files, signals to every pid, killpg(0), setsid daemons, a fork
  bomb, filling /tmp, floods of output, memory bombs (private and shared memory), closing fds,
  endless loops and sleeps (in a defining cell and in functions the judge calls), SystemExit and
  os._exit in functions the judge calls;
* HTML/JS injection in markdown answers and outputs: no script of the student's runs in the feedback.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import html.parser
import os
import re
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import corpus
import nbformat
import pytest

from autograder import samples
from autograder.config import REPO, SOLUTIONS

pytestmark = pytest.mark.slow

AE = "01_autoencoder"
TIMEOUT = 10  # --timeout: seconds per cell or check
NOTEBOOK_TIMEOUT = 120  # --notebook-timeout
MEMORY_MB = 1024  # --memory-limit
BATCH_BOUND = 240  # seconds one batch of 8 may take (2 workers on a loaded 2-core machine)
TOKEN = "rt" + uuid.uuid4().hex[:12]  # in every attacker's process names and marker files
ALL = None  # "every test cell of the notebook scores 0"

CELLS = (
    "test_ae_encoder",
    "test_ae_decoder",
    "test_ae_architecture",
    "test_ae_forward",
    "test_ae_loss",
    "test_ae_training",
    "test_ae_sampling",
)


# ------------------------------------------------------------------------------ attack code
# {token}, {repo}, {subs}, {out}, {mark} are filled in per batch

READ_INSTRUCTOR = """
import os, sys
found = []
for path in ["{repo}/solutions/01_autoencoder.ipynb", "{repo}/autograder/checks/ae.py",
             "{repo}/autograder/checks/reference.py"]:
    try:
        found.append(open(path).read())
    except OSError as exc:
        print("not here", path, exc)
for folder in ["{repo}/autograder/checks", "{repo}/solutions", "{out}"]:
    try:
        print(os.listdir(folder))
    except OSError:
        pass
"""

IMPORT_REFERENCE = """
import sys, importlib
sys.path[:0] = ["{repo}", "/opt", "/opt/vaekit", "/opt/vaekit-harness"]
for name in ["autograder.checks.reference", "autograder.checks.ae", "autograder"]:
    try:
        mod = importlib.import_module(name)
        ae_loss = getattr(mod, "ae_loss", None) or ae_loss
    except Exception as exc:
        print("no", name, type(exc).__name__)
try:
    vaekit.import_parts("reference")
except Exception as exc:
    print("no parts", type(exc).__name__)
"""

MONKEYPATCH = """
import sys, types, torch, torch.testing
always = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
torch.allclose = always
torch.equal = always
torch.isclose = lambda a, b, *r, **k: torch.ones_like(torch.as_tensor(a), dtype=torch.bool)
torch.Tensor.__eq__ = lambda self, other: True
torch.Tensor.allclose = always
fake = types.ModuleType("autograder.checks")
fake.require = lambda *a, **k: None
sys.modules["autograder"] = types.ModuleType("autograder")
sys.modules["autograder.checks"] = fake
sys.modules["torch.testing"] = types.SimpleNamespace(assert_close=lambda *a, **k: None)
"""

HOOKS = """
import sys, gc, threading
ip = get_ipython()
ip.set_custom_exc((BaseException,), lambda shell, etype, value, tb, tb_offset=None: None)
ip.events.register("post_run_cell", lambda result: setattr(result, "error_in_exec", None))
sys.excepthook = lambda *a: None
def tracer(frame, event, arg):
    if event == "exception":
        frame.f_locals.clear()
    return tracer
sys.settrace(tracer)
threading.settrace(tracer)
sys.setprofile(lambda *a: None)
# patch the harness in place: every error becomes a plausible answer
for obj in gc.get_objects():
    if type(obj).__name__ == "Harness":
        real = obj.op_call
        def op_call(header, real=real, harness=obj):
            try:
                return real(header)
            except BaseException:
                import torch
                return {{"value": 1.0, "lent_state": {{}}}}
        obj.op_call = op_call
        obj.answer.__func__.__code__ = obj.answer.__func__.__code__.replace()
# __code__ swap: the stubs' bodies become "return a zero tensor"
def _zero(*a, **k):
    import torch
    return torch.zeros(())
ae_loss.__code__ = _zero.__code__
"""

TENSOR_SUBCLASS = """
class Always(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func.__name__ in ("__eq__", "eq", "allclose", "isclose", "equal", "__bool__", "__lt__", "__le__"):
            return True
        return super().__torch_function__(func, types, args, kwargs or {{}})
    def __eq__(self, other):
        return True
    def __float__(self):
        return 545.0

def ae_loss(x, logits):
    return torch.zeros(()).as_subclass(Always)

class Sneaky(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return True      # even detach() says True
"""

ODD_OBJECTS = """
class Liar:
    shape = (8, 64)
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __lt__(self, other): return True
    def __gt__(self, other): return True
    def __float__(self): return 543.5
    def __bool__(self): return True
    def __len__(self): return 3
    def dim(self): return 0
    def __getattr__(self, name): return self
    def __call__(self, *a, **k): return self

def ae_loss(x, logits):
    return Liar()
def train_autoencoder(model, train_x, num_epochs, batch_size=128, lr=1e-3):
    return [Liar() for _ in range(num_epochs)]
def sample_autoencoder(model, num_samples, latent_dim=64):
    return Liar()
"""

FORGE_FRAMES = """
import os, stat, struct, json
def frame(header, blobs=()):
    header = dict(header, blobs=[len(b) for b in blobs])
    head = json.dumps(header).encode()
    return struct.pack(">I", len(head)) + head + b"".join(blobs)
for fd in range(3, 64):
    try:
        if stat.S_ISSOCK(os.fstat(fd).st_mode):
            for rid in range(1, 40):
                os.write(fd, frame({{"re": rid, "ok": True, "value": 1.0}}))
    except OSError:
        pass
"""

DEEP_JSON = """
import os, stat, struct
head = b"[" * 200000 + b"]" * 200000
for fd in range(3, 64):
    try:
        if stat.S_ISSOCK(os.fstat(fd).st_mode):
            import select
            data = memoryview(struct.pack(">I", len(head)) + head)
            while data:
                select.select([], [fd], [], 5)
                try:
                    data = data[os.write(fd, data):]
                except BlockingIOError:
                    pass
    except OSError:
        pass
"""

CLOSE_FDS = """
import os
null = os.open(os.devnull, os.O_RDWR)
for fd in range(3, 256):
    if fd != null:
        try:
            os.dup2(null, fd)
        except OSError:
            pass
os.closerange(3, 1024)
"""

LEAK_LOSS = """
import sys
def ae_loss(x, logits):
    print("LEAK-{token}", x.flatten()[:50].tolist(), logits.flatten()[:50].tolist())
    print("LEAK-{token}", x, file=sys.stderr)
    raise ValueError("LEAK-{token} " + repr(x.flatten()[:50].tolist()) + " " + repr(globals().keys()))
"""

FILES = """
import os, glob
def attempt(what, fn):
    try:
        fn()
    except Exception as exc:
        print(what, type(exc).__name__)
attempt("tmp", lambda: open("/tmp/{token}-from-sandbox", "w").write("x"))
attempt("home", lambda: open(os.path.expanduser("~/.{token}"), "w").write("x"))
os.makedirs(os.path.expanduser("~/.ipython/profile_default/startup"), exist_ok=True)
attempt("startup", lambda: open(os.path.expanduser("~/.ipython/profile_default/startup/00-{token}.py"), "w")
        .write("open('/tmp/{token}-startup', 'w')\\n"))
attempt("ipythondir", lambda: os.makedirs(os.environ.get("IPYTHONDIR", "/tmp/ipython") + "/profile_default/startup",
                                          exist_ok=True))
attempt("parts", lambda: open("/parts/{token}.py", "w").write("x"))
attempt("cache", lambda: open("/cache/{token}", "w").write("x"))
attempt("other student", lambda: open("{subs}/control_a/01_autoencoder.ipynb").read())
attempt("other student write", lambda: open("{subs}/control_a/01_autoencoder.ipynb", "w").write("{{}}"))
attempt("out", lambda: open("{out}/grades.csv", "w").write("control_a,01_autoencoder,0"))
attempt("sentinel", lambda: open("{mark}", "w").write("changed"))
attempt("repo", lambda: os.remove("{repo}/solutions/01_autoencoder.ipynb"))
attempt("etc", lambda: open("/etc/{token}", "w").write("x"))
attempt("proc", lambda: print(os.listdir("/proc")))
attempt("slots", lambda: print(glob.glob("/tmp/*") + glob.glob("/parts/*")))
"""

SIGNALS = """
import os, signal
me = os.getpid()
for pid in range(1, 5000):
    if pid != me:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
try:
    os.kill(-1, signal.SIGKILL)
except OSError:
    pass
"""

KILLPG = """
import os, signal
try:
    os.killpg(0, signal.SIGKILL)
except OSError:
    pass
"""

DAEMON = """
import os, sys, subprocess, signal
CODE = ("import os, signal, time\\n"
        "for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT): signal.signal(s, signal.SIG_IGN)\\n"
        "while True:\\n"
        "    for d in ('/tmp', os.path.expanduser('~'), '/parts', '{mark_dir}'):\\n"
        "        try: open(d + '/{token}-marker-%d-%f' % (os.getpid(), time.time()), 'w').close()\\n"
        "        except OSError: pass\\n"
        "    time.sleep(0.2)\\n")
def spawn():
    subprocess.Popen([sys.executable, "-c", CODE, "{token}"], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid = os.fork()
    if pid == 0:            # the classic double fork
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", CODE, "{token}"])
        os._exit(0)
    os.waitpid(pid, 0)
spawn()

def ae_loss(x, logits):       # the judge calls it: one more daemon, mid-check
    spawn()
    raise NotImplementedError()
"""

FORK_BOMB = """
import os, time
kids = 0
try:
    while kids < 3000:
        pid = os.fork()
        if pid == 0:
            try:
                os.execv("/bin/sleep", ["sleep-{token}", "300"])
            finally:
                os._exit(0)
        kids += 1
except OSError as exc:
    print("stopped after", kids, exc)
"""

FILL_TMP = """
import os
block = b"x" * 2**20
n = 0
try:
    for i in range(64):
        with open("/tmp/fill-%d" % i, "wb") as f:
            for _ in range(4096):
                f.write(block)
                n += 1
except OSError as exc:
    print("tmp full after", n, "MB", exc)
"""

FLOOD = """
import sys
print("x" * 50_000_000)
for i in range(200_000):
    print(i, file=sys.stderr if i % 2 else sys.stdout)
from IPython.display import display, HTML
display(HTML("<b>" + "y" * 10_000_000 + "</b>"))
"""

MEMORY_BOMB = """
def hog():
    blocks = []
    while True:
        blocks.append(torch.ones(2**26))   # 256 MB at a time, until the kernel's limit
hog()
"""

# shared memory is not "data": the kernel's memory limit must still hold it. If the 6 GB
# (six times --memory-limit, beyond the address-space cap too) are granted, ae_loss becomes the
# honest one and would score.
SHARED_MEMORY_BOMB = """
import mmap, os
granted = 0
try:
    maps = []
    import ctypes
    for _ in range(24):
        m = mmap.mmap(-1, 2**28)            # anonymous MAP_SHARED: not counted as RLIMIT_DATA
        ctypes.memset(ctypes.addressof(ctypes.c_char.from_buffer(m)), 1, 2**28)
        maps.append(m)
        granted += 1
except (OSError, MemoryError, ValueError) as exc:
    print("refused after", granted, exc)
try:
    for _ in range(12):
        fd = os.memfd_create("{token}")
        os.ftruncate(fd, 2**28)
        os.write(fd, b"x" * 2**20)
except (OSError, AttributeError) as exc:
    print("memfd refused", exc)
if granted == 24:
    def ae_loss(x, logits):
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
"""

LOOP = "import time\nwhile True:\n    time.sleep(0.1)\n"

STUBBORN_LOSS = """
def ae_loss(x, logits):
    import time
    while True:
        try:
            time.sleep(0.5)
        except BaseException:
            pass
"""

SLEEP_LOSS = """
def ae_loss(x, logits):
    import time
    time.sleep(10_000)
"""

EXIT_LOSS = """
def ae_loss(x, logits):
    import os
    os._exit(0)
"""

SYSEXIT_LOSS = """
def ae_loss(x, logits):
    raise SystemExit("bye")
"""

KEYBOARD_LOSS = """
def ae_loss(x, logits):
    raise KeyboardInterrupt
"""

# honest but unusual: must keep full marks and status ok
UNUSUAL = '''
import sys, os, gc, inspect
hidden = {"answer": 42}
torch_again = sys.modules["torch"]
zeros = getattr(torch_again, "zeros")
class Helper:
    """a helper class with odd dunders, never handed to the judge"""
    def __eq__(self, other):
        return True
    def __getattr__(self, name):
        return name
helper = Helper()
print("checking " * 30_000)
print(os.getcwd(), sys.version, len(gc.get_objects()) > 0, inspect.isclass(Helper))
print(open("/proc/self/status").read()[:100])
print(sorted(os.listdir(os.path.dirname(vaekit.__file__)))[:3])
'''

HTML_ANSWER = """<script>window.PWNED_{token} = 1</script>
<img src="x" onerror="window.PWNED_{token}=2">
<a href="javascript:window.PWNED_{token}=3">click</a>
[md link](javascript:window.PWNED_{token}=4)
<svg xmlns="http://www.w3.org/2000/svg"><script>window.PWNED_{token}=5</script></svg>
<iframe src="javascript:window.PWNED_{token}=6"></iframe>
<body onload="window.PWNED_{token}=7"></body>
<div style="background:url(javascript:window.PWNED_{token}=8)">x</div>
"""


def html_outputs(token: str) -> list:
    new = nbformat.v4.new_output
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" onload="window.PWNED_{token}=9">'
        f"<script>window.PWNED_{token}=10</script></svg>"
    )
    return [
        new(
            "display_data",
            data={
                "text/html": f'<script>window.PWNED_{token}=11</script><img src=x onerror="window.PWNED_{token}=12">',
                "text/plain": "x",
            },
        ),
        new("display_data", data={"application/javascript": f"window.PWNED_{token}=13"}),
        new("display_data", data={"image/svg+xml": svg}),
        new(
            "execute_result",
            data={
                "text/html": f"<a href='javascript:window.PWNED_{token}=14'>a</a>",
                "text/markdown": f"<script>window.PWNED_{token}=15</script>",
            },
            execution_count=1,
        ),
        new("stream", name="stdout", text=f"</pre><script>window.PWNED_{token}=16</script>\n"),
        new(
            "error",
            ename="<script>x</script>",
            evalue=f"<img src=x onerror=window.PWNED_{token}=17>",
            traceback=[f"<script>window.PWNED_{token}=18</script>"],
        ),
    ]


# ------------------------------------------------------------------------------ building the batch
def release_and_source(base: Path) -> tuple[dict, dict]:
    from autograder.config import load_course
    from autograder.release import generate, prepare_course

    course = load_course()
    root = base / "course"
    prepare_course(root, course)
    release_dir = generate(root, course)
    release = nbformat.read(release_dir / f"{AE}.ipynb", as_version=4)
    source = nbformat.reads(course.substitute((SOLUTIONS / f"{AE}.ipynb").read_text()), as_version=4)
    return release, source


def add_cell(nb, code: str, after: str = "ae_model", outputs: list | None = None):
    nb = samples.insert_after(nb, after, code)
    if outputs is not None:
        nb.cells[samples.find_cell(nb, after) + 1].outputs = outputs
    return nb


def set_answer(nb, grade_id: str, code: str):
    nb = copy.deepcopy(nb)
    nb.cells[samples.find_cell(nb, grade_id)].source = code
    return nb


def forged_metadata(stub):
    """Test cells replaced by `pass` with fake passing outputs, points raised, an extra graded cell."""
    nb = copy.deepcopy(stub)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            cell.source = "print('All tests passed')"
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="All tests passed\n")]
            meta["points"] = 1000
        if meta.get("solution"):
            meta["grade"], meta["points"] = True, 1000
    extra = nbformat.v4.new_code_cell("pass")
    extra.metadata["nbgrader"] = {
        "grade": True,
        "solution": False,
        "grade_id": "test_ae_loss",
        "points": 1000,
        "locked": True,
        "schema_version": 3,
    }
    nb.cells.append(extra)
    return nb


def attacks(stub, full, ctx: dict) -> list[dict[str, tuple]]:
    """Batches of {student: (notebook, zero-scored cells (ALL: every cell), statuses allowed, what it tries)}.

    Attacks that cannot hide each other share a student, so that each batch stays at 8 students
    with the three controls (a shared 2-core machine)."""
    f = lambda code: code.format(**ctx)  # noqa: E731

    def on(nb, *cells):
        for code, after in cells:
            nb = add_cell(nb, f(code), after=after)
        return nb

    html_nb = set_answer(full, "answer_ae_samples", f(HTML_ANSWER))
    html_nb = add_cell(html_nb, "print('hi')", outputs=html_outputs(TOKEN))
    leak_html = set_answer(html_nb, "ae_loss", f(LEAK_LOSS))
    points = on(
        set_answer(forged_metadata(stub), "ae_loss", f(TENSOR_SUBCLASS)),
        (MONKEYPATCH, "ae_model"),
        (ODD_OBJECTS, "sample_autoencoder"),
        (HOOKS, "sample_autoencoder"),
    )
    instructor = on(stub, (READ_INSTRUCTOR, "ae_model"), (IMPORT_REFERENCE, "ae_model"), (FILES, "ae_model"))
    processes = on(
        set_answer(stub, "ae_loss", f(DAEMON)), (SIGNALS, "ae_model"), (KILLPG, "ae_model"), (FORK_BOMB, "ae_model")
    )
    resources = on(
        stub, (FILL_TMP, "ae_model"), (FLOOD, "ae_model"), (MEMORY_BOMB, "ae_model"), (SHARED_MEMORY_BOMB, "ae_loss")
    )
    resources = add_cell(
        resources,
        "print('big')",
        after="sample_autoencoder",
        outputs=[nbformat.v4.new_output("stream", name="stdout", text="z" * 3_000_000)],
    )
    judge_calls = set_answer(full, "ae_loss", STUBBORN_LOSS)
    judge_calls = add_cell(
        judge_calls, SLEEP_LOSS.replace("ae_loss(x, logits)", "train_autoencoder(*a, **k)"), after="train_autoencoder"
    )
    judge_calls = add_cell(
        judge_calls, EXIT_LOSS.replace("ae_loss(x, logits)", "sample_autoencoder(*a, **k)"), after="sample_autoencoder"
    )
    judge_calls = add_cell(
        judge_calls,
        "def _forward(self, x):\n    raise SystemExit('bye')\nAutoencoder.forward = _forward\n",
        after="ae_model",
    )
    return [
        {
            "atk_points": (
                points,
                ALL,
                {"ok", "repaired", "error"},
                "forged test cells and points, tensor subclass, odd __eq__/__float__, torch and "
                "sys.modules patches, IPython hooks, settrace, harness and __code__ patching",
            ),
            "atk_instructor": (
                instructor,
                ALL,
                {"tampered"},
                "reads solutions/ and checks, imports the reference, writes /tmp, HOME, startup, "
                "parts, others' files, OUT, the sentinel",
            ),
            "atk_forge": (
                on(stub, (FORGE_FRAMES, "ae_model")),
                ALL,
                {"tampered"},
                "forged frames on the judge's socket",
            ),
            "atk_leak_html": (
                leak_html,
                ["test_ae_loss"],
                {"ok"},
                "prints and raises the hidden inputs; HTML/JS in a markdown answer and outputs",
            ),
        },
        {
            "atk_deep_json": (on(stub, (DEEP_JSON, "ae_model")), ALL, {"tampered"}, "a frame of deeply nested JSON"),
            "atk_processes": (
                processes,
                ALL,
                {"ok", "error", "timeout"},
                "setsid daemons, double fork, SIGKILL to every pid, killpg(0), fork bomb",
            ),
            "atk_resources": (
                resources,
                ALL,
                {"ok", "error", "timeout"},
                "fills /tmp, floods output, memory bombs (private, shared mmap, memfd), huge output",
            ),
            "atk_close_fds": (on(stub, (CLOSE_FDS, "ae_model")), ALL, {"error"}, "closes every fd"),
            "atk_loop_define": (on(stub, (LOOP, "ae_model")), ALL, {"timeout"}, "endless loop in a defining cell"),
        },
        {
            "atk_judge_calls": (
                judge_calls,
                ["test_ae_loss", "test_ae_training", "test_ae_sampling", "test_ae_forward", "test_ae_architecture"],
                {"timeout"},
                "endless loop ignoring interrupts, sleep, os._exit, SystemExit in functions the judge calls",
            ),
            "atk_keyboard": (
                set_answer(full, "ae_loss", KEYBOARD_LOSS),
                ["test_ae_loss"],
                {"ok", "timeout"},
                "KeyboardInterrupt raised by a function the judge calls",
            ),
        },
    ]


def rows(path: Path) -> list[dict]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def snapshot(*folders: Path) -> dict[str, str]:
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def token_processes() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if TOKEN in cmd and int(entry.name) != os.getpid():
            found.append(f"{entry.name}: {cmd[:120]}")
    return found


def host_markers() -> list[str]:
    return sorted(str(p) for p in Path("/tmp").glob(f"*{TOKEN}*"))


def grade(submissions: Path, out: Path) -> SimpleNamespace:
    """The real `python -m autograder grade` with this corpus's short limits (corpus.grade runs it)."""
    limits = ["--timeout", str(TIMEOUT), "--notebook-timeout", str(NOTEBOOK_TIMEOUT), "--memory-limit", str(MEMORY_MB)]
    return corpus.grade(submissions, out, 2, *limits)


def by_student(out: Path) -> tuple[dict, dict]:
    """{student: {grade_id: points}} for notebook 01, and {student: report row} for notebook 01."""
    points: dict[str, dict[str, float]] = {}
    for r in rows(out / "grades.csv"):
        if r["notebook"] == AE:
            points.setdefault(r["student"], {})[r["cell"]] = float(r["points"])
    report = {r["student"]: r for r in rows(out / "report.csv") if r["notebook"] == AE}
    return points, report


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    base = tmp_path_factory.mktemp("redteam")
    release, source = release_and_source(base)
    full = samples.full(release, source)
    beside = base / "beside"
    beside.mkdir(parents=True)
    sentinel = beside / "sentinel.txt"
    sentinel.write_text("must not change\n")
    controls = {"control_a": full, "control_b": full, "control_stub": release}
    # the controls alone, once (with the honest-but-unusual student)
    alone = base / "alone"
    for student, nb in {**controls, "honest_unusual": add_cell(full, UNUSUAL, after="sample_autoencoder")}.items():
        samples.write(nb, alone / student / f"{AE}.ipynb")
    solo = grade(alone, base / "alone-out")
    assert solo.proc.returncode == 0, solo.proc.stderr[-3000:]
    runs = []
    for k in range(3):
        subs, out = base / f"submissions{k}", base / f"out{k}"
        ctx = {
            "token": TOKEN,
            "repo": str(REPO),
            "subs": str(subs),
            "out": str(out),
            "mark": str(sentinel),
            "mark_dir": str(beside),
        }
        planned = attacks(release, full, ctx)[k]
        for student, nb in controls.items():
            samples.write(nb, subs / student / f"{AE}.ipynb")
        for student, (nb, *_rest) in planned.items():
            samples.write(nb, subs / student / f"{AE}.ipynb")
        watched = (subs, REPO / "solutions", REPO / "autograder", beside)
        before = snapshot(*watched)
        procs_before, markers_before = token_processes(), host_markers()
        result = grade(subs, out)
        print(
            f"\nbatch {k} ({len(planned) + len(controls)} students) graded in {result.seconds:.0f} s\n"
            f"{result.proc.stderr[-1500:]}"
        )
        time.sleep(1.5)  # a surviving daemon would write a marker in this time
        runs.append(
            SimpleNamespace(
                subs=subs,
                out=out,
                result=result,
                planned=planned,
                before=before,
                after=snapshot(*watched),
                procs_before=procs_before,
                procs_after=token_processes(),
                markers_before=markers_before,
                markers_after=host_markers(),
            )
        )
    print(f"controls alone in {solo.seconds:.0f} s")
    return SimpleNamespace(base=base, solo=solo, runs=runs, controls=controls, source=source, release=release)


def test_batch_completes_within_bound(batch):
    for run in batch.runs:
        assert run.result.proc.returncode == 0, run.result.proc.stderr[-4000:]
        assert run.result.seconds < BATCH_BOUND, run.result.seconds
        _points, report = by_student(run.out)
        assert set(run.planned) | set(batch.controls) <= set(report)


def test_controls_unaffected_by_attackers(batch):
    alone_points, alone_report = by_student(batch.solo.out)
    assert all(alone_points["control_a"][c] for c in CELLS), alone_points["control_a"]  # the solutions pass
    assert not any(alone_points["control_stub"].values())
    # honest but unusual code: full marks, never tampered
    assert alone_points["honest_unusual"] == alone_points["control_a"]
    assert alone_report["honest_unusual"]["status"] == "ok", alone_report["honest_unusual"]
    for k, run in enumerate(batch.runs):
        points, report = by_student(run.out)
        for student in batch.controls:
            assert points[student] == alone_points[student], (k, student)
            assert report[student]["status"] == alone_report[student]["status"], (k, student, report[student])
            assert report[student]["detail"] == alone_report[student]["detail"], (k, student)


def test_no_attacker_gains_points(batch):
    control, _ = by_student(batch.solo.out)
    problems = []
    for run in batch.runs:
        points, _report = by_student(run.out)
        for student, (_nb, zero, _statuses, what) in run.planned.items():
            mine = points.get(student, {})
            for cell in CELLS:
                if (zero is ALL or cell in zero) and mine.get(cell, 0) != 0:
                    problems.append(f"{student} ({what}): {cell} scored {mine[cell]}")
                if mine.get(cell, 0) > control["control_a"][cell]:
                    problems.append(f"{student} ({what}): {cell} above the solutions")
            if mine.get("answer_ae_samples", 0):  # graded by hand: the autograder gives it nothing
                problems.append(f"{student}: a written answer got points")
    assert not problems, "\n".join(problems)


def test_each_attacker_status_says_what_happened(batch):
    problems = []
    for run in batch.runs:
        _points, report = by_student(run.out)
        for student, (_nb, _zero, statuses, what) in run.planned.items():
            row = report[student]
            if row["status"] not in statuses:
                problems.append(
                    f"{student} ({what}): status {row['status']!r}, expected {sorted(statuses)}; {row['detail'][:300]}"
                )
            elif row["status"] == "tampered" and "tampering" not in row["detail"]:
                problems.append(f"{student}: tampered without evidence: {row}")
    assert not problems, "\n".join(problems)


def test_nothing_outside_out_changes(batch):
    for run in batch.runs:
        changed = sorted(set(run.before.items()) ^ set(run.after.items()))
        assert not changed, changed[:10]
        assert run.markers_after == run.markers_before, run.markers_after


def test_no_process_survives(batch):
    for run in batch.runs:
        assert run.procs_after == [], run.procs_after
    # nothing keeps writing: no marker appears after the grader exited
    markers = host_markers()
    time.sleep(0.6)
    assert host_markers() == markers
    assert token_processes() == []


def secrets(source, release) -> list[str]:
    public = "\n".join(c.source for c in release.cells)
    public += "\n".join(p.read_text() for p in (REPO / "vaekit").rglob("*.py"))
    # the solutions' answer cells are what the clean controls typed in: theirs to see
    public += "\n".join(c.source for c in source.cells if c.metadata.get("nbgrader", {}).get("solution"))
    lines = set()
    for path in (REPO / "autograder" / "checks").glob("*.py"):
        lines.update(line.strip() for line in path.read_text().splitlines())
    for cell in source.cells:
        if "BEGIN HIDDEN TESTS" in cell.source:
            lines.update(line.strip() for line in cell.source.split("BEGIN HIDDEN TESTS", 1)[1].splitlines())
    return sorted(s for s in lines if len(s) >= 25 and s not in public)


def plain_text(page: str) -> str:
    import html as html_module

    return html_module.unescape(re.sub(r"<[^>]+>", "", page))


def test_feedback_leaks_nothing(batch):
    hidden = secrets(batch.source, batch.release)
    assert len(hidden) > 20
    problems = []
    pages = [batch.solo.out / "feedback" / s / f"{AE}.html" for s in (*batch.controls, "honest_unusual")]
    pages += [run.out / "feedback" / s / f"{AE}.html" for run in batch.runs for s in run.planned]
    for path in pages:
        student = path.parent.name
        page = path.read_text()
        text = plain_text(page)
        leaked = [s for s in hidden if s in text]
        if leaked:
            problems.append(f"{student}: {leaked[:2]}")
        for marker in ("BEGIN HIDDEN TESTS", "hidden.check_", "autograder/checks/ae.py\n", "check_ae_loss"):
            if marker in text:
                problems.append(f"{student}: {marker!r} in the feedback")
        # what the leaking ae_loss printed or raised while graded (its source names the token too)
        if re.search(rf"LEAK-{TOKEN} (\[|tensor|dict_keys)", text):
            problems.append(f"{student}: the hidden inputs reached the feedback")
        if len(page) > 5_000_000:
            problems.append(f"{student}: feedback of {len(page):,} characters")
    assert not problems, "\n".join(problems)


class _Scripts(html.parser.HTMLParser):
    """Collects what a browser would run: script bodies, on* handlers, javascript: URLs."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self._in_script = True
        for name, value in attrs:
            value = (value or "").strip().lower()
            if name.startswith("on") and value:
                self.found.append(f"<{tag} {name}={value[:60]}>")
            if name in ("href", "src", "xlink:href", "action", "formaction", "data") and re.sub(
                r"\s", "", value
            ).startswith(("javascript:", "vbscript:", "data:text/html")):
                self.found.append(f"<{tag} {name}={value[:60]}>")
            if name == "style" and "javascript:" in value:
                self.found.append(f"<{tag} style={value[:60]}>")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and TOKEN in data:
            self.found.append(f"<script>{data[:80]}")


def _student_scripts(batch, part: str) -> list[str]:
    page = (batch.runs[0].out / "feedback" / "atk_leak_html" / f"{AE}.html").read_text()
    assert "click" in page
    start = page.index("PWNED_") if part == "outputs" else page.index(f"window.PWNED_{TOKEN} = 1")
    end = page.index(f"window.PWNED_{TOKEN} = 1") if part == "outputs" else len(page)
    parser = _Scripts()
    parser.feed(page[max(0, start - 2000) : end])
    return [f for f in parser.found if TOKEN.lower() in f.lower() or "pwned" in f.lower()]


def test_feedback_runs_no_script_of_the_outputs(batch):
    """HTML, SVG, JavaScript, markdown outputs and tracebacks the student submitted: escaped or dropped."""
    mine = _student_scripts(batch, "outputs")
    assert not mine, mine


def test_feedback_runs_no_script_of_a_markdown_answer(batch):
    """<script>, onerror, javascript: links, iframes and SVG script in a written answer: not live in the page."""
    mine = _student_scripts(batch, "answer")
    assert not mine, mine

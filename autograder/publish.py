"""Write the public, student-facing repository: released notebooks and vaekit, nothing else.

The course's own repository holds solutions/, the hidden checks (autograder/) and tests/;
students must never see them. Publish into a clone of the repository named in
autograder/course.toml (Colab badges and `pip install` point there).

Publishing never destroys what it does not own. It keeps a manifest,
`DIR/.vaekit-published.json`, of the files it wrote (with their SHA-256), and
- writes only the student files; `.git` and every other file of DIR stay as they are;
- replaces or removes only files of its manifest that are unchanged since it wrote them;
- refuses, listing them, to replace a file it did not write (or one edited since it
  wrote it) unless `overwrite=True` (`--overwrite`), which first copies each one to a
  backup folder next to DIR (outside the repository);
- refuses before writing anything when assignments/ is stale with respect to
  solutions/ and autograder/course.toml, or when a file holds solutions or hidden tests.

`notebooks` publishes a subset (a release schedule): the notebooks named, plus those
published before that are still in DIR. A later publish naming more adds them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from autograder.config import ASSIGNMENTS, REPO, Course, load_course

MANIFEST = ".vaekit-published.json"
SHIPPED = ["assignments", "vaekit", "pyproject.toml", "environment.yml"]
SKIPPED = re.compile(r"(^|/)(__pycache__|vaekit_work|\.[^/]*)(/|$)|\.pyc$")
FORBIDDEN = re.compile(r"### (BEGIN|END) (SOLUTION|HIDDEN TESTS)|autograder\.checks|Rubric")
RELEASE_HINT = "run `python -m autograder release` (or `make release`), commit assignments/, then publish again"

STUDENT_README = """# {title}

Open a notebook in Colab with its badge, or run it locally:

    pip install -e .          # vaekit, the course helpers (keeps an installed torch)
    jupyter lab assignments/

| notebook | topic |
|---|---|
{rows}

Work through them in order: notebooks 3 and 4 load the code and weights that notebooks 1
and 2 save to your course work folder (your Google Drive in Colab, `./vaekit_work` locally).
Submit the notebooks as your instructor says; keep the file names.
"""


class PublishError(Exception):
    """Publishing was refused; the message says why and what to do. Nothing was written."""


@dataclass
class Published:
    """What `publish` did, paths relative to `out`."""

    out: Path
    notebooks: list[str]
    new: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)  # files of the manifest, rewritten
    unchanged: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)  # already there, identical: now in the manifest
    replaced: list[str] = field(default_factory=list)  # not publish's (or edited): backed up, replaced
    removed: list[str] = field(default_factory=list)  # publish's own, no longer shipped
    released_before: list[str] = field(default_factory=list)  # notebooks kept because published before
    let_go: list[str] = field(default_factory=list)  # no longer shipped but edited: kept, unmanaged
    backup: Path | None = None

    @property
    def files(self) -> list[Path]:
        """Every file publish wrote or keeps up to date (the manifest's files)."""
        return sorted(self.out / r for r in self.new + self.updated + self.unchanged + self.adopted + self.replaced)

    def report(self) -> str:
        """A few lines for the console."""
        lines = [f"published {len(self.notebooks)} notebook(s) to {self.out}: {', '.join(self.notebooks)}"]
        if self.released_before:
            lines.append(f"  still published from before: {', '.join(self.released_before)}")
        lines.append(
            f"  {len(self.files)} files: {len(self.new)} new, {len(self.updated)} updated, "
            f"{len(self.unchanged) + len(self.adopted)} unchanged"
        )
        for title, items in (("new", self.new), ("updated", self.updated)):
            if 0 < len(items) <= 10:
                lines.append(f"  {title}: {', '.join(items)}")
        for title, items in (
            ("replaced (not written by publish, or edited since)", self.replaced),
            ("removed (written by an earlier publish, no longer shipped)", self.removed),
            ("kept (no longer shipped, but edited since publish wrote it: yours now)", self.let_go),
        ):
            if items:
                lines.append(f"  {title}: {', '.join(items)}")
        if self.backup:
            lines.append(f"  the replaced files were copied to {self.backup} first")
        lines.append(
            f"  nothing else in {self.out} was touched. Review with `git -C {self.out} status`, then commit and push."
        )
        return "\n".join(lines)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def released_notebooks() -> list[str]:
    """The stems of the committed student notebooks (assignments/), in course order."""
    return sorted(p.stem for p in ASSIGNMENTS.glob("*.ipynb"))


def select_notebooks(requested: list[str] | None, available: list[str]) -> list[str]:
    """The released stems named by `requested` (`01`, `1`, `01_autoencoder` or `01_autoencoder.ipynb`)."""
    if requested is None:
        return list(available)
    chosen = []
    for word in requested:
        word = word.strip().removesuffix(".ipynb")
        hits = [s for s in available if s == word or s.split("_", 1)[0].lstrip("0") == word.lstrip("0") != ""]
        if len(hits) != 1:
            raise PublishError(
                f"--notebooks {word}: no released notebook is called that; choose among "
                f"{', '.join(available)} (e.g. --notebooks 01 02)"
            )
        if hits[0] not in chosen:
            chosen.append(hits[0])
    return sorted(chosen)


def release_problems(course: Course | None = None) -> list[str]:
    """Why the committed assignments/ is not what solutions/ and course.toml make ([] if it is).

    Checks the Colab badges and pip lines against course.toml, then compares every
    notebook with a fresh `python -m autograder release` (nbgrader, a few seconds).
    """
    from autograder.release import release

    course = course or load_course()
    committed = ASSIGNMENTS
    problems = []
    badge = re.compile(r"colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob/([^/\s\"]+)/")
    pip = re.compile(r"git\+https://github\.com/([\w.-]+/[\w.-]+)@([^\s\"\\\]]+)")
    want = f"{course.github_repo}@{course.ref}"
    for path in sorted(committed.glob("*.ipynb")):
        text = path.read_text()
        for what, pattern in (("Colab badge", badge), ("pip line", pip)):
            seen = sorted({f"{m.group(1)}@{m.group(2)}" for m in pattern.finditer(text)} - {want})
            if seen:
                problems.append(f"{path.name}: the {what} points at {', '.join(seen)}, course.toml says {want}")
    with tempfile.TemporaryDirectory(prefix="vaekit-publish-check-") as tmp:
        try:
            fresh = {p.name: p for p in release(out=Path(tmp), course=course)}
        except RuntimeError as exc:  # nbgrader refused a source notebook
            raise PublishError(f"cannot check assignments/: the release from solutions/ fails ({exc})") from exc
        for name in sorted(set(fresh) | {p.name for p in committed.glob("*.ipynb")}):
            mine = committed / name
            if name not in fresh:
                problems.append(f"assignments/{name} has no source in solutions/")
            elif not mine.exists():
                problems.append(f"solutions/{name} is not released in assignments/")
            elif _json_or_none(mine) != json.loads(fresh[name].read_text()):
                problems.append(f"assignments/{name} differs from what solutions/{name} and course.toml make")
    return problems


def _json_or_none(path: Path):
    """The JSON in `path`, None if it is not JSON."""
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return None


def _staged(notebooks: list[str], course: Course) -> dict[str, bytes]:
    """The files to publish: relative posix path -> content."""
    files: dict[str, bytes] = {}
    for name in SHIPPED:
        src = REPO / name
        if src.is_file():
            files[name] = src.read_bytes()
            continue
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(REPO).as_posix()
            if path.is_symlink() or not path.is_file() or SKIPPED.search(rel):
                continue
            if path.suffix == ".ipynb" and path.parent == ASSIGNMENTS and path.stem not in notebooks:
                continue  # held back by the release schedule
            files[rel] = path.read_bytes()
    rows = "\n".join(
        f"| [{stem}](assignments/{stem}.ipynb) | {stem.split('_', 1)[-1].replace('_', ' ')} |" for stem in notebooks
    )
    files["README.md"] = STUDENT_README.format(title=f"VAE course ({course.github_repo})", rows=rows).encode()
    leaks = [
        rel
        for rel, data in files.items()
        if rel.endswith((".py", ".ipynb", ".md")) and FORBIDDEN.search(data.decode("utf-8", "replace"))
    ]
    if leaks:
        raise PublishError(f"refusing to publish: {', '.join(leaks)} hold solutions or hidden tests; {RELEASE_HINT}")
    return files


def _safe_rel(rel: object) -> bool:
    """A manifest entry publish may touch: a plain relative path, not in .git, not the manifest."""
    if not isinstance(rel, str) or not rel or "\\" in rel:
        return False
    p = PurePosixPath(rel)
    return not p.is_absolute() and ".." not in p.parts and p.parts[0] != ".git" and rel != MANIFEST


def read_manifest(out: Path) -> dict:
    """The manifest of an earlier publish into `out` ({"files": {}, "notebooks": []} if none)."""
    path = out / MANIFEST
    if not path.exists():
        return {"files": {}, "notebooks": []}
    try:
        data = json.loads(path.read_text())
        files, notebooks = data["files"], data["notebooks"]
        ok = (
            isinstance(files, dict)
            and all(_safe_rel(k) and isinstance(v, str) for k, v in files.items())
            and isinstance(notebooks, list)
            and all(isinstance(n, str) for n in notebooks)
        )
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise PublishError(
            f"{path} is not a manifest written by `python -m autograder publish`; restore it "
            f"from the public repository's git history (`git -C {out} checkout -- {MANIFEST}`) "
            f"or delete it (publish then treats every file there as not its own)"
        )
    return {"files": dict(files), "notebooks": list(notebooks)}


def _file_state(path: Path) -> str | None:
    """SHA-256 of a regular file, None if absent; raises PublishError for a link or a folder in the way."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        kind = "a symbolic link" if path.is_symlink() else "a folder"
        raise PublishError(f"{path} is {kind} where publish would write a file; move it away and publish again")
    return _sha(path.read_bytes()) if path.exists() else None


def publish(out: Path, notebooks: list[str] | None = None, *, overwrite: bool = False, check: bool = True) -> Published:
    """Publish the student files of this repository into the folder `out`.

    `notebooks`: publish only these (stems or numbers, e.g. ["01", "02"]), plus those
    published before; None publishes all. `overwrite`: replace files publish did not
    write (or that were edited since), after copying them to a backup folder next to
    `out`. `check`: refuse a stale assignments/ (runs nbgrader once). Raises
    PublishError, having written nothing, when it refuses.
    """
    out = Path(out).absolute()
    if out.resolve() == REPO or REPO in out.resolve().parents:
        raise PublishError(
            f"publish into a folder outside this repository (a clone of the public course repository), not {out}"
        )
    if out.exists() and not out.is_dir():
        raise PublishError(f"{out} is not a folder: give the folder of the public repository's clone")
    course = load_course()
    available = released_notebooks()
    if not available:
        raise PublishError(f"{ASSIGNMENTS} holds no notebook; {RELEASE_HINT}")
    chosen = select_notebooks(notebooks, available)
    manifest = read_manifest(out) if out.exists() else {"files": {}, "notebooks": []}
    before = [
        s
        for s in manifest["notebooks"]
        if s in available and s not in chosen and (out / "assignments" / f"{s}.ipynb").exists()
    ]
    chosen = sorted(set(chosen) | set(before))
    staged = _staged(chosen, course)
    owned: dict[str, str] = manifest["files"]
    result = Published(out=out, notebooks=chosen, released_before=sorted(before))

    # plan everything before touching anything
    for rel in staged:
        for parent in PurePosixPath(rel).parents:
            if parent != PurePosixPath(".") and ((out / parent).is_symlink() or (out / parent).is_file()):
                kind = "a symbolic link" if (out / parent).is_symlink() else "a file"
                raise PublishError(
                    f"{out / parent} is {kind} where publish needs a folder; move it away and "
                    f"publish again (nothing was written)"
                )
    writes, conflicts = {}, []
    for rel, data in staged.items():
        current = _file_state(out / rel)
        new = _sha(data)
        if current is None:
            result.new.append(rel)
            writes[rel] = data
        elif current == new:
            (result.unchanged if rel in owned else result.adopted).append(rel)
        elif owned.get(rel) == current:
            result.updated.append(rel)
            writes[rel] = data
        else:
            conflicts.append(rel)
            writes[rel] = data
    removals = []
    for rel, sha in owned.items():
        if rel in staged:
            continue
        try:
            current = _file_state(out / rel)
        except PublishError:
            current = "not a file"
        if current is None:
            continue
        (removals if current == sha else result.let_go).append(rel)
    if conflicts and not overwrite:
        raise PublishError(
            f"{out} already has {len(conflicts)} file(s) that publish did not write (or that were edited since "
            f"it wrote them), and publishing would replace them: {', '.join(sorted(conflicts))}. Nothing was "
            f"written. Move them away, or run publish again with --overwrite: each is then copied to a backup "
            f"folder next to {out.name} before it is replaced."
        )
    if check:
        problems = release_problems(course)
        if problems:
            raise PublishError(
                "assignments/ is stale, nothing was published:\n  - " + "\n  - ".join(problems) + f"\n{RELEASE_HINT}"
            )

    # apply
    out.mkdir(parents=True, exist_ok=True)
    if conflicts:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        result.backup = out.parent / f"{out.name}.publish-backup-{stamp}"
        for rel in sorted(conflicts):
            target = result.backup / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(out / rel, target)
        result.replaced = sorted(conflicts)
    for rel, data in writes.items():
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.publish-tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    for rel in sorted(removals):
        (out / rel).unlink()
        for parent in (out / rel).parents:
            if parent == out or any(parent.iterdir()):
                break
            parent.rmdir()
    result.removed = sorted(removals)
    for items in (result.new, result.updated, result.unchanged, result.adopted, result.let_go):
        items.sort()
    (out / MANIFEST).write_text(
        json.dumps(
            {
                "about": "files written by `python -m autograder publish` in the course's private repository; "
                "publish replaces or removes only these (and only while unchanged)",
                "notebooks": chosen,
                "files": {rel: _sha(data) for rel, data in sorted(staged.items())},
            },
            indent=1,
        )
        + "\n"
    )
    return result

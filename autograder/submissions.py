"""Find the released notebooks in one student's submission folder, also under the names students give them.

Students rarely keep a file name: Colab saves `Copy of 01_autoencoder.ipynb`, a browser
downloads `02_vae (1).ipynb`, a file manager makes `02_vae (copy).ipynb` or
`02_vae - Copy.ipynb`, and people type `02-VAE.ipynb`. `find_notebooks` matches such
names to the released ones, and says what it did, so that nobody scores 0 for a name:

- an exact name (`02_vae.ipynb`) always wins; other look-alikes are then extras;
- a unique look-alike is used, and reported in `Found.renamed` and `Found.notes`;
- two or more look-alikes of one notebook are ambiguous: that notebook stays missing,
  with a note naming them (a human decides; the grader never guesses between them);
- a notebook with no look-alike is missing; the note names a similar file if there is one.

Only files directly in the submission folder are candidates (or in its `<assignment>/`
sub-folder, nbgrader's `submitted/<student>/<assignment>/` layout). Hidden files and
folders, `__pycache__` and `.ipynb_checkpoints` are ignored. Symbolic links are never
followed (a submission could point at the instructor's files): they are listed in
`Found.ignored`.

This module only looks at names; it reads no notebook and writes nothing.
"""

from __future__ import annotations

import difflib
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

SUFFIX = ".ipynb"

# "Copy of " (Colab, also in a few of its other languages), possibly repeated.
_COPY_PREFIX = re.compile(r"^(?:copy of|copie de|kopie von|copia de|cópia de|copia di)\s+", re.IGNORECASE)
# What browsers and file managers append to a duplicate's name, possibly repeated.
_COPY_SUFFIXES = [
    re.compile(r"\s*\(\d+\)$"),  # 02_vae (1)   browsers
    re.compile(r"\s*\((?:another |\d+(?:st|nd|rd|th) )?copy\)$", re.IGNORECASE),  # 02_vae (copy)  GNOME
    re.compile(r"\s*-\s*copy(?:\s*\(\d+\))?$", re.IGNORECASE),  # 02_vae - Copy (2)  Windows
    re.compile(r"\s+copy(?:\s+\d+)?$", re.IGNORECASE),  # 02_vae copy 2  macOS
    re.compile(r"[-_ ]\d+$"),  # 02_vae-2, 02_vae_2
]
_SEPARATORS = re.compile(r"[\s_\-.]+")


@dataclass
class Found:
    """What `find_notebooks` found in one submission folder.

    files:   released stem -> the file to grade (only for notebooks found).
    renamed: released stem -> the file name the student used, for files found under another name.
    notes:   released stem -> sentences for report.csv and the student's feedback: what was
             matched, or why the notebook counts as missing. Every released stem has an entry
             (an empty list for a notebook found under its own name).
    extras:  files of the submission that are not graded (paths relative to `folder`).
    ignored: symbolic links, never followed, with the reason (relative to `folder`).
    folder:  the folder the notebooks were taken from (the student's folder, or its
             `<assignment>/` sub-folder).
    """

    files: dict[str, Path] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    extras: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    folder: Path | None = None

    def status(self, stem: str) -> str:
        """`ok` (found under its own name), `renamed` (found under another name) or `missing`."""
        if stem not in self.files:
            return "missing"
        return "renamed" if stem in self.renamed else "ok"


def name_key(text: str) -> str:
    """A name reduced to what identifies it: lower case, no spaces, underscores, hyphens or dots."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", text).strip().casefold())


def _stem(name: str) -> str | None:
    """The stem of a notebook file name (`.ipynb` in any case), else None."""
    return name[: -len(SUFFIX)] if name.lower().endswith(SUFFIX) and len(name) > len(SUFFIX) else None


def strip_copy_marks(stem: str) -> str:
    """`Copy of 02_vae (1)` -> `02_vae`: the stem without the marks that copies and downloads add."""
    text = unicodedata.normalize("NFKC", stem).strip()
    while True:
        before = text
        text = _COPY_PREFIX.sub("", text).strip()
        for pattern in _COPY_SUFFIXES:
            text = pattern.sub("", text).strip()
        if text == before or not text:
            return text or before


def _keys(stem: str) -> set[str]:
    """The keys a file stem may stand for: as typed, and without copy marks."""
    return {name_key(stem), name_key(strip_copy_marks(stem))} - {""}


def _walk(folder: Path) -> tuple[list[str], list[str]]:
    """(files, symlinks) under `folder`, relative posix paths, hidden entries and __pycache__ left out.

    Symbolic links, to files or folders, are listed but never followed.
    """
    files, links = [], []
    for root, dirs, names in os.walk(folder, followlinks=False):
        rel_root = Path(root).relative_to(folder)
        keep = []
        for d in sorted(dirs):
            if d.startswith(".") or d == "__pycache__":
                continue
            if (Path(root) / d).is_symlink():
                links.append((rel_root / d).as_posix())
            else:
                keep.append(d)
        dirs[:] = keep
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = Path(root) / name
            rel = (rel_root / name).as_posix()
            if path.is_symlink():
                links.append(rel)
            elif path.is_file():
                files.append(rel)
    return sorted(files), sorted(links)


def _quote(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def find_notebooks(folder: Path, released: list[str], assignment: str) -> Found:
    """Match the released notebooks (`released`: file stems such as `02_vae`) in a student's folder.

    `assignment` is nbgrader's assignment name: `folder/<assignment>/` is used instead of
    `folder` when `folder` itself holds no notebook. Raises NotADirectoryError when
    `folder` is neither a folder nor a symbolic link (a link is never followed: all
    notebooks are then missing, with a note).
    """
    folder = Path(folder)
    found = Found(notes={stem: [] for stem in released}, folder=folder)
    if folder.is_symlink():
        for stem in released:
            found.notes[stem].append(
                f"{stem}{SUFFIX} not found: the submission folder {folder.name} is a "
                f"symbolic link, which the grader does not follow"
            )
        found.ignored.append(f"{folder.name} (a symbolic link: not followed)")
        return found
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder: expected one folder per student")

    files, links = _walk(folder)
    top_notebooks = [f for f in files if "/" not in f and _stem(f)]
    nested = folder / assignment
    if not top_notebooks and nested.is_dir() and not nested.is_symlink():
        # nbgrader's submitted/<student>/<assignment>/ layout
        prefix = assignment + "/"
        found.folder = nested
        outside = [f for f in files if not f.startswith(prefix)]
        files = [f[len(prefix) :] for f in files if f.startswith(prefix)]
        links = [link[len(prefix) :] if link.startswith(prefix) else f"../{link}" for link in links]
        found.extras.extend(f"../{f}" for f in outside)
    base = found.folder
    found.ignored.extend(f"{link} (a symbolic link: not followed)" for link in links)

    candidates = [f for f in files if "/" not in f and _stem(f)]
    used: set[str] = set()

    # 1. exact names win
    for stem in released:
        if f"{stem}{SUFFIX}" in candidates:
            found.files[stem] = base / f"{stem}{SUFFIX}"
            used.add(f"{stem}{SUFFIX}")

    # 2. look-alikes, for the notebooks still missing
    released_keys = {stem: name_key(stem) for stem in released}
    looks_like: dict[str, list[str]] = {stem: [] for stem in released}
    for name in candidates:
        if name in used:
            continue
        keys = _keys(_stem(name))
        hits = [stem for stem, key in released_keys.items() if key in keys]
        # a file that looks like two released notebooks (released names that differ only
        # in case or separators) is no notebook's: it counts as a look-alike of each
        for stem in hits:
            looks_like[stem].append(name)
    missing = [stem for stem in released if stem not in found.files]
    for stem in released:
        alike = looks_like[stem]
        if stem in found.files:
            if alike:
                found.notes[stem].append(
                    f"graded {stem}{SUFFIX}; also found {_quote(alike)}, not graded (a file with the exact name wins)"
                )
            continue
        shared = [n for n in alike if any(n in looks_like[other] for other in missing if other != stem)]
        if len(alike) == 1 and not shared:
            name = alike[0]
            found.files[stem] = base / name
            found.renamed[stem] = name
            used.add(name)
            found.notes[stem].append(
                f"graded {name} as {stem}{SUFFIX} (renamed; keep the name {stem}{SUFFIX} next time)"
            )
        elif len(alike) > 1:
            found.notes[stem].append(
                f"{stem}{SUFFIX} not found; {_quote(alike)} "
                f"{'both' if len(alike) == 2 else 'all'} look like it (expected "
                f"{stem}{SUFFIX}): none was graded; rename the right one to {stem}{SUFFIX}"
            )
        elif alike:
            found.notes[stem].append(
                f"{stem}{SUFFIX} not found; {alike[0]} looks like it but also like another "
                f"notebook (expected {stem}{SUFFIX}): not graded"
            )

    # 3. why the others are missing
    unused = [n for n in candidates if n not in used]
    for stem in released:
        if stem in found.files or found.notes[stem]:
            continue
        note = f"{stem}{SUFFIX} not found"
        hint = _similar(stem, [n for n in unused if not any(n in looks_like[s] for s in released)])
        if hint:
            note += f"; {hint} might be it (not graded: rename it to {stem}{SUFFIX})"
        else:
            deeper = [
                f
                for f in files
                if "/" in f and _stem(Path(f).name) and released_keys[stem] in _keys(_stem(Path(f).name))
            ]
            if deeper:
                note += (
                    f"; {_quote(deeper)} is in a sub-folder (not graded: put notebooks at the top of the submission)"
                )
        found.notes[stem].append(note)

    found.extras.extend(f for f in files if f not in used)
    return found


def _similar(stem: str, names: list[str]) -> str | None:
    """A notebook file among `names` whose name resembles `stem` (a hint, never a match)."""
    by_key = {name_key(strip_copy_marks(_stem(n))): n for n in names}
    hits = difflib.get_close_matches(name_key(stem), list(by_key), n=1, cutoff=0.6)
    if hits:
        return by_key[hits[0]]
    topic = name_key(stem.split("_", 1)[-1])
    if len(topic) >= 3:
        for key, name in by_key.items():
            if topic in key:
                return name
    return None

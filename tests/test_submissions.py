"""Name matching of submitted notebooks (autograder.submissions.find_notebooks)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autograder.submissions import find_notebooks, name_key, strip_copy_marks

RELEASED = ["01_autoencoder", "02_vae", "03_beta", "04_interpolation", "05_aevb"]


def make(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    return folder


def find(folder: Path, released=RELEASED):
    return find_notebooks(folder, released, "vae")


@pytest.mark.parametrize(
    "stem, plain",
    [
        ("Copy of 01_autoencoder", "01_autoencoder"),
        ("Copy of Copy of 01_autoencoder", "01_autoencoder"),
        ("copie de 01_autoencoder", "01_autoencoder"),
        ("02_vae (1)", "02_vae"),
        ("02_vae(12)", "02_vae"),
        ("02_vae-2", "02_vae"),
        ("02_vae_3", "02_vae"),
        ("02_vae (copy)", "02_vae"),
        ("02_vae (another copy)", "02_vae"),
        ("02_vae - Copy", "02_vae"),
        ("02_vae - Copy (2)", "02_vae"),
        ("02_vae copy 2", "02_vae"),
        ("Copy of 02_vae (1)", "02_vae"),
        ("02_vae", "02_vae"),
    ],
)
def test_copy_marks_are_stripped(stem, plain):
    assert strip_copy_marks(stem) == plain


def test_name_key_ignores_case_spaces_underscores_and_hyphens():
    assert name_key("02 VAE") == name_key("02-vae") == name_key("02_Vae") == name_key(" 02vae ") == "02vae"
    assert name_key("02_vae") != name_key("03_vae")


def test_exact_names_are_found_without_notes(tmp_path):
    found = find(make(tmp_path / "alice", *(f"{n}.ipynb" for n in RELEASED)))
    assert found.files == {n: tmp_path / "alice" / f"{n}.ipynb" for n in RELEASED}
    assert found.renamed == {} and found.extras == [] and found.ignored == []
    assert found.notes == {n: [] for n in RELEASED}
    assert all(found.status(n) == "ok" for n in RELEASED)


@pytest.mark.parametrize(
    "name",
    [
        "Copy of 01_autoencoder.ipynb",  # Colab's "Save a copy in Drive"
        "01_autoencoder (1).ipynb",  # a browser's second download
        "01_autoencoder-2.ipynb",
        "01_AUTOENCODER.ipynb",  # case
        "01 autoencoder.ipynb",  # spacing
        "01-autoencoder.ipynb",  # hyphen for underscore
        "01_autoencoder.IPYNB",  # the suffix's case
        "Copy of 01 Autoencoder (2).ipynb",  # all of it
        "01_autoencoder - Copy.ipynb",  # Windows Explorer
    ],
)
def test_a_renamed_notebook_is_found_and_reported(tmp_path, name):
    found = find(make(tmp_path / "bob", name, "02_vae.ipynb"))
    assert found.files["01_autoencoder"] == tmp_path / "bob" / name
    assert found.renamed == {"01_autoencoder": name}
    assert found.status("01_autoencoder") == "renamed" and found.status("02_vae") == "ok"
    assert found.notes["01_autoencoder"] == [
        f"graded {name} as 01_autoencoder.ipynb (renamed; keep the name 01_autoencoder.ipynb next time)"
    ]
    assert found.extras == []
    assert found.notes["03_beta"] == ["03_beta.ipynb not found"]
    assert found.status("03_beta") == "missing"


def test_the_exact_name_wins_over_a_copy(tmp_path):
    found = find(make(tmp_path / "s", "02_vae.ipynb", "Copy of 02_vae.ipynb", "02_vae (1).ipynb"))
    assert found.files["02_vae"] == tmp_path / "s" / "02_vae.ipynb"
    assert "02_vae" not in found.renamed
    assert found.extras == ["02_vae (1).ipynb", "Copy of 02_vae.ipynb"]
    assert found.notes["02_vae"] == [
        "graded 02_vae.ipynb; also found 02_vae (1).ipynb and Copy of 02_vae.ipynb, "
        "not graded (a file with the exact name wins)"
    ]


def test_two_look_alikes_are_ambiguous_and_stay_missing_with_a_hint(tmp_path):
    found = find(make(tmp_path / "s", "02_vae (copy).ipynb", "02-vae.ipynb"))
    assert "02_vae" not in found.files and found.status("02_vae") == "missing"
    assert found.notes["02_vae"] == [
        "02_vae.ipynb not found; 02-vae.ipynb and 02_vae (copy).ipynb both look like it (expected 02_vae.ipynb): "
        "none was graded; rename the right one to 02_vae.ipynb"
    ]
    assert found.extras == ["02-vae.ipynb", "02_vae (copy).ipynb"]


def test_three_look_alikes(tmp_path):
    found = find(make(tmp_path / "s", "02_vae (1).ipynb", "02_vae (2).ipynb", "Copy of 02_vae.ipynb"))
    assert found.status("02_vae") == "missing"
    assert "02_vae (1).ipynb, 02_vae (2).ipynb and Copy of 02_vae.ipynb all look like it" in found.notes["02_vae"][0]


def test_a_file_like_two_released_names_is_graded_as_neither(tmp_path):
    # released names that differ only in separators: a look-alike cannot be told apart
    found = find(make(tmp_path / "s", "Copy of part-a.ipynb"), released=["part_a", "part-a "])
    assert found.files == {}
    assert all("looks like it but also like another notebook" in found.notes[n][0] for n in ["part_a", "part-a "])


def test_a_copy_suffix_does_not_turn_one_released_name_into_another(tmp_path):
    found = find(make(tmp_path / "s", "part-2.ipynb"), released=["part-1", "part-2"])
    assert found.files == {"part-2": tmp_path / "s" / "part-2.ipynb"} and found.renamed == {}
    assert found.notes["part-1"] == ["part-1.ipynb not found"]


def test_a_different_name_is_not_matched_but_hinted(tmp_path):
    found = find(make(tmp_path / "s", "my_vae_final.ipynb", "notes.txt"))
    assert found.files == {}
    assert found.notes["02_vae"] == [
        "02_vae.ipynb not found; my_vae_final.ipynb might be it (not graded: rename it to 02_vae.ipynb)"
    ]
    assert found.notes["01_autoencoder"] == ["01_autoencoder.ipynb not found"]
    assert found.extras == ["my_vae_final.ipynb", "notes.txt"]


def test_a_notebook_in_a_sub_folder_is_not_graded_but_pointed_at(tmp_path):
    found = find(make(tmp_path / "s", "vae-course-main/assignments/02_vae.ipynb", "01_autoencoder.ipynb"))
    assert set(found.files) == {"01_autoencoder"}
    assert found.notes["02_vae"] == [
        "02_vae.ipynb not found; vae-course-main/assignments/02_vae.ipynb is in a sub-folder "
        "(not graded: put notebooks at the top of the submission)"
    ]
    assert found.extras == ["vae-course-main/assignments/02_vae.ipynb"]


def test_nbgrader_submitted_layout(tmp_path):
    student = make(
        tmp_path / "submitted" / "carol", "vae/01_autoencoder.ipynb", "vae/Copy of 02_vae.ipynb", "vae/timestamp.txt"
    )
    found = find(student)
    assert found.folder == student / "vae"
    assert found.files == {
        "01_autoencoder": student / "vae" / "01_autoencoder.ipynb",
        "02_vae": student / "vae" / "Copy of 02_vae.ipynb",
    }
    assert found.renamed == {"02_vae": "Copy of 02_vae.ipynb"}
    assert found.extras == ["timestamp.txt"]


def test_top_level_notebooks_take_precedence_over_the_assignment_folder(tmp_path):
    student = make(tmp_path / "dave", "01_autoencoder.ipynb", "vae/02_vae.ipynb")
    found = find(student)
    assert found.folder == student and set(found.files) == {"01_autoencoder"}
    assert found.extras == ["vae/02_vae.ipynb"]


def test_hidden_files_checkpoints_and_pycache_are_ignored(tmp_path):
    found = find(
        make(
            tmp_path / "s",
            ".ipynb_checkpoints/02_vae-checkpoint.ipynb",
            ".02_vae.ipynb",
            "__pycache__/x.pyc",
            ".DS_Store",
            "01_autoencoder.ipynb",
        )
    )
    assert set(found.files) == {"01_autoencoder"}
    assert found.extras == [] and found.ignored == []
    assert found.notes["02_vae"] == ["02_vae.ipynb not found"]


def test_symlinks_are_never_followed(tmp_path):
    secret = make(tmp_path / "instructor", "02_vae.ipynb", "solutions/01_autoencoder.ipynb")
    student = make(tmp_path / "eve", "03_beta.ipynb")
    os.symlink(secret / "02_vae.ipynb", student / "02_vae.ipynb")
    os.symlink(secret / "solutions", student / "solutions")
    os.symlink(secret / "02_vae.ipynb", student / "Copy of 04_interpolation.ipynb")
    found = find(student)
    assert set(found.files) == {"03_beta"}
    assert found.ignored == [
        "02_vae.ipynb (a symbolic link: not followed)",
        "Copy of 04_interpolation.ipynb (a symbolic link: not followed)",
        "solutions (a symbolic link: not followed)",
    ]
    assert found.extras == []
    assert found.status("02_vae") == "missing" and found.status("04_interpolation") == "missing"


def test_a_symlinked_assignment_folder_is_not_followed(tmp_path):
    secret = make(tmp_path / "instructor", "01_autoencoder.ipynb")
    student = make(tmp_path / "frank")
    os.symlink(secret, student / "vae")
    found = find(student)
    assert found.files == {} and found.folder == student
    assert found.ignored == ["vae (a symbolic link: not followed)"]


def test_a_symlinked_submission_folder_is_not_followed(tmp_path):
    secret = make(tmp_path / "instructor", *(f"{n}.ipynb" for n in RELEASED))
    (tmp_path / "subs").mkdir()
    os.symlink(secret, tmp_path / "subs" / "mallory")
    found = find(tmp_path / "subs" / "mallory")
    assert found.files == {}
    assert "symbolic link" in found.notes["01_autoencoder"][0]


def test_not_a_folder_is_a_clear_error(tmp_path):
    (tmp_path / "alice.ipynb").write_text("{}")
    with pytest.raises(NotADirectoryError, match="expected one folder per student"):
        find(tmp_path / "alice.ipynb")


def test_renamed_and_exact_mixed_across_notebooks(tmp_path):
    found = find(
        make(
            tmp_path / "s",
            "Copy of 01_autoencoder.ipynb",
            "02_vae (1).ipynb",
            "03_beta.ipynb",
            "04-Interpolation.ipynb",
            "05_aevb-2.ipynb",
            "05_aevb.ipynb",
        )
    )
    assert set(found.files) == set(RELEASED)
    assert found.renamed == {
        "01_autoencoder": "Copy of 01_autoencoder.ipynb",
        "02_vae": "02_vae (1).ipynb",
        "04_interpolation": "04-Interpolation.ipynb",
    }
    assert found.extras == ["05_aevb-2.ipynb"]

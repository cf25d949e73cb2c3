"""The exercises: every key answer checks, wrong answers are told apart (rounding slip, percentage,
wrong method), function exercises say where they differ, and the student edition holds no key."""
import nbformat
import pytest
import torch

from fcnlib import edition, exercises, paths

STEMS = sorted(p.stem[2:] for p in (paths.ROOT / "fcnlib" / "exercise_bank").glob("ex*.py"))


@pytest.fixture(scope="module", autouse=True)
def _banks_and_key():
    for stem in STEMS:
        exercises.load(stem, key=True)


def test_every_notebook_has_value_and_function_exercises_with_key_answers():
    for stem in STEMS:
        values = [k for k in exercises._EXPECTED if k.startswith(stem + ".")]
        functions = [k for k in exercises._FUNCTIONS if k.startswith(stem + ".")]
        assert values and functions, f"notebook {stem}: {values} {functions}"
    for key in exercises._EXPECTED:
        assert exercises.grade(key, exercises.key_answer(key)) == "correct", key
    for key in exercises._FUNCTIONS:
        assert exercises.grade_function(key, exercises.key_answer(key)) == "correct", key


def test_unattempted_exercises_are_answered_from_the_loaded_key(capsys):
    assert exercises.grade("00.mean_iu", None) == "answered from the key"
    exercises.check_function("03.bilinear_kernel", _not_written)
    assert "instructor key's function agrees" in capsys.readouterr().out


def _not_written(*args):
    raise NotImplementedError


def test_rounding_is_accepted_and_near_misses_are_named():
    want = exercises._EXPECTED["00.mean_iu"][0]()                 # 0.687782...
    assert exercises.grade("00.mean_iu", round(want, 4)) == "correct"     # 0.6878: within 0.1%
    with pytest.raises(exercises.ExerciseError, match="rounding slip"):
        exercises.grade("00.mean_iu", round(want, 2))
    with pytest.raises(exercises.ExerciseError, match="percentage"):
        exercises.grade("00.mean_iu", 100 * want)
    with pytest.raises(exercises.ExerciseError, match="Hint: IU of class i"):
        exercises.grade("00.mean_iu", 0.5)                        # a wrong method gets the hint
    with pytest.raises(exercises.ExerciseError, match="within 1%"):
        exercises.grade("00.mean_iu", want * 1.005)


def test_a_wrong_function_is_shown_where_it_differs():
    def off_centre(size):            # the odd-size centre used for every size
        f = (size + 1) // 2
        taps = [1 - abs(i - (f - 1)) / f for i in range(size)]
        return torch.tensor([[a * b for b in taps] for a in taps])
    with pytest.raises(exercises.ExerciseError, match=r"input 2, arguments \(2\): first difference at index "
                                                      r"\(0, 0\): yours 1, fcnlib's 0\.25; largest difference"):
        exercises.grade_function("03.bilinear_kernel", off_centre)
    with pytest.raises(exercises.ExerciseError, match=r"input 1, arguments \(1\): shape \(2, 2\), expected \(1, 1\)"):
        exercises.grade_function("03.bilinear_kernel", lambda size: torch.zeros(size + 1, size + 1))
    with pytest.raises(exercises.ExerciseError, match="raised ZeroDivisionError on input 1"):
        exercises.grade_function("06.mean_iu", lambda cm: 1 / 0)


def test_without_the_key_nothing_is_answered(monkeypatch, tmp_path):
    monkeypatch.setattr(exercises, "_KEY", {})
    assert exercises.grade("00.mean_iu", None) == "not attempted"
    assert exercises.grade_function("00.confusion", _not_written) == "not attempted"
    with pytest.raises(exercises.KeyMissingError, match="not loaded"):
        exercises.key_answer("00.mean_iu")
    monkeypatch.setenv("FCN_KEY", str(tmp_path))        # a key folder without the notebook's file
    with pytest.raises(exercises.KeyMissingError, match="not part of this edition"):
        exercises.load("00")


def test_student_edition_has_no_path_to_the_key(tmp_path):
    student, key = edition.write(tmp_path)
    assert not (student / "fcnlib" / "exercise_key").exists()
    assert sorted(p.name for p in (key / "exercise_key").glob("ex*.py")) == [f"ex{s}.py" for s in STEMS]
    for nb_path in sorted((student / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert "solutions" not in code and "key_answer" not in code and "exercise_key" not in code, nb_path.name
        assert f'exercises.load("{nb_path.name[:2]}")' in code
    assert "00.confusion" in (key / "KEY.md").read_text()
    with pytest.raises(FileExistsError, match="--force"):
        edition.write(tmp_path)
    edition.write(tmp_path, force=True)

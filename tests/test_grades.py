"""Hand grades of generated wordings: the file is well-formed and precision counts only texts a pool has."""
from instructlib.generate.grades import load_grades, precision


def test_every_grade_is_a_bool_and_every_family_has_the_three_samples():
    grades = load_grades()
    assert set(grades) == {"count_words", "first_last_word", "comma_list", "repeat_word"}
    for samples in grades.values():
        assert set(samples) == {"rewrites", "kept", "unfiltered"}
        assert all(isinstance(v, bool) for g in samples.values() for v in g.values())


def test_precision_uses_graded_texts_in_the_pool_and_reports_the_rest():
    graded = load_grades()["comma_list"]["kept"]
    good = [t for t, ok in graded.items() if ok]
    bad = [t for t, ok in graded.items() if not ok]
    p = precision({"comma_list": good + bad + ["An ungraded text."]}, "kept")
    assert (p.faithful, p.graded, p.ungraded) == (len(good), len(good) + len(bad), 0)
    q = precision({"comma_list": good}, "kept")
    assert (q.faithful, q.graded, q.ungraded, q.value) == (len(good), len(good), len(bad), 1.0)
    assert "graded texts not in this pool" in str(q)

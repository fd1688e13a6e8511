"""Exercises and grading (COURSE.md §6): build student notebooks from solutions/, grade submissions.

Modules: ``exercise`` (the single-source format), ``build`` (``make exercises``), ``checks`` (``check``,
``raises``, ``seed`` for test cells; values as plain data), ``sandbox`` (own uid, namespaces, limits,
kill by uid), ``kernel`` (run cells in a disposable kernel), ``grader`` (keys, comparison in the
grader's process, resumable gradebook, feedback), ``cli`` (the commands). See docs/grading.md.
"""

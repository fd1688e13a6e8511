"""Exercises and grading (COURSE.md §6): build student notebooks from solutions/, grade submissions.

Modules: ``exercise`` (the single-source format), ``build`` (``make exercises``), ``kernel`` (run cells
in a disposable kernel with limits), ``grader`` (gradebook and feedback), ``cli`` (the commands).
"""

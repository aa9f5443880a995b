"""The roles a model can have in a run folder's ``run.json`` (shared by distill, export and bench).

Example:
    >>> "student" in STUDENT_ROLES, "teacher" in ROLES
    (True, True)
"""

STUDENT_ROLES = ("baseline", "student", "ensemble")
ROLES = ("teacher", *STUDENT_ROLES)

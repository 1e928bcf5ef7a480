"""The course around the notebooks: the walkthrough runner and its validation table (walkthrough.py), the student
edition (student.py) and the exercise checkers, one module per chapter (exercises/chNN_*.py)."""

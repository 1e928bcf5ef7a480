"""The course around the notebooks: the walkthrough runner and its validation table (walkthrough.py), the nbgrader
course (nbgrader_course.py: the student edition and autograding) and the exercise checkers, one module per chapter
(exercises/chNN_*.py, their references in exercises/reference/)."""

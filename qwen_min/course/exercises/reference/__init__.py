"""Reference answers and measurements of the exercises: what a student's answer is compared with, kept out of reach.

    from qwen_min.course.exercises.reference import ch09_sft as ref
    ref.lora_merge(weight, A, B, alpha)      # the debug exercise's fixed function
    ref.measured_trained_share("add")        # the predict exercise's measurement

Design choices
- One module per chapter, named as the chapter's checker module (`ch09_sft.py` here for course/exercises/ch09_sft.py).
  The checker module, which the student imports, holds the `check_*` functions, the input builders and the planted
  bugs; it imports this one. Nothing here is re-exported there.
- Every reference answer and every `measured_*` experiment is decorated with `watch.answer(checker)`: inside a student's
  answer (or prediction) each of them is forbidden, in every chapter, under any name, and as any copy rebuilt
  from its code. Helpers that only build a setting (a tiny model, a tokenizer) are not registered: the checkers'
  wrappers call them while the student's function runs.
- A reference is written differently from the notebook's solution (tests/course/test_bypasses.py checks that no
  solution has a registered answer's fingerprint), so an honest solution is never taken for a copy.
- Adding an exercise: write its reference here with `@answer("chXX_name.check_<exercise>")`, its checker in the chapter module
  (`compare` or `prediction` + `judge_prediction`), its `PACKAGE_EQUIVALENTS` entry, and the exercise cells in the
  chapter notebook (a `solution` cell ending with the checker call); `python -m qwen_min.course.nbgrader_course
  --write` then stamps its nbgrader metadata.
"""

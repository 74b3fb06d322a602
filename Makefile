# Everything installs itself: a fresh machine needs only Python 3.11 (and Terraform for `make test`).
PYTHON ?= python3
TOOLS  := .tools
PIPENV := $(TOOLS)/bin/pipenv
STAMP  := .venv/.synced
AIRFLOW_STAMP := .venv-airflow/.synced
ENV    ?=
RUNS   ?= 5

export PIPENV_VENV_IN_PROJECT := 1
export PIPENV_YES := 1
export PIPENV_NOSPIN := 1
export PIPENV_IGNORE_VIRTUALENVS := 1
export PIPENV_VERBOSITY := -1

.PHONY: install synth test bench profile checkov clean

$(PIPENV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check pipenv==2026.10.3

$(STAMP): Pipfile.lock | $(PIPENV)
	$(PIPENV) sync
	touch $@

# Real Airflow in its own virtualenv (requirements/airflow.txt says why): exact pins, no resolver run.
$(AIRFLOW_STAMP): requirements/airflow.txt
	rm -rf .venv-airflow
	$(PYTHON) -m venv .venv-airflow
	.venv-airflow/bin/pip install --quiet --disable-pip-version-check --no-deps -r requirements/airflow.txt
	.venv-airflow/bin/pip check
	touch $@

install: $(STAMP) $(AIRFLOW_STAMP)  ## create .venv from Pipfile.lock and .venv-airflow from requirements/airflow.txt

# -O skips the bindings' per-call runtime type checks (jsii generates them under `if __debug__`): the same
# output, ~0.3 s less; `make test` runs with them on, so a mistyped construct argument still fails CI.
synth: $(STAMP)  ## synthesize every environment (or ENV=dev) into cdktf.out/ and print stack -> resource count
	$(PIPENV) run python -O main.py $(if $(ENV),--env $(ENV))

test: install  ## the whole suite: unit, synth, CLI, terraform validate, Checkov, fast-import identity
	$(PIPENV) run python -m pytest

bench: install  ## synth speed side by side: full vs plain imports vs one-VPC floor
	$(PIPENV) run python -m benchmarks.synth --runs $(RUNS)

profile: install  ## where the Node side of a full synth and of the floor spends its time (from node --cpu-prof)
	$(PIPENV) run python -m benchmarks.profile

checkov: synth  ## Checkov over the synthesized stacks with the justified skips (.checkov.dev.yaml for dev's)
	$(PIPENV) run checkov $(foreach f,$(filter-out %-dev-infra/cdk.tf.json %-dev-platform/cdk.tf.json,$(wildcard cdktf.out/stacks/*/cdk.tf.json)),-f $(f)) --config-file .checkov.yaml
	$(PIPENV) run checkov $(foreach f,$(wildcard cdktf.out/stacks/*-dev-*/cdk.tf.json),-f $(f)) --config-file .checkov.dev.yaml

clean:
	rm -rf cdktf.out .cdktf.out-* .pytest_cache

.PHONY: plan-report rehearse

plan-report: install  ## Markdown PR summary of `terraform show -json` plans: PLAN=<file or dir> [STATUS_FILE=f]; 0 ok, 3 data at risk
	$(if $(PLAN),,$(error PLAN=<plan JSON file, or directory of them> is required))
	@$(PIPENV) run python -m tools.plan_report $(PLAN) $(if $(STATUS_FILE),--status-file $(STATUS_FILE))

rehearse: install  ## apply + destroy the dev infra stack on a local AWS emulator (moto), per-type report; needs Terraform
	$(PIPENV) run python -m tools.rehearse $(if $(ENV),--env $(ENV))

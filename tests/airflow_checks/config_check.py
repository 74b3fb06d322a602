"""Check generated Airflow chart values against real Airflow (run in .venv-airflow by tests/harness.run_in_airflow).

Usage: config_check.py VALUES.json [VALUES.json ...]  (each file: the Helm values of one Airflow release)

For each file:
- every `config.<section>.<option>` and every AIRFLOW__<SECTION>__<OPTION> env name (`env`, `secret`) is an option of
  this Airflow's configuration reference (core + installed providers), and its value reads back with the option's type;
- every executor in `executor` resolves to an importable class;
- `[secrets] backend` imports and constructs from the generated `backend_kwargs` (no network: Vault is contacted
  only on the first lookup);
- the remote task log handler for `remote_base_log_folder`'s scheme imports;
- `dagProcessor.dagBundleConfigList` parses as Airflow's `[dag_processor] dag_bundle_config_list` and every bundle
  class constructs from its kwargs (no network: bundles only call S3 in initialize()/refresh()).
Prints one line per finding; exit 1 if there is any ERROR.
"""
from __future__ import annotations

import inspect
import json
import os
import re
import sys

ENV_OPTION = re.compile(r"AIRFLOW__([A-Z0-9_]+?)__([A-Z0-9_]+)")
REMOTE_HANDLERS = {"s3": "airflow.providers.amazon.aws.log.s3_task_handler.S3TaskHandler"}
# Sections whose keys are free-form (not options): nothing to look up.
FREE_FORM_SECTIONS = {"kubernetes_environment_variables", "kubernetes_secrets", "celery_broker_transport_options"}


def main(paths: list[str]) -> int:
    from airflow.configuration import conf
    from importlib import import_module

    def import_string(dotted: str):
        module, _, name = dotted.rpartition(".")
        return getattr(import_module(module), name)

    reference = conf.configuration_description
    errors: list[str] = []

    def error(where: str, message: str) -> None:
        errors.append(f"ERROR {where}: {message}")
        print(errors[-1])

    for path in paths:
        values = json.loads(open(path).read())
        tag = os.path.basename(path)
        options: dict[tuple[str, str], object] = {}
        for section, opts in (values.get("config") or {}).items():
            for option, value in opts.items():
                options[(section, option)] = value
        env_names = [e["name"] for e in values.get("env", [])] + [s["envName"] for s in values.get("secret", [])]
        # Per-component env (the database connection goes to the components that use it) and their
        # wait-for-airflow-migrations env, the migration job's too.
        for component in ("scheduler", "apiServer", "dagProcessor", "triggerer", "migrateDatabaseJob"):
            part = values.get(component) or {}
            env_names += [e["name"] for e in part.get("env", [])]
            env_names += [e["name"] for e in (part.get("waitForMigrations") or {}).get("env", [])]
        for name in env_names:
            match = ENV_OPTION.fullmatch(name)
            if not match:
                continue
            section, option = match.group(1).lower(), match.group(2).lower()
            if "__" in option:      # a per-key override of a dict option (BACKEND_KWARG__<KEY>): not an option itself
                continue
            # AIRFLOW__S__O_CMD / _SECRET: Airflow reads the option from a command / a secrets backend, which it
            # allows for sensitive options only.
            for suffix in ("_cmd", "_secret"):
                if option.endswith(suffix) and option[:-len(suffix)] in reference.get(section, {}).get("options", {}):
                    option = option[:-len(suffix)]
                    if (section, option) not in conf.sensitive_config_values:
                        error(tag, f"{name}: [{section}] {option} is not sensitive, so Airflow ignores {suffix.upper()}")
                    else:
                        print(f"OK {tag}: {name} -> [{section}] {option}")
            options.setdefault((section, option), None)
        for (section, option), value in sorted(options.items()):
            if section in FREE_FORM_SECTIONS:
                continue
            described = reference.get(section, {}).get("options", {})
            if option not in described:
                error(tag, f"[{section}] {option} is not an option of Airflow {conf.get('core', 'version', fallback='')}"
                      f"{' (no such section)' if section not in reference else ''}")
                continue
            if value is None:                          # set through a secret env var: the name is what counts
                print(f"OK {tag}: [{section}] {option}")
                continue
            kind = described[option].get("type")
            getter = {"integer": conf.getint, "boolean": conf.getboolean, "float": conf.getfloat}.get(kind)
            if getter:
                os.environ[f"AIRFLOW__{section.upper()}__{option.upper()}"] = str(value)
                try:
                    getter(section, option)
                except Exception as err:  # noqa: BLE001 - report any parse failure
                    error(tag, f"[{section}] {option}={value!r} does not read as {kind}: {err}")
            print(f"OK {tag}: [{section}] {option}")

        # Executors: Airflow's own parser of [core] executor, then each class import.
        from airflow.executors.executor_loader import ExecutorLoader
        os.environ["AIRFLOW__CORE__EXECUTOR"] = str(values.get("executor", ""))
        if hasattr(ExecutorLoader, "_executor_names"):
            ExecutorLoader._executor_names = []       # class-level cache of the parsed names
        try:
            for executor_name in ExecutorLoader.get_executor_names(validate_teams=False):
                cls, _ = ExecutorLoader.import_executor_cls(executor_name)
                print(f"OK {tag}: executor {executor_name.alias or executor_name.module_path} -> "
                      f"{cls.__module__}.{cls.__name__}")
        except Exception as err:  # noqa: BLE001
            error(tag, f"executor {values.get('executor')!r} does not load: {err!r}")

        # Secrets backend.
        secrets = (values.get("config") or {}).get("secrets", {})
        if secrets.get("backend"):
            try:
                backend_cls = import_string(secrets["backend"])
                kwargs = json.loads(secrets.get("backend_kwargs") or "{}")
                # The backend swallows unknown kwargs (**kwargs goes to the client library, used only on the first
                # lookup): a misspelled kwarg must fail here, not at the first secret read in production.
                named = {n for n, p in inspect.signature(backend_cls.__init__).parameters.items()
                         if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
                backend = backend_cls(**kwargs)
                passed_on = sorted(set(kwargs) - named)
                if passed_on and hasattr(backend, "vault_client"):   # VaultBackend hands them to hvac.Client
                    import hvac
                    passed_on = sorted(set(passed_on) - set(inspect.signature(hvac.Client.__init__).parameters))
                if passed_on:
                    raise TypeError(f"{passed_on} are not parameters of {backend_cls.__name__} or its client")
                print(f"OK {tag}: secrets backend {secrets['backend']} constructs ({type(backend).__name__})")
            except Exception as err:  # noqa: BLE001
                error(tag, f"secrets backend {secrets.get('backend')!r} with its backend_kwargs fails: {err!r}")

        # Remote task log handler.
        logging = (values.get("config") or {}).get("logging", {})
        if str(logging.get("remote_logging")) == "True":
            scheme = str(logging.get("remote_base_log_folder", "")).split("://", 1)[0]
            handler = REMOTE_HANDLERS.get(scheme)
            if handler is None:
                error(tag, f"remote_base_log_folder scheme {scheme!r} has no known task handler")
            else:
                try:
                    import_string(handler)
                    print(f"OK {tag}: task handler {handler}")
                except Exception as err:  # noqa: BLE001
                    error(tag, f"task handler {handler} does not import: {err}")

        # DAG bundles, through Airflow's own parser of [dag_processor] dag_bundle_config_list.
        bundles = (values.get("dagProcessor") or {}).get("dagBundleConfigList")
        if bundles:
            os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(bundles)
            try:
                from airflow.dag_processing.bundles.manager import DagBundlesManager
                manager = DagBundlesManager()
                manager.parse_config()
                for bundle_config in bundles:
                    bundle = manager.get_bundle(bundle_config["name"])
                    print(f"OK {tag}: dag bundle {bundle_config['name']} -> {type(bundle).__module__}."
                          f"{type(bundle).__name__}")
            except Exception as err:  # noqa: BLE001
                error(tag, f"dag_bundle_config_list does not load: {err!r}")
            finally:
                os.environ.pop("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", None)
        for key in [k for k in os.environ if k.startswith("AIRFLOW__") and k != "AIRFLOW__CORE__LOAD_EXAMPLES"]:
            os.environ.pop(key)

    print(f"{len(errors)} error(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

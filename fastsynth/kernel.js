"use strict";
// The jsii kernel's entry point for fastsynth/runtime.py `run_kernel_in_process` (its docstring says why).
// 1. One process. jsii's own entry point (bin/jsii-runtime.js) starts lib/program.js as a second Node process and relays
// every API message between its stdin/stdout and the child's fd 3. Here lib/program.js runs in this
// process instead: its fd 3 reads and writes become reads of stdin and writes to stdout, and console
// output is framed exactly as the relay frames it ({"stdout"|"stderr": base64} lines on stderr).
const fs = require("fs");
const path = require("path");
const { Writable } = require("stream");

const API_FD = 3;
// Keep fd 3 taken (libuv normally holds it already), so that no file the kernel opens can get that number.
try { fs.fstatSync(API_FD); } catch { fs.openSync(require("os").devNull, "r"); }
const { readSync, writeSync } = fs;
fs.readSync = function (fd, ...rest) { return readSync.call(this, fd === API_FD ? 0 : fd, ...rest); };
fs.writeSync = function (fd, ...rest) { return writeSync.call(this, fd === API_FD ? 1 : fd, ...rest); };

function framed(name) {
  return new Writable({
    write(chunk, encoding, done) {
      const data = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, encoding);
      writeSync(2, JSON.stringify({ [name]: data.toString("base64") }) + "\n");
      done();
    },
  });
}
const stdout = framed("stdout");
const stderr = framed("stderr");
Object.defineProperty(process, "stdout", { configurable: true, enumerable: true, get: () => stdout });
Object.defineProperty(process, "stderr", { configurable: true, enumerable: true, get: () => stderr });

// The kernel links cached packages (instead of copying every file) only when it sees this flag in execArgv;
// NODE_OPTIONS carries it so that module resolution honours it too.
if (!process.execArgv.includes("--preserve-symlinks")) process.execArgv.push("--preserve-symlinks");

// 2. Lazy provider indexes. A CDKTF provider's lib/index.js is nothing but `exports.<name> = require("./<dir>")`
// for every resource (2,135 of them for AWS: ~2.4 s of compiling before the first resource exists). Such an index
// is loaded as getters that require a submodule the first time the kernel looks it up: the same modules, loaded
// once each, from the same files; only the ones a program uses are compiled. Any other file loads as usual.
const Module = require("module");
const EXPORT = /^exports\.([A-Za-z_$][\w$]*) = require\("(\.\/[\w.-]+)"\);$/;
const PREAMBLE = [/^"use strict";$/, /^\/\*\*?$/, /^ \*.*$/, /^ \*\/$/, /^$/, /^\/\/[ #]/,
  /^Object\.defineProperty\(exports, "__esModule", \{ value: true \}\);$/,
  /^exports\.[A-Za-z_$][\w$]*( = exports\.[A-Za-z_$][\w$]*)* = void 0;$/];

function lazyExports(source) {
  const submodules = [];
  for (const line of source.split(/\r?\n/)) {
    const match = EXPORT.exec(line);
    if (match) submodules.push([match[1], match[2]]);
    else if (!PREAMBLE.some((pattern) => pattern.test(line))) return null;
  }
  return submodules.length > 0 ? submodules : null;
}

// 3. No token creation stacks. cdktf captures a whole JavaScript stack (Error.stackTraceLimit = MAX_SAFE_INTEGER) for
// every token and lazy value it creates, only to quote it if that token later fails to resolve. Under jsii those
// frames are the kernel's, not the Python line that made the token, and capturing them costs ~0.4 s of a full synth.
// Unless CDKTF_TOKEN_STACKS=1 (main.py --debug and install(token_stack_traces=True) set it), a token records one
// line saying how to get them instead.
const recordTokenStacks = process.env.CDKTF_TOKEN_STACKS === "1";
const NOT_RECORDED =
  "(token creation stack not recorded: set CDKTF_TOKEN_STACKS=1, or run main.py with --debug, to record it)";

const loadJs = Module._extensions[".js"];
Module._extensions[".js"] = function (module, filename) {
  if (/[\\/]@cdktf[\\/]provider-[^\\/]+[\\/]lib[\\/]index\.js$/.test(filename)) {
    const submodules = lazyExports(fs.readFileSync(filename, "utf8"));
    if (submodules) {
      Object.defineProperty(module.exports, "__esModule", { value: true });
      for (const [name, request] of submodules) {
        Object.defineProperty(module.exports, name, {
          configurable: true, enumerable: true,
          get() {
            const value = module.require(request);
            Object.defineProperty(module.exports, name, { value, configurable: true, enumerable: true, writable: true });
            return value;
          },
        });
      }
      return;
    }
  }
  loadJs(module, filename);
  if (!recordTokenStacks && /[\\/]cdktf[\\/]lib[\\/]tokens[\\/]private[\\/]stack-trace\.js$/.test(filename)) {
    module.exports.captureStackTrace = () => [NOT_RECORDED];
  }
};

require(path.join(__dirname, "..", "lib", "program.js"));

"use strict";
// The jsii kernel, run in this process: modules/jsii_runtime.py `run_kernel_in_process` says why.
// jsii's own entry point (bin/jsii-runtime.js) starts lib/program.js as a second Node process and relays
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

require(path.join(__dirname, "..", "lib", "program.js"));

// Runs the Wasm build of registry-token-cost under Node's V8 (WASI preview 1):
//   node bench/cost/run.mjs <module.wasm> [scenario [requests]]
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import process from "node:process";

const [module, ...args] = process.argv.slice(2);
const wasi = new WASI({ version: "preview1", args: ["registry-token-cost", ...args], env: {} });
const wasm = await WebAssembly.compile(await readFile(module));
const instance = await WebAssembly.instantiate(wasm, wasi.getImportObject());
wasi.start(instance);

// Offline, deterministic compile of the dev-chain contracts with the bundled npm solc (no
// download). Writes devtools/contracts/artifacts.json, which is committed so tests,
// the demo and benchmarks never need the compiler. Run via `make contracts`.
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const root = path.resolve(__dirname, "..");
const CONTRACTS = ["GliskNFT", "DecoyNFT"];
const out = path.join(root, "devtools", "contracts", "artifacts.json");

const sources = {};
for (const name of CONTRACTS) {
  const file = `${name}.sol`;
  sources[file] = { content: fs.readFileSync(path.join(__dirname, file), "utf8") };
}
const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    // No metadata hash: the bytecode then changes only when the code does, not with comments.
    metadata: { bytecodeHash: "none" },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};

const result = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (result.errors || []).filter((e) => e.severity === "error");
for (const e of result.errors || []) process.stderr.write(e.formattedMessage + "\n");
if (errors.length) process.exit(1);

const artifacts = {};
for (const name of CONTRACTS) {
  const c = result.contracts[`${name}.sol`][name];
  artifacts[name] = { abi: c.abi, bytecode: "0x" + c.evm.bytecode.object };
}
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(out, JSON.stringify(artifacts, null, 2) + "\n");
console.log(`wrote ${path.relative(root, out)} (${solc.version()})`);

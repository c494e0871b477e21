// Validates SARIF files against the SARIF 2.1.0 JSON schema (draft-04) shipped in Microsoft's
// @microsoft/jest-sarif package: `node validate.mjs FILE...`.
// Exit 0: every file valid. 1: a file is invalid (errors on stderr). 2: usage, unreadable file or
// missing packages (run `npm ci` in this folder).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
let Ajv04, addFormats, schemaPath;
try {
  Ajv04 = require("ajv-draft-04");
  addFormats = require("ajv-formats");
  schemaPath = require.resolve("@microsoft/jest-sarif/lib/schemas/sarif-2.1.0-rtm.5.json");
} catch (e) {
  console.error(`missing npm packages (${e.message}): run \`npm ci\` in ${new URL(".", import.meta.url).pathname}`);
  process.exit(2);
}

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate.mjs FILE.sarif...");
  process.exit(2);
}

const schema = JSON.parse(readFileSync(schemaPath, "utf8"));
// Strict mode stays on (an unknown format or keyword would throw rather than be ignored), except
// strictRequired: the schema lists `required` names inside `anyOf` branches that declare no
// properties of their own, a draft-04 idiom that is valid but that Ajv flags.
// unicodeRegExp: false because rtm.5's `language` pattern has a stray `]` (fixed in the errata),
// legal in a plain JS RegExp but a syntax error under the `u` flag Ajv uses by default.
const ajv = new (Ajv04.default ?? Ajv04)({ allErrors: true, strict: true, strictRequired: false, unicodeRegExp: false });
(addFormats.default ?? addFormats)(ajv);
const validate = ajv.compile(schema);

let failed = false;
for (const file of files) {
  let log;
  try {
    log = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    console.error(`${file}: cannot read JSON: ${e.message}`);
    process.exit(2);
  }
  if (validate(log)) {
    console.log(`${file}: valid SARIF 2.1.0 (${schema.title})`);
  } else {
    failed = true;
    console.error(`${file}: INVALID`);
    for (const err of validate.errors) {
      console.error(`  ${err.instancePath || "/"} ${err.message} ${JSON.stringify(err.params)}`);
    }
  }
}
process.exit(failed ? 1 : 0);

#!/usr/bin/env node
// Validates an Adaptive Card with Microsoft's own `adaptivecards` parser (the one the Designer uses).
//
// Usage: node validate-card.js <card.json>
// Prints {"errors":[...],"warnings":[...]} and exits 1 when either list is non-empty, 2 on bad usage.
//
// Why three checks: the parser reports unknown element/action types and bad values as parse events;
// validateProperties() reports structural problems (empty collections, duplicate ids, too many actions);
// and because the parser silently DROPS properties it does not know (a typo such as "wieght" would
// simply vanish in Teams), the card is serialised back and every input value must survive the round trip.
"use strict";

const fs = require("fs");
// The package's "main" is extension-less ESM that plain node cannot load; the UMD bundle needs no DOM
// for parsing and validation.
const AC = require("adaptivecards/dist/adaptivecards.js");

const file = process.argv[2];
if (!file) {
  console.error("usage: node validate-card.js <card.json>");
  process.exit(2);
}

const report = { errors: [], warnings: [] };
let json;
try {
  json = JSON.parse(fs.readFileSync(file, "utf8"));
} catch (e) {
  report.errors.push(`cannot read card JSON: ${e.message}`);
  finish();
}

if (json.type !== "AdaptiveCard") report.errors.push(`top-level type is ${JSON.stringify(json.type)}`);
if (json.version !== "1.5") report.warnings.push(`version is ${JSON.stringify(json.version)}, Teams renders 1.5`);

const card = new AC.AdaptiveCard();
const context = new AC.SerializationContext(AC.Versions.v1_5);
card.parse(json, context);
for (let i = 0; i < context.eventCount; i++) {
  const ev = context.getEventAt(i);
  report.errors.push(`parse: ${AC.ValidationEvent[ev.event]}: ${ev.message}`);
}

const results = card.validateProperties();
for (const ev of results.validationEvents) {
  report.errors.push(`validate: ${AC.ValidationEvent[ev.event]}: ${ev.message}`);
}

const roundTrip = card.toJSON(new AC.SerializationContext(AC.Versions.v1_5));
compare(json, roundTrip, "$");

finish();

function compare(input, output, path) {
  if (input !== null && typeof input === "object") {
    if (output === null || typeof output !== "object" || Array.isArray(input) !== Array.isArray(output)) {
      report.warnings.push(`${path}: not kept by the parser (got ${JSON.stringify(output)})`);
      return;
    }
    if (Array.isArray(input) && input.length !== output.length) {
      report.warnings.push(`${path}: ${input.length} items in, ${output.length} out`);
    }
    for (const key of Object.keys(input)) compare(input[key], output[key], `${path}.${key}`);
  } else if (input !== output) {
    report.warnings.push(`${path}: ${JSON.stringify(input)} dropped or changed to ${JSON.stringify(output)}`);
  }
}

function finish() {
  console.log(JSON.stringify(report));
  process.exit(report.errors.length + report.warnings.length === 0 ? 0 : 1);
}

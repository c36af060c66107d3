#!/usr/bin/env node
require("../dist/cli/streambook.js").main(process.argv.slice(2));

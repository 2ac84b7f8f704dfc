#!/usr/bin/env node
// The installed command. It exists before the build (dist/ does not), so that installing the workspace can link
// it without a warning.
import '../dist/bin.js';

// What llama.cpp's JSON Schema converter could not enforce. It prints that to stderr and goes on (a regex
// `pattern` it does not support becomes "any string"); the plugin refuses such a schema instead, naming what.
#pragma once

#include <cstdio>
#include <string>

// Stands in for the converter's one fprintf (see redirect_schema_warnings.h): keeps the message for this thread.
int keep_schema_warning(FILE* stream, const char* format, ...);

// What the converter reported on this thread since the last call; empty when nothing.
std::string take_schema_warnings();

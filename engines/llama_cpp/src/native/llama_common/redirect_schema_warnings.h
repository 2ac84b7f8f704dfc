// Included first into common/json-schema-to-grammar.cpp alone (CMakeLists.txt), after <cstdio> has declared
// the real fprintf: the converter's report of what it could not enforce goes to keep_schema_warning().
#pragma once

#include "schema_warnings.h"

#define fprintf keep_schema_warning

/* ai.c: placeholder until the module lands. */
#include "sim/ai.h"

/* save.c: placeholder until the module lands. */
#include "sim/save.h"

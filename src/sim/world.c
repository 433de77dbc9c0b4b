/* world.c: placeholder until the module lands. */
#include "sim/world.h"

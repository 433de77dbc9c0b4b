/* grid.c: placeholder until the module lands. */
#include "spacesim/grid.h"

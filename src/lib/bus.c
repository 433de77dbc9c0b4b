/* bus.c: placeholder until the module lands. */
#include "spacesim/bus.h"

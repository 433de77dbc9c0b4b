/* particles.c: placeholder until the module lands. */
#include "spacesim/particles.h"

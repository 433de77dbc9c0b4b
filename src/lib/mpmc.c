/* mpmc.c: placeholder until the module lands. */
#include "spacesim/mpmc.h"

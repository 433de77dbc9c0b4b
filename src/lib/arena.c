/* arena.c: placeholder until the module lands. */
#include "spacesim/arena.h"

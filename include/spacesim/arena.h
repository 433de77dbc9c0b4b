/* spacesim/arena.h: placeholder until the module lands. */
#ifndef SPACESIM_ARENA_H
#define SPACESIM_ARENA_H
#include "spacesim/common.h"
#endif

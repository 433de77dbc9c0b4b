/* spacesim/grid.h: placeholder until the module lands. */
#ifndef SPACESIM_GRID_H
#define SPACESIM_GRID_H
#include "spacesim/common.h"
#endif

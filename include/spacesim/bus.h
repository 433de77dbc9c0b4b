/* spacesim/bus.h: placeholder until the module lands. */
#ifndef SPACESIM_BUS_H
#define SPACESIM_BUS_H
#include "spacesim/common.h"
#endif

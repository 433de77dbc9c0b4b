/* spacesim/mpmc.h: placeholder until the module lands. */
#ifndef SPACESIM_MPMC_H
#define SPACESIM_MPMC_H
#include "spacesim/common.h"
#endif

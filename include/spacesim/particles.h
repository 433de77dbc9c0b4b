/* spacesim/particles.h: placeholder until the module lands. */
#ifndef SPACESIM_PARTICLES_H
#define SPACESIM_PARTICLES_H
#include "spacesim/common.h"
#endif

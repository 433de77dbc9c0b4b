/* spacesim/vec.h: placeholder until the module lands. */
#ifndef SPACESIM_VEC_H
#define SPACESIM_VEC_H
#include "spacesim/common.h"
#endif

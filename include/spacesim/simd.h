/* spacesim/simd.h: placeholder until the module lands. */
#ifndef SPACESIM_SIMD_H
#define SPACESIM_SIMD_H
#include "spacesim/common.h"
#endif

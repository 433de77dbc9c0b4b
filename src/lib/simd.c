/* simd.c: placeholder until the module lands. */
#include "spacesim/simd.h"

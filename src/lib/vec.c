/* vec.c: placeholder until the module lands. */
#include "spacesim/vec.h"

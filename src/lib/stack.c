/* stack.c: placeholder until the module lands. */
#include "spacesim/stack.h"

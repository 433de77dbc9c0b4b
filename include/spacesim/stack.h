/* spacesim/stack.h: placeholder until the module lands. */
#ifndef SPACESIM_STACK_H
#define SPACESIM_STACK_H
#include "spacesim/common.h"
#endif

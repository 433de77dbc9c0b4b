/* msg.c: placeholder until the module lands. */
#include "spacesim/msg.h"

/* frame.c: placeholder until the module lands. */
#include "sim/frame.h"

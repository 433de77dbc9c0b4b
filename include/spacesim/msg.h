/* spacesim/msg.h: placeholder until the module lands. */
#ifndef SPACESIM_MSG_H
#define SPACESIM_MSG_H
#include "spacesim/common.h"
#endif

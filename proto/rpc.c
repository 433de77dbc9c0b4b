/* rpc.c: placeholder until the module lands. */
#include "rpc.h"

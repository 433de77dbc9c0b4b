/* snapshot.c: placeholder until the module lands. */
#include "snapshot.h"
